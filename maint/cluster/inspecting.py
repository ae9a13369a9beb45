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


def surroundings(
    cluster: Cluster, *, namespace: str, name: str, cached: bool = False
) -> Surroundings:
    """``cached``: the Service, the Pods, the other Services and the policies from the
    runner's watch cache when it has one (``caching``); the Namespace is always read."""
    reads = _Reads(cluster, namespace, cached=cached)
    service = reads.service(name)
    selector = (service.get("spec") or {}).get("selector") or {}
    pods = reads.pods(selector) if selector else []
    services = [
        other for other in reads.services() if other.get("metadata", {}).get("name") != name
    ]
    unreadable: list[str] = []
    policies: list[Object] | None
    try:
        policies = reads.policies()
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


def app_ingress(
    cluster: Cluster, *, namespace: str, selector: dict[str, str], cached: bool = False
) -> AppIngress:
    """The app's Pods and the namespace's NetworkPolicies; ``Forbidden`` when maint may not
    list policies there (the caller decides: the preflight has already warned)."""
    reads = _Reads(cluster, namespace, cached=cached)
    return AppIngress(pods=reads.pods(selector), network_policies=reads.policies())


class _Reads:
    """The reads of one namespace, each a request or (``cached``) from the watch cache."""

    def __init__(self, cluster: Cluster, namespace: str, *, cached: bool) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.cache = cluster.cache if cached else None

    def service(self, name: str) -> Object:
        found = self.cache.get("Service", self.namespace, name) if self.cache else None
        if found is not None:  # else read: new, gone, or not watched there
            return found
        return _json(
            f"get Service {self.namespace}/{name}",
            self.cluster.core.read_namespaced_service,
            name,
            self.namespace,
        )

    def pods(self, selector: dict[str, str]) -> list[Object]:
        return self._listed(
            "Pod",
            selector,
            f"list Pods in {self.namespace} selected by {selector}",
            self.cluster.core.list_namespaced_pod,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        )

    def services(self) -> list[Object]:
        return self._listed(
            "Service",
            None,
            f"list Services in {self.namespace}",
            self.cluster.core.list_namespaced_service,
        )

    def policies(self) -> list[Object]:
        return self._listed(
            "NetworkPolicy",
            None,
            f"list NetworkPolicies in {self.namespace}",
            self.cluster.networking.list_namespaced_network_policy,
        )

    def _listed(
        self, kind: str, labels: dict[str, str] | None, what: str, fn: Any, **kwargs: Any
    ) -> list[Object]:
        """The objects of ``kind`` carrying ``labels``: from the cache, else one list."""
        found = self.cache.items(kind, self.namespace, labels) if self.cache else None
        if found is not None:
            return found
        return _items(what, fn, self.namespace, **kwargs)


def _json(what: str, fn: Any, *args: Any, **kwargs: Any) -> Object:
    return raw_json(what, fn, *args, **kwargs)


def _items(what: str, fn: Any, *args: Any, **kwargs: Any) -> list[Object]:
    items: list[Object] = raw_json(what, fn, *args, **kwargs).get("items") or []
    return items
