"""Deletes. A missing object (404) counts as deleted, so cleanup can run any number of times."""

from __future__ import annotations

from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.guard import Write, before_write
from maint.errors import NotFound

_DELETERS = {
    "Pod": ("core", "delete_namespaced_pod"),
    "ConfigMap": ("core", "delete_namespaced_config_map"),
    "Job": ("batch", "delete_namespaced_job"),
    "NetworkPolicy": ("networking", "delete_namespaced_network_policy"),
    "Service": ("core", "delete_namespaced_service"),
    "Secret": ("core", "delete_namespaced_secret"),
}


def delete(cluster: Cluster, *, kind: str, namespace: str, name: str) -> bool:
    """Delete one object; True if it was there. Jobs take their Pods with them (Background)."""
    api, method = _DELETERS[kind]
    what = f"delete {kind} {namespace}/{name}"
    before_write(Write("delete", kind, namespace, name))
    try:
        call(
            what,
            getattr(getattr(cluster, api), method),
            name,
            namespace,
            propagation_policy="Background",
        )
    except NotFound:
        return False
    return True
