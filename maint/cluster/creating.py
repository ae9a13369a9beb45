"""Creates. An object that already exists (409) counts as created: names are deterministic,
so a retried step finds what an earlier attempt made."""

from __future__ import annotations

import time

from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.deleting import delete
from maint.cluster.guard import Write, before_write
from maint.cluster.types import Manifest
from maint.errors import Conflict

_CREATORS = {
    "Pod": ("core", "create_namespaced_pod"),
    "ConfigMap": ("core", "create_namespaced_config_map"),
    "Job": ("batch", "create_namespaced_job"),
    "NetworkPolicy": ("networking", "create_namespaced_network_policy"),
    "Service": ("core", "create_namespaced_service"),
    "Secret": ("core", "create_namespaced_secret"),
}
REPLACE_ATTEMPTS = 5


def create(cluster: Cluster, manifest: Manifest) -> bool:
    """Create ``manifest``; True if created now, False if it already existed."""
    kind = manifest["kind"]
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    api, method = _CREATORS[kind]
    what = f"create {kind} {namespace}/{name}"
    before_write(Write("create", kind, namespace, name))
    try:
        created = call(
            what,
            getattr(getattr(cluster, api), method),
            namespace,
            manifest,
        )
    except Conflict:
        return False
    if cluster.cache is not None:  # a read right after this create finds it (``caching``)
        cluster.cache.wrote(kind, namespace, created)
    return True


def create_replacing(cluster: Cluster, manifest: Manifest) -> None:
    """Create ``manifest``; an object of that name already there is deleted first.

    For objects owned by one Pod (``ownerReferences``): one left by an earlier Pod of the same
    name is about to go with it (garbage collector), so it is replaced, never taken as ours."""
    kind = manifest["kind"]
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    for attempt in range(REPLACE_ATTEMPTS):
        if create(cluster, manifest):
            return
        delete(cluster, kind=kind, namespace=namespace, name=name)
        time.sleep(0.1 * (attempt + 1))  # a deletion the API server has not finished yet
    raise Conflict(f"{kind} {namespace}/{name} keeps coming back; will try again")
