"""`maint plan` and the preflight of `notice add`, on the real API server.

The Services carry what Argo CD, Flux, Helm and `kubectl apply` leave on the objects they manage
(annotations, labels, field managers); the helm one is really created by server-side apply under
field manager ``helm``, as Helm 4 does. No reconciler runs here: the tests prove that maint
recognises their marks and refuses or warns as documented, not what the tools would do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api, NetworkingV1Api

from maint.cli import main
from maint.notices import NoticeStore
from tests.support.window import APP_LABELS, make_app

pytestmark = pytest.mark.k8s


def _service(name: str, selector: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    """A Service of its own Pods (``app: <name>``) unless ``selector`` says otherwise."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, **metadata},
        "spec": {"selector": selector or {"app": name}, "ports": [{"name": "http", "port": 80}]},
    }


@pytest.fixture
def plan(control_plane, k8s, namespace, database_url, monkeypatch, capsys):
    make_app(k8s, namespace)
    core = CoreV1Api(k8s)
    core.create_namespaced_service(
        namespace,
        _service("argo", annotations={"argocd.argoproj.io/tracking-id": "shop:/Service:x"}),
    )
    core.create_namespaced_service(
        namespace,
        _service(
            "flux",
            labels={
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            },
            annotations={"team": "shop"},
        ),
    )
    core.patch_namespaced_service(  # created by server-side apply, as Helm 4 does
        "helm",
        namespace,
        _service("helm"),
        field_manager="helm",
        _content_type="application/apply-patch+yaml",
    )
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.namespace = namespace  # type: ignore[attr-defined]
    run.database_url = database_url  # type: ignore[attr-defined]
    return run


def _findings(plan, *services: str) -> tuple[int, list[dict[str, str]]]:
    args = ["plan", "-o", "json"]
    for s in services:
        args += ["--target", f"{plan.namespace}/{s}"]
    code, out, err = plan(*args)
    assert err == ""
    return code, json.loads(out)


