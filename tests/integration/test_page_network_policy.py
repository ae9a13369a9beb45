"""The page gets the app's ingress: with a default-deny policy and an allow rule for the app, maint
creates, for the window, a NetworkPolicy selecting the page Pod with the same peers, and retires
it at every ending (restore, cancel, a vanished Service, the forced restore without the database):
deleted, or owned by the draining page Pods so that the garbage collector deletes it with them.

On the real control plane with real RBAC; no CNI enforces policies here, so the tests prove the
objects the API server holds: the policy's selector matches the live page Pod's labels and no
app Pod, and its rules carry the app's peers on the page's port.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api, NetworkingV1Api

from maint import naming
from maint.notices import TargetState
from maint.runner import restore_overdue
from maint.switch.netpol import selects
from tests.support.processes import wait_until
from tests.support.window import APP_LABELS, Window, leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

FRONTEND = {"podSelector": {"matchLabels": {"role": "frontend"}}}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
MANAGED = f"{naming.MANAGED_BY}={naming.MANAGER}"
# Notices as `notice add --allow network-policy` registers them: the same window whatever the
# preflight says of the policies, so what is proven here is what the runner does.
ALLOW = ["network-policy"]


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"build_timeout": 5, "step_retry_delay": 1}


@pytest.fixture
def default_deny(window: Window, k8s, namespace) -> None:
    """The window's namespace denies all ingress but the app's (every test but the one without
    a policy for the app)."""
    _default_deny_and_allow_the_app(k8s, namespace)


def _default_deny_and_allow_the_app(k8s, namespace: str) -> None:
    """The usual pair: deny all ingress, then let the app's clients in on its http port
    (the Service's targetPort ``http``, the app's container port 8080)."""
    net = NetworkingV1Api(k8s)
    net.create_namespaced_network_policy(
        namespace,
        {"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )
    net.create_namespaced_network_policy(
        namespace,
        {
            "metadata": {"name": "allow-web"},
            "spec": {
                "podSelector": {"matchLabels": APP_LABELS},
                "ingress": [
                    {"from": [FRONTEND], "ports": [{"protocol": "TCP", "port": "http"}]},
                    {"from": [MONITORING], "ports": [{"protocol": "TCP", "port": 8080}]},
                ],
            },
        },
    )


def _page_policies(k8s, namespace: str) -> list[Any]:
    return (
        NetworkingV1Api(k8s).list_namespaced_network_policy(namespace, label_selector=MANAGED).items
    )


def _the_page_policy(k8s, window: Window, notice_id: int) -> dict[str, Any]:
    """maint's one policy, as JSON, checked against the live page Pod and app Pods."""
    [policy] = _page_policies(k8s, window.namespace)
    as_json = k8s.sanitize_for_serialization(policy)
    core = CoreV1Api(k8s)
    page = core.read_namespaced_pod(window.notice(notice_id).targets[0].pod, window.namespace)
    assert selects(as_json["spec"]["podSelector"], page.metadata.labels)
    for app_pod in core.list_namespaced_pod(window.namespace, label_selector="app=web").items:
        assert not selects(as_json["spec"]["podSelector"], app_pod.metadata.labels)
    assert as_json["metadata"]["labels"][naming.NOTICE_LABEL] == str(notice_id)
    return as_json


def _steps(window: Window, notice_id: int, step: str) -> list[tuple[str, str]]:
    return [(e.outcome, e.detail) for e in window.app.store.events(notice_id) if e.step == step]


def _deleted(window: Window, notice_id: int) -> list[str]:
    """Cleanup lines telling of the page's policy: deleted, or left to go with its Pods."""
    return [
        d
        for _o, d in _steps(window, notice_id, "cleanup")
        if d.startswith("deleted NetworkPolicy") or d.startswith("NetworkPolicy")
    ]


def _gone(k8s, namespace: str) -> None:
    """The page's policies are gone: deleted, or by the garbage collector with their Pods."""
    wait_until(
        lambda: _page_policies(k8s, namespace) == [],
        timeout=20,
        what="the page's NetworkPolicy to be gone",
    )


