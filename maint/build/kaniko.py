"""Run one page build in the cluster and learn the pushed digest.

Creating is idempotent (deterministic names, 409 counts as created), so a step retried after a
crash attaches to the Job an earlier attempt started instead of building twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maint import cluster
from maint.build.manifests import KanikoSpec, build_configmap, kaniko_job
from maint.cluster import Cluster, Progress
from maint.errors import BuildFailed, NotFound

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class BuildPlan:
    name: str
    namespace: str
    labels: dict[str, str]
    destination: str  # repository:tag


def start(
    api: Cluster,
    *,
    plan: BuildPlan,
    files: dict[str, bytes],
    tarball: bytes,
    spec: KanikoSpec,
) -> bool:
    """Create the context ConfigMap and the Job; True if the Job was created by this call."""
    cluster.create(
        api,
        build_configmap(
            name=plan.name,
            namespace=plan.namespace,
            labels=plan.labels,
            files=files,
            tarball=tarball,
        ),
    )
    return cluster.create(
        api,
        kaniko_job(
            name=plan.name,
            namespace=plan.namespace,
            labels=plan.labels,
            destination=plan.destination,
            spec=spec,
        ),
    )


def wait_digest(api: Cluster, *, plan: BuildPlan, timeout: float, progress: Progress) -> str:
    """Wait for the Job; the digest on success, ``BuildFailed`` with the log tail otherwise."""
    job = cluster.wait_job(
        api, namespace=plan.namespace, name=plan.name, timeout=timeout, progress=progress
    )
    ended = cluster.job_termination(api, namespace=plan.namespace, job=plan.name)
    if job.failed:
        tail = ended.message if ended is not None and ended.message else _log_tail(api, plan)
        raise BuildFailed(f"Kaniko Job {plan.namespace}/{plan.name} failed ({job.reason}): {tail}")
    message = ended.message if ended is not None else ""
    if not DIGEST.fullmatch(message):
        raise BuildFailed(
            f"Kaniko Job {plan.namespace}/{plan.name} succeeded but reported no digest "
            f"(termination message {message[:200]!r}); is --digest-file supported by the image?"
        )
    return message


def remove(api: Cluster, *, plan: BuildPlan) -> list[str]:
    """Delete the Job (and its Pods) and the ConfigMap; names of what was actually there."""
    removed = []
    for kind in ("Job", "ConfigMap"):
        if cluster.delete(api, kind=kind, namespace=plan.namespace, name=plan.name):
            removed.append(f"{kind} {plan.namespace}/{plan.name}")
    return removed


def _log_tail(api: Cluster, plan: BuildPlan) -> str:
    ended = cluster.job_termination(api, namespace=plan.namespace, job=plan.name)
    if ended is None:
        return "no Pod of the Job ran (see `kubectl describe job`)"
    try:
        return cluster.pod_log_tail(api, namespace=plan.namespace, pod=ended.pod)
    except NotFound:
        return "the Job's Pod is gone"
