"""Reads. A missing object raises ``NotFound`` (from ``calls``); lists return snapshots."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from maint.cluster import convert
from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.types import ObjectRef, PodInfo, ServiceInfo, Termination
from maint.errors import MaintError


def get_service(
    cluster: Cluster, *, namespace: str, name: str, cached: bool = False
) -> ServiceInfo:
    """Read as JSON: the client's models cost more CPU than the request (every step reads).
    ``cached``: from the runner's watch cache when it has one (``caching``)."""
    if cached and cluster.cache is not None:
        found = cluster.cache.get("Service", namespace, name)
        if found is not None:  # else read: new, gone, or not watched there
            return convert.service_from_dict(found)
    obj = raw_json(
        f"get Service {namespace}/{name}",
        cluster.core.read_namespaced_service,
        name,
        namespace,
    )
    return convert.service_from_dict(obj)


def list_services(cluster: Cluster, *, namespace: str | None = None) -> list[ServiceInfo]:
    if namespace is None:
        result = call(
            "list Services",
            cluster.core.list_service_for_all_namespaces,
        )
    else:
        result = call(
            f"list Services in {namespace}",
            cluster.core.list_namespaced_service,
            namespace,
        )
    return [convert.service(obj) for obj in result.items]


def list_annotated_services(cluster: Cluster, *, annotation: str) -> list[ServiceInfo]:
    """Services carrying ``annotation``, from one cluster-wide list read as raw JSON.

    The forced-restore sweep runs every poll: building client models for every Service in a
    large cluster costs ~1 ms each, while only the few switched ones matter.
    """

    items = raw_json("list Services", cluster.core.list_service_for_all_namespaces).get("items", [])
    return [
        convert.service_from_dict(item)
        for item in items
        if annotation in (item.get("metadata", {}).get("annotations") or {})
    ]


def raw_json(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One call answered as the API's JSON, without client models. The body is read inside the
    call: a stall or a cut while it streams is retried and bounded like any other failure."""

    def read(**options: Any) -> bytes:
        response = fn(*args, _preload_content=False, **kwargs, **options)
        try:
            return bytes(response.data)
        finally:
            response.release_conn()

    decoded: dict[str, Any] = json.loads(call(what, read))
    return decoded


def get_pod(cluster: Cluster, *, namespace: str, name: str, cached: bool = False) -> PodInfo:
    if cached and cluster.cache is not None:
        found = cluster.cache.get("Pod", namespace, name)
        if found is not None:  # else read: new, gone, or not watched there
            return convert.pod_from_dict(found)
    obj = call(
        f"get Pod {namespace}/{name}",
        cluster.core.read_namespaced_pod,
        name,
        namespace,
    )
    return convert.pod(obj)


def job_termination(cluster: Cluster, *, namespace: str, job: str) -> Termination | None:
    """The termination of the Job's newest finished Pod (Kaniko's digest or its log tail).

    With the watch cache, called once the Job is done: the Pod's status was written before the
    Job's, so the cache has it or is about to (waited for, briefly; then read directly)."""
    informer = cluster.cache.informer("Pod", namespace) if cluster.cache is not None else None
    if informer is not None:
        try:
            return informer.wait(
                lambda pods: _ended(pods.values(), job=job),
                label=job,  # the cache's index of Pods by their Job
                timeout=TERMINATION_WAIT,
                what=f"the termination of a Pod of Job {namespace}/{job}",
            )
        except MaintError:
            pass  # not seen in time: the Pods are listed below
    listed = raw_json(
        f"list Pods of Job {namespace}/{job}",
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=f"job-name={job}",
    )
    return _ended(listed.get("items") or [], job=job)


TERMINATION_WAIT = 5.0  # seconds the cache is given to show a finished Job's Pod


def _ended(pods: Iterable[dict[str, Any]], *, job: str) -> Termination | None:
    """The termination of the newest finished Pod of ``job`` among ``pods`` (the API's JSON)."""
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == job]
    mine.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    for obj in mine:
        found = convert.termination_from_dict(obj)
        if found is not None:
            return found
    return None


def pod_log_tail(cluster: Cluster, *, namespace: str, pod: str, lines: int = 20) -> str:
    text = call(
        f"read log of Pod {namespace}/{pod}",
        cluster.core.read_namespaced_pod_log,
        pod,
        namespace,
        tail_lines=lines,
    )
    return str(text)


def ready_endpoint_pods(cluster: Cluster, *, namespace: str, service: str) -> set[str]:
    """Names of the Pods listed as ready in the Service's EndpointSlices."""
    slices = call(
        f"list EndpointSlices of {namespace}/{service}",
        cluster.discovery.list_namespaced_endpoint_slice,
        namespace,
        label_selector=f"kubernetes.io/service-name={service}",
    ).items
    return {name for s in slices for name in convert.ready_pods(s)}


def list_managed(
    cluster: Cluster,
    *,
    kind: str,
    labels: dict[str, str],
    namespace: str | None = None,
    cached: bool = False,
) -> list[ObjectRef]:
    """Objects of ``kind`` (Pod, Job, ConfigMap, NetworkPolicy) carrying all ``labels``.
    ``cached``: from the runner's watch cache when it has one and ``namespace`` is given."""
    found = (
        cluster.cache.items(kind, namespace, labels)
        if cached and cluster.cache is not None and namespace is not None
        else None
    )
    if found is not None:
        return [
            ObjectRef(
                kind=kind,
                namespace=obj["metadata"].get("namespace", namespace),
                name=obj["metadata"]["name"],
                labels=dict(obj["metadata"].get("labels") or {}),
                uid=obj["metadata"].get("uid", ""),
                ended=convert.termination_from_dict(obj) if kind == "Pod" else None,
            )
            for obj in found
        ]
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    api, namespaced, everywhere = _LISTERS[kind]
    group = getattr(cluster, api)
    if namespace is None:
        result = call(
            f"list {kind}s",
            getattr(group, everywhere),
            label_selector=selector,
        )
    else:
        result = call(
            f"list {kind}s in {namespace}",
            getattr(group, namespaced),
            namespace,
            label_selector=selector,
        )
    return [
        ObjectRef(
            kind=kind,
            namespace=obj.metadata.namespace,
            name=obj.metadata.name,
            labels=dict(obj.metadata.labels or {}),
            uid=obj.metadata.uid or "",
            ended=convert.termination(obj) if kind == "Pod" else None,
        )
        for obj in result.items
    ]


_LISTERS = {
    "Pod": ("core", "list_namespaced_pod", "list_pod_for_all_namespaces"),
    "ConfigMap": ("core", "list_namespaced_config_map", "list_config_map_for_all_namespaces"),
    "Job": ("batch", "list_namespaced_job", "list_job_for_all_namespaces"),
    "NetworkPolicy": (
        "networking",
        "list_namespaced_network_policy",
        "list_network_policy_for_all_namespaces",
    ),
}
