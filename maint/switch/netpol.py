"""The page's NetworkPolicy: for the window, the page Pod gets the ingress the app's Pods get.

With a default-deny policy the app's allow rules select the app's labels, so the page Pod (a
new Pod without them) is isolated and users get timeouts instead of the page. When policies
select the app's Pods, maint creates one policy selecting its page Pods whose ingress is the
union of those policies' rules, and retires it at every ending (``retire``, from
``runner.ending.Ending.cleanup`` and the forced restore, which finds it by maint's labels): it
goes with the last page Pod, after the Pod's drain.

The rest are pure functions over NetworkPolicies and Pods as the API's JSON
(``cluster.inspecting``): the rules are copied into the manifest exactly as the API server sent
them. Only the ports change: the page listens on the Service's targetPorts (``pod.plan_ports``),
a named targetPort on a number of its own, so a rule naming the app's container port by number
or name is rewritten to the page's number of the same Service port; a rule naming only ports the
Service does not target lets nothing in that the page serves and is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maint import cluster, naming
from maint.cluster import Cluster, Manifest, ServiceInfo
from maint.errors import NotFound
from maint.switch.pod import ContainerPort

Object = dict[str, Any]


@dataclass(frozen=True)
class PagePort:
    """One Service port as the page serves it and as the app's policies may name it."""

    page: int
    """The page's container port for it."""
    app: frozenset[int]
    """The app Pods' container port numbers for it (none known: a named target, no Pod)."""
    names: frozenset[str]
    """The names a policy may give it: the named targetPort, the app's container port names."""


def policy_name(*, target: str) -> str:
    """One policy per target and window (every page revision of the window shares it)."""
    return target


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` matched against labels (an empty selector selects all)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def isolates_ingress(policy: Object, labels: Mapping[str, str]) -> bool:
    """The policy selects Pods with ``labels`` and governs their ingress (``policyTypes``
    left out means Ingress, as the API server defaults it)."""
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes") or ["Ingress"]
    return "Ingress" in types and selects(spec.get("podSelector") or {}, labels)


def app_policies(
    policies: Sequence[Object], *, pods: Sequence[Object], selector: Mapping[str, str]
) -> list[Object]:
    """The policies governing ingress to the app's Pods (those the Service's original
    ``selector`` selects); with no Pod running, to a Pod carrying just the selector's labels."""
    label_sets = [_labels(pod) for pod in pods] or [dict(selector)]
    return [p for p in policies if any(isolates_ingress(p, labels) for labels in label_sets)]


def page_ports(
    service: ServiceInfo, ports: Sequence[ContainerPort], *, pods: Sequence[Object]
) -> tuple[PagePort, ...]:
    """Each TCP port of the Service: the page's number for it (``ports``, from ``plan_ports``)
    and the app's numbers and names for it (from the app's ``pods``)."""
    named = _named_container_ports(pods)
    page_of = {p.name: p.number for p in ports if p.name}
    found = []
    for port in service.ports:
        if port.protocol != "TCP":
            continue
        target = port.target_port
        if isinstance(target, int):
            page, app, own = target, frozenset({target}), frozenset[str]()
        else:
            page, app, own = page_of[target], named.get(target, frozenset()), frozenset({target})
        names = own | {name for name, numbers in named.items() if numbers & app}
        found.append(PagePort(page=page, app=app, names=names))
    return tuple(found)


def page_ingress(policies: Sequence[Object], *, ports: Sequence[PagePort]) -> list[Object]:
    """The union of the policies' ingress rules, ports rewritten to the page's (duplicates once)."""
    rules: list[Object] = []
    for policy in policies:
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            adjusted = _for_page(rule, ports)
            if adjusted is not None and adjusted not in rules:
                rules.append(adjusted)
    return rules


def page_policy(
    *, name: str, namespace: str, labels: Mapping[str, str], ingress: Sequence[Object]
) -> Manifest:
    """The policy selecting the target's page Pods: ``labels`` (``naming.labels``) and a page
    name, whatever the page's revision (an extended window starts a new page Pod). A policy
    selects Pods of its own namespace only: the build's Job Pods, in the build namespace, never."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "podSelector": {
                "matchLabels": dict(labels),
                "matchExpressions": [{"key": naming.PAGE_LABEL, "operator": "Exists"}],
            },
            "policyTypes": ["Ingress"],
            "ingress": [dict(rule) for rule in ingress],
        },
    }


def _for_page(rule: Object, ports: Sequence[PagePort]) -> Object | None:
    """The rule with its ports as the page's numbers; None when it lets in none of them.
    A rule without ports allows every port, the page's too: kept as it is."""
    entries = rule.get("ports") or []
    if not entries:
        return dict(rule)
    covered = sorted({p.page for p in ports if any(_covers(entry, p) for entry in entries)})
    if not covered:
        return None
    return dict(rule) | {"ports": [{"protocol": "TCP", "port": number} for number in covered]}


def _covers(entry: Object, port: PagePort) -> bool:
    """Whether a ``NetworkPolicyPort`` allows the app's side of ``port``."""
    if entry.get("protocol", "TCP") != "TCP":
        return False
    number = entry.get("port")
    if number is None:
        return True
    if isinstance(number, str):
        return number in port.names
    end = entry.get("endPort") or number
    return any(number <= app <= end for app in port.app)


def _labels(pod: Object) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def _named_container_ports(pods: Sequence[Object]) -> dict[str, frozenset[int]]:
    """Name -> numbers of the app's named TCP container ports (Pods may differ in a rollout)."""
    named: dict[str, set[int]] = {}
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") and port.get("protocol", "TCP") == "TCP":
                    named.setdefault(port["name"], set()).add(int(port["containerPort"]))
    return {name: frozenset(numbers) for name, numbers in named.items()}


def retire(api: Cluster, *, namespace: str, labels: Mapping[str, str]) -> list[str]:
    """The end of a window's page policies (found by maint's ``labels`` for its notice and
    target); what was done, one line each, for the event log.

    A page Pod drains after its deletion (``MAINT_PAGE_DRAIN``) and kube-proxy on some nodes
    may still send it connections: deleting its policy at once would drop those under a
    default-deny. So while page Pods of the target still exist (terminating), the policy is
    given them as owners and the garbage collector deletes it once they are all gone, even if
    maint stops meanwhile; without page Pods it is deleted at once. The Pods are looked for
    only when there is a policy (most windows have none)."""
    policies = [
        p
        for p in cluster.list_managed(
            api, kind="NetworkPolicy", labels=dict(labels), namespace=namespace, cached=True
        )
        if all(p.labels.get(k) == v for k, v in labels.items())
    ]
    if not policies:
        return []
    pods = [
        p
        for p in cluster.list_managed(
            api, kind="Pod", labels=dict(labels), namespace=namespace, cached=True
        )
        if all(p.labels.get(k) == v for k, v in labels.items())
    ]
    done = []
    for policy in policies:
        where = f"NetworkPolicy {namespace}/{policy.name}"
        if pods:
            try:
                cluster.set_pod_owners(
                    api, kind=policy.kind, namespace=namespace, name=policy.name, pods=pods
                )
            except NotFound:
                continue
            names = ", ".join(sorted(p.name for p in pods))
            done.append(f"{where} goes once page Pod {names} is gone (garbage collector)")
        elif cluster.delete(api, kind=policy.kind, namespace=namespace, name=policy.name):
            done.append(f"deleted {where}")
    return done