def _iso(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


def _stored(database_url: str) -> int:
    store = NoticeStore(database_url)
    try:
        return len(store.recent())
    finally:
        store.close()


def test_argocd_blocks_and_the_remedy_names_respect_ignore_differences(plan) -> None:
    code, found = _findings(plan, "argo")
    assert code == 2
    argo = [f for f in found if f["check"] == "argocd"]
    assert len(argo) == 1 and argo[0]["severity"] == "block"
    assert argo[0]["target"] == f"{plan.namespace}/argo"
    assert "RespectIgnoreDifferences=true" in argo[0]["remedy"]
    assert set(argo[0]) == {"target", "check", "severity", "message", "remedy"}


def test_flux_blocks_until_its_reconcile_annotation_says_disabled(plan, k8s) -> None:
    code, found = _findings(plan, "flux")
    assert code == 2 and [f["severity"] for f in found if f["check"] == "flux"] == ["block"]
    CoreV1Api(k8s).patch_namespaced_service(
        "flux",
        plan.namespace,
        {"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}},
    )
    code, found = _findings(plan, "flux")
    assert code == 0 and [f["severity"] for f in found if f["check"] == "flux"] == ["info"]


def test_a_helm_service_applied_server_side_warns_only(plan) -> None:
    code, found = _findings(plan, "helm")
    assert code == 0
    assert [(f["check"], f["severity"]) for f in found] == [("helm", "warn")]
    assert "field manager helm" in found[0]["message"]


def test_a_plain_service_has_no_findings_and_the_table_says_so(plan) -> None:
    code, out, _ = plan("plan", "--target", f"{plan.namespace}/web")
    assert (code, out) == (0, "nothing found\n")


def test_several_targets_in_one_table(plan) -> None:
    code, out, _ = plan(
        "plan", "--target", f"{plan.namespace}/argo", "--target", f"{plan.namespace}/helm"
    )
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == f"{plan.namespace}/argo"
    assert any(line.split()[:2] == ["block", "argocd"] for line in lines)
    assert f"{plan.namespace}/helm" in lines
    assert any(line.strip().startswith("fix: ") for line in lines)


def test_notice_add_refuses_a_blocked_target_in_one_line_and_stores_nothing(plan) -> None:
    code, out, err = plan(
        "notice", "add", "--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90),
        "--target", f"{plan.namespace}/web", "--target", f"{plan.namespace}/argo",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "preflight check 'argocd' blocks" in err and f"{plan.namespace}/argo" in err
    assert _stored(plan.database_url) == 0


def test_notice_add_accepts_the_blocked_target_when_the_check_is_allowed(plan) -> None:
    code, _out, err = plan(
        "notice", "add", "--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90),
        "--target", f"{plan.namespace}/argo", "--allow", "argocd",
    )  # fmt: skip
    assert code == 0, err
    assert _stored(plan.database_url) == 1


def test_notice_add_refuses_a_flux_service_and_accepts_a_helm_one_with_its_warning(plan) -> None:
    """Flux would revert the switch within its interval: blocked, one line, nothing stored.
    Helm applies only on an upgrade: accepted; the warning is `maint plan`'s to show."""
    window = ("--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90))
    code, out, err = plan("notice", "add", *window, "--target", f"{plan.namespace}/flux")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "preflight check 'flux' blocks" in err
    assert _stored(plan.database_url) == 0
    code, _out, err = plan("notice", "add", *window, "--target", f"{plan.namespace}/helm")
    assert code == 0, err
    assert _stored(plan.database_url) == 1


def test_pause_reconcilers_turns_flux_into_what_maint_will_do_and_is_stored(plan) -> None:
    """With --pause-reconcilers, `plan` tells that maint pauses Flux itself (info, exit 0), and
    `notice add` accepts the Flux Service and stores the flag; `notice show` tells it."""
    assert _findings(plan, "flux")[0] == 2
    code, out, err = plan(
        "plan", "-o", "json", "--pause-reconcilers", "--target", f"{plan.namespace}/flux"
    )
    flux = [f for f in json.loads(out) if f["check"] == "flux"]
    assert code == 0 and err == ""
    assert [f["severity"] for f in flux] == ["info"] and "--pause-reconcilers" in flux[0]["message"]
    window = ("--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90))
    code, out, err = plan(
        "notice", "add", *window, "--pause-reconcilers", "--target", f"{plan.namespace}/flux"
    )
    assert code == 0, err
    notice_id = int(out.split()[1])
    code, out, _err = plan("notice", "show", str(notice_id), "-o", "json")
    assert code == 0 and json.loads(out)["pause_reconcilers"] is True
    code, out, _err = plan("notice", "show", str(notice_id))
    assert "reconcilers (Flux) paused" in out


def test_pause_reconcilers_on_an_announcement_is_bad_input_and_stores_nothing(plan) -> None:
    window = ("--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90))
    code, out, err = plan("notice", "add", *window, "--no-maintenance", "--pause-reconcilers")
    assert code == 2 and out == ""
    assert (
        err.strip() == "maint: --pause-reconcilers needs a maintenance notice (it switches nothing)"
    )
    assert _stored(plan.database_url) == 0


def test_argocd_is_found_by_its_field_manager_without_its_annotation(plan, k8s) -> None:
    """A Service Argo CD applied server-side carries no tracking annotation, only its manager
    in managedFields: still blocked."""
    CoreV1Api(k8s).patch_namespaced_service(
        "argo-ssa",
        plan.namespace,
        _service("argo-ssa"),
        field_manager="argocd-controller",
        _content_type="application/apply-patch+yaml",
    )
    code, found = _findings(plan, "argo-ssa")
    assert code == 2
    (argo,) = [f for f in found if f["check"] == "argocd"]
    assert argo["severity"] == "block" and "field manager argocd-controller" in argo["message"]


def test_an_unknown_allowed_check_is_bad_input(plan) -> None:
    code, _out, err = plan(
        "notice", "add", "--title", "t", "--reason", "r", "--start", _iso(30), "--end", _iso(90),
        "--target", f"{plan.namespace}/web", "--allow", "argo",
    )  # fmt: skip
    assert code == 2 and "--allow argo: no such check" in err
    assert _stored(plan.database_url) == 0


def test_plan_of_a_missing_service_or_without_target_is_bad_input(plan) -> None:
    assert plan("plan", "--target", f"{plan.namespace}/nope")[0] == 2
    code, _, err = plan("plan")
    assert code == 2 and "--target" in err


def test_a_default_deny_policy_is_info_since_maint_gives_the_page_the_apps_ingress(plan, k8s):
    """A default-deny plus an allow rule for the app: maint creates the page's policy for the
    window (tests/integration/test_page_network_policy.py), so nothing blocks."""
    net = NetworkingV1Api(k8s)
    net.create_namespaced_network_policy(
        plan.namespace,
        {"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )
    net.create_namespaced_network_policy(
        plan.namespace,
        {
            "metadata": {"name": "allow-web"},
            "spec": {
                "podSelector": {"matchLabels": APP_LABELS},
                "ingress": [{"from": [{"namespaceSelector": {}}]}],
            },
        },
    )
    code, found = _findings(plan, "web")
    assert code == 0
    (policy,) = [f for f in found if f["check"] == "network-policy"]
    assert policy["severity"] == "info"
    assert "deny-all" in policy["message"] and "allow-web" in policy["message"]
    assert "maint creates a NetworkPolicy" in policy["message"]


def test_a_policy_isolating_only_the_page_pod_blocks_until_the_page_is_let_in(plan, k8s):
    """A policy selecting maint's Pods and not the app's: there is nothing of the app's to copy."""
    net = NetworkingV1Api(k8s)
    net.create_namespaced_network_policy(
        plan.namespace,
        {
            "metadata": {"name": "deny-maint"},
            "spec": {
                "podSelector": {
                    "matchExpressions": [
                        {"key": "app.kubernetes.io/managed-by", "operator": "Exists"}
                    ]
                },
                "policyTypes": ["Ingress"],
            },
        },
    )
    code, found = _findings(plan, "web")
    assert code == 2
    (policy,) = [f for f in found if f["check"] == "network-policy"]
    assert policy["severity"] == "block" and "deny-maint" in policy["message"]
    net.create_namespaced_network_policy(
        plan.namespace,
        {
            "metadata": {"name": "allow-page"},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "maint"}},
                "ingress": [{"from": [{"namespaceSelector": {}}]}],
            },
        },
    )
    code, found = _findings(plan, "web")
    assert code == 0
    assert [f["severity"] for f in found if f["check"] == "network-policy"] == ["info"]


def test_local_traffic_policy_headless_and_a_shared_selector_are_reported(plan, k8s) -> None:
    core = CoreV1Api(k8s)
    local = _service("local", APP_LABELS)
    local["spec"]["internalTrafficPolicy"] = "Local"
    core.create_namespaced_service(plan.namespace, local)
    headless = _service("headless")
    headless["spec"]["clusterIP"] = "None"
    core.create_namespaced_service(plan.namespace, headless)
    code, found = _findings(plan, "local", "headless")
    assert code == 0
    checks = {(f["target"].split("/")[1], f["check"], f["severity"]) for f in found}
    assert ("local", "traffic-policy", "warn") in checks
    assert ("headless", "headless", "warn") in checks
    assert ("local", "shared-selector", "info") in checks
