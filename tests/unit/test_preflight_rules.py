"""The preflight's rules on plain API objects (no cluster: the rules are pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from maint.cluster import Surroundings
from maint.switch.netpol import selects
from maint.switch.preflight import BLOCK, CHECKS, RULES, blocking, findings


def _around(
    *,
    meta: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    policies: list[dict[str, Any]] | None = None,
    policies_readable: bool = True,
    namespace: dict[str, Any] | None = None,
    unreadable: list[str] | None = None,
) -> Surroundings:
    return Surroundings(
        service={
            "metadata": {"namespace": "shop", "name": "web", **(meta or {})},
            "spec": {"selector": {"app": "web"}, **(spec or {})},
        },
        pods=pods or [],
        services=[],
        network_policies=(policies or []) if policies_readable else None,
        namespace=namespace or {"metadata": {"name": "shop"}},
        unreadable=unreadable or [],
    )


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"app": "web"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
         {"app": "web"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "x"}, False),
    ],
)  # fmt: skip
def test_label_selectors_match_as_the_api_server_does(selector, labels, expected) -> None:
    assert selects(selector, labels) is expected


def test_every_check_a_rule_can_return_is_listed_for_allow() -> None:
    arounds = [
        _around(meta={"annotations": {"argocd.argoproj.io/tracking-id": "x",
                                      "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                      "meta.helm.sh/release-name": "r"},
                      "labels": {"kustomize.toolkit.fluxcd.io/name": "a",
                                 "helm.toolkit.fluxcd.io/name": "b"}},
                spec={"internalTrafficPolicy": "Local", "clusterIP": "None",
                      "sessionAffinity": "ClientIP"},
                policies_readable=False, unreadable=["get Namespace shop: HTTP 403"],
                namespace={"metadata": {"labels": {"istio-injection": "enabled"}}}),
    ]  # fmt: skip
    seen = {f.check for a in arounds for f in findings(a)}
    assert seen <= set(CHECKS)
    assert seen >= set(CHECKS) - {"shared-selector"}
    assert len(RULES) >= 10


def test_findings_put_blocking_ones_first_and_allow_lifts_only_the_named_check() -> None:
    found = findings(
        _around(
            meta={
                "annotations": {"argocd.argoproj.io/tracking-id": "x"},
                "labels": {"kustomize.toolkit.fluxcd.io/name": "a"},
                "managedFields": [{"manager": "helm"}],
            }
        )
    )
    assert [f.severity for f in found][:2] == [BLOCK, BLOCK]
    assert [f.check for f in blocking(found, allowed=["argocd"])] == ["flux"]
    assert blocking(found, allowed=["argocd", "flux"]) == []


def test_a_mesh_sidecar_in_the_app_pods_warns() -> None:
    pod = {"metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "istio-proxy"}]}}
    (mesh,) = [f for f in findings(_around(pods=[pod])) if f.check == "mesh"]
    assert mesh.severity == "warn" and "web-0" in mesh.message


def test_unreadable_network_policies_warn_instead_of_failing() -> None:
    found = findings(_around(policies_readable=False))
    (policy,) = [f for f in found if f.check == "network-policy"]
    assert policy.severity == "warn"


def test_an_egress_only_policy_does_not_isolate_the_page() -> None:
    egress = {"metadata": {"name": "e"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert [f for f in findings(_around(policies=[egress])) if f.check == "network-policy"] == []
