"""What surrounds a Service, read once for the preflight (``maint plan``) and, at prepare,
for the page's NetworkPolicy (``app_ingress``).

Everything is read as the API's JSON (``_preload_content=False``): the preflight needs fields
maint's snapshots leave out (labels, ``managedFields``, traffic policies, NetworkPolicy rules),
and plain dicts keep them exactly as the API server sent them. Reads another party may forbid
(the Namespace, NetworkPolicies) are recorded as not readable instead of failing the plan.
"""

from __future__ import annotations

from typing import Any

from maint.cluster.connection import Cluster
from maint.cluster.reading import raw_json
from maint.cluster.types import AppIngress, Object, Surroundings
from maint.errors import Forbidden


def surroundings(cluster: Cluster, *, namespace: str, name: str) -> Surroundings:
    service = _json(
        f"get Service {namespace}/{name}", cluster.core.read_namespaced_service, name, namespace
    )
    selector = (service.get("spec") or {}).get("selector") or {}
    pods: list[Object] = []
    if selector:
        pods = _items(
            f"list Pods of Service {namespace}/{name}",
            cluster.core.list_namespaced_pod,
            namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        )
    services = [
        other
        for other in _items(
            f"list Services in {namespace}", cluster.core.list_namespaced_service, namespace
        )
        if other.get("metadata", {}).get("name") != name
    ]
    unreadable: list[str] = []
    policies: list[Object] | None
    try:
        policies = _items(
            f"list NetworkPolicies in {namespace}",
            cluster.networking.list_namespaced_network_policy,
            namespace,
        )
    except Forbidden as e:
        policies = None
        unreadable.append(str(e))
    namespace_object: Object | None
    try:
        namespace_object = _json(
            f"get Namespace {namespace}", cluster.core.read_namespace, namespace
        )
    except Forbidden as e:
        namespace_object = None
        unreadable.append(str(e))
    return Surroundings(
        service=service,
        pods=pods,
        services=services,
        network_policies=policies,
        namespace=namespace_object,
        unreadable=unreadable,
    )


def _json(what: str, fn: Any, *args: Any, **kwargs: Any) -> Object:
    return raw_json(what, fn, *args, **kwargs)


def _items(what: str, fn: Any, *args: Any, **kwargs: Any) -> list[Object]:
    items: list[Object] = raw_json(what, fn, *args, **kwargs).get("items") or []
    return items


def app_ingress(cluster: Cluster, *, namespace: str, selector: dict[str, str]) -> AppIngress:
    """The app's Pods and the namespace's NetworkPolicies; ``Forbidden`` when maint may not
    list policies there (the caller decides: the preflight has already warned)."""
    pods = _items(
        f"list Pods in {namespace} selected by {selector}",
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
    )
    policies = _items(
        f"list NetworkPolicies in {namespace}",
        cluster.networking.list_namespaced_network_policy,
        namespace,
    )
    return AppIngress(pods=pods, network_policies=policies)