@pytest.mark.usefixtures("default_deny")
def test_the_page_pod_gets_the_apps_peers_for_the_window_and_loses_them_at_the_end(
    window, k8s, kubelet
):
    """... after the page Pod's drain: while it terminates (a kubelet running its preStop
    sleep), lagging kube-proxies may still send it connections, which a default-deny would
    drop; the policy is owned by the Pod and goes with it."""
    notice = window.add(allow=ALLOW)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    # Before the switch, so the page answers the moment the selector moves to it.
    policy = _the_page_policy(k8s, window, notice.id)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # The page listens on 8080 for the Service's targetPort http.
    tcp_8080 = [{"protocol": "TCP", "port": 8080}]
    assert policy["spec"]["ingress"] == [
        {"from": [FRONTEND], "ports": tcp_8080},
        {"from": [MONITORING], "ports": tcp_8080},
    ]
    [(outcome, detail)] = _steps(window, notice.id, "network-policy")
    assert outcome == "created" and "allow-web" in detail and "deny-all" in detail

    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    assert _the_page_policy(k8s, window, notice.id) == policy

    page = window.notice(notice.id).targets[0].pod
    assert page is not None
    kubelet.draining.add(page)
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
    [draining] = _page_policies(k8s, window.namespace)
    assert [(o.kind, o.name) for o in draining.metadata.owner_references] == [("Pod", page)]
    assert k8s.sanitize_for_serialization(draining)["spec"] == policy["spec"]
    where = f"NetworkPolicy {window.namespace}/{policy['metadata']['name']}"
    assert f"{where} goes once page Pod {page} is gone (garbage collector)" in [
        d for _o, d in _steps(window, notice.id, "cleanup")
    ]
    time.sleep(2)  # the garbage collector leaves it while its Pod drains
    assert len(_page_policies(k8s, window.namespace)) == 1
    kubelet.finish_drain(window.namespace, page)
    _gone(k8s, window.namespace)
    assert leftovers_after(k8s, notice.id) == []
    # The app's own policies are untouched.
    names = {
        p.metadata.name
        for p in NetworkingV1Api(k8s).list_namespaced_network_policy(window.namespace).items
    }
    assert names == {"deny-all", "allow-web"}


@pytest.mark.usefixtures("default_deny")
def test_a_window_cancelled_before_the_switch_deletes_the_page_policy(window, k8s):
    notice = window.add(allow=ALLOW)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    _the_page_policy(k8s, window, notice.id)
    window.app.end_notice(notice.id, cancel=True)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.CANCELLED
    _gone(k8s, window.namespace)
    assert len(_deleted(window, notice.id)) == 1
    assert leftovers_after(k8s, notice.id) == []


@pytest.mark.usefixtures("default_deny")
def test_a_service_deleted_before_the_switch_rolls_back_without_leaving_the_page_policy(
    window, k8s
):
    notice = window.add(allow=ALLOW)
    window.step()
    _the_page_policy(k8s, window, notice.id)
    CoreV1Api(k8s).delete_namespaced_service("web", window.namespace)
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    _gone(k8s, window.namespace)
    assert leftovers_after(k8s, notice.id) == []


@pytest.mark.usefixtures("default_deny")
def test_the_forced_restore_deletes_the_page_policy_from_the_service_annotations_alone(window, k8s):
    notice = window.add(allow=ALLOW)
    window.step()
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    _the_page_policy(k8s, window, notice.id)
    # `maint restore --overdue` past end + grace: no database, no runner pass.
    overdue = window.notice(notice.id).end + window.app.settings.grace() + timedelta(seconds=1)
    [result] = restore_overdue(window.app.api, now=overdue, namespace=window.namespace)
    assert result.outcome == "restored"
    assert CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == (
        APP_LABELS
    )
    _gone(k8s, window.namespace)


def test_without_a_policy_for_the_app_no_page_policy_is_made(window, k8s, namespace):
    NetworkingV1Api(k8s).create_namespaced_network_policy(
        namespace,
        {
            "metadata": {"name": "allow-db"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]},
        },
    )
    notice = window.add(allow=ALLOW)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    assert _page_policies(k8s, namespace) == []
    assert _steps(window, notice.id, "network-policy") == []


@pytest.mark.usefixtures("default_deny")
def test_a_window_failed_on_a_foreign_selector_deletes_the_page_policy(window, k8s):
    notice = window.add(allow=ALLOW)
    window.step()
    window.clock.at(notice.start)
    window.step()
    _the_page_policy(k8s, window, notice.id)
    CoreV1Api(k8s).patch_namespaced_service(  # someone else takes the Service meanwhile
        "web",
        window.namespace,
        [{"op": "replace", "path": "/spec/selector", "value": {"app": "web", "v": "2"}}],
    )
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.FAILED
    _gone(k8s, window.namespace)
    assert len(_deleted(window, notice.id)) == 1
