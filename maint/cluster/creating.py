"""Creates. An object that already exists (409) counts as created: names are deterministic,
so a retried step finds what an earlier attempt made."""

from __future__ import annotations

from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.guard import Write, before_write
from maint.cluster.types import Manifest
from maint.errors import Conflict

_CREATORS = {
    "Pod": ("core", "create_namespaced_pod"),
    "ConfigMap": ("core", "create_namespaced_config_map"),
    "Job": ("batch", "create_namespaced_job"),
    "NetworkPolicy": ("networking", "create_namespaced_network_policy"),
}


def create(cluster: Cluster, manifest: Manifest) -> bool:
    """Create ``manifest``; True if created now, False if it already existed."""
    kind = manifest["kind"]
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    api, method = _CREATORS[kind]
    what = f"create {kind} {namespace}/{name}"
    before_write(Write("create", kind, namespace, name))
    try:
        call(
            what,
            getattr(getattr(cluster, api), method),
            namespace,
            manifest,
        )
    except Conflict:
        return False
    return True
