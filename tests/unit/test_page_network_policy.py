"""The page's NetworkPolicy, built purely: the union of the app's ingress rules, ports mapped to
the page's (maint/switch/netpol.py)."""

from __future__ import annotations

from typing import Any

from maint import naming
from maint.cluster import ServiceInfo, ServicePort
from maint.switch import plan_ports
from maint.switch.netpol import app_policies, page_ingress, page_policy, page_ports, selects

APP = {"app": "web"}
# Service port 80 -> named targetPort "http" (the app's 8000; the page gets 8080), 9000 -> 9000.
SERVICE = ServiceInfo(
    namespace="shop",
    name="web",
    type="ClusterIP",
    selector=APP,
    ports=(
        ServicePort(port=80, target_port="http", name="http"),
        ServicePort(port=9000, target_port=9000, name="admin"),
    ),
)
APP_POD: dict[str, Any] = {
    "metadata": {"name": "web-0", "labels": APP | {"tier": "front"}},
    "spec": {
        "containers": [
            {
                "name": "app",
                "ports": [
                    {"name": "http", "containerPort": 8000},
                    {"name": "admin", "containerPort": 9000},
                    {"name": "metrics", "containerPort": 9100},
                ],
            }
        ]
    },
}


def _policy(name: str, selector: dict[str, Any], *rules: dict[str, Any], **spec: Any) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"podSelector": selector, **({"ingress": list(rules)} if rules else {}), **spec},
    }


def _ingress(*policies: dict[str, Any]) -> list[dict[str, Any]]:
    ports = page_ports(SERVICE, plan_ports(SERVICE), pods=[APP_POD])
    return page_ingress(list(policies), ports=ports)


FRONTEND = {"podSelector": {"matchLabels": {"role": "frontend"}}}
MONITORING = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}


def test_policies_governing_the_apps_pods_are_chosen_and_others_not() -> None:
    deny = _policy("deny-all", {}, policyTypes=["Ingress"])
    allow = _policy("allow-web", {"matchLabels": {"tier": "front"}}, {"from": [FRONTEND]})
    other = _policy("allow-db", {"matchLabels": {"app": "db"}}, {"from": [FRONTEND]})
    egress = _policy("egress", {}, policyTypes=["Egress"])
    chosen = app_policies([deny, allow, other, egress], pods=[APP_POD], selector=APP)
    assert [p["metadata"]["name"] for p in chosen] == ["deny-all", "allow-web"]
    # No app Pod runs: a Pod with just the selector's labels stands in for them.
    assert app_policies([allow, other], pods=[], selector=APP) == []
    by_app = _policy("by-app", {"matchLabels": APP}, {"from": [FRONTEND]})
    assert app_policies([by_app], pods=[], selector=APP) == [by_app]


def test_the_union_keeps_every_peer_once_and_rules_without_ports_as_they_are() -> None:
    a = _policy("a", {}, {"from": [FRONTEND]}, {"from": [MONITORING]})
    b = _policy("b", APP, {"from": [FRONTEND]})  # the same rule again: kept once
    assert _ingress(a, b) == [{"from": [FRONTEND]}, {"from": [MONITORING]}]
    assert _ingress(_policy("deny", {}, policyTypes=["Ingress"])) == []


def test_a_rule_naming_the_apps_container_port_allows_the_pages_port_for_it() -> None:
    rules = _ingress(
        _policy("by-number", APP, {"from": [FRONTEND], "ports": [{"port": 8000}]}),
        _policy("by-name", APP, {"from": [MONITORING], "ports": [{"port": "http"}]}),
        _policy("same-number", APP, {"ports": [{"protocol": "TCP", "port": 9000}]}),
        _policy("named-numeric", APP, {"from": [FRONTEND], "ports": [{"port": "admin"}]}),
        _policy("range", APP, {"from": [], "ports": [{"port": 7000, "endPort": 9050}]}),
    )  # fmt: skip
    assert rules == [
        {"from": [FRONTEND], "ports": [{"protocol": "TCP", "port": 8080}]},
        {"from": [MONITORING], "ports": [{"protocol": "TCP", "port": 8080}]},
        {"ports": [{"protocol": "TCP", "port": 9000}]},
        {"from": [FRONTEND], "ports": [{"protocol": "TCP", "port": 9000}]},
        {"from": [], "ports": [{"protocol": "TCP", "port": n} for n in (8080, 9000)]},
    ]  # fmt: skip


def test_a_rule_for_ports_the_service_does_not_target_lets_nothing_in() -> None:
    assert _ingress(
        _policy("metrics", APP, {"from": [MONITORING], "ports": [{"port": 9100}]}),
        _policy("by-name", APP, {"from": [MONITORING], "ports": [{"port": "metrics"}]}),
        _policy("udp", APP, {"from": [FRONTEND], "ports": [{"protocol": "UDP", "port": 8000}]}),
    ) == []  # fmt: skip


def test_the_policy_selects_every_page_pod_of_the_target_and_nothing_else() -> None:
    target = naming.target_name(notice_id=7, namespace="shop", service="web")
    labels = naming.labels(notice_id=7, target=target)
    policy = page_policy(
        name=target, namespace="shop", labels=labels, ingress=[{"from": [FRONTEND]}]
    )
    assert policy["metadata"] == {"name": target, "namespace": "shop", "labels": labels}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"from": [FRONTEND]}]
    selector = policy["spec"]["podSelector"]
    for revision in ("0123abcd", "89abcdef"):  # an extended window's new page too
        page = labels | {naming.PAGE_LABEL: f"{target}-{revision}"}
        assert selects(selector, page)
    assert not selects(selector, labels)  # maint's labels without a page name
    other_notice = naming.labels(notice_id=8, target=target) | {naming.PAGE_LABEL: "x"}
    assert not selects(selector, other_notice)
    assert not selects(selector, APP)
