"""What maint leaves to the other managers of a Service: Flux's pause, and the selector's owner.

- ``--pause-reconcilers`` sets Flux's ``kustomize.toolkit.fluxcd.io/reconcile: disabled`` in
  the switch's patch and, at the end (restore, forced restore), puts back exactly the value it
  had: removed when there was none, the old one otherwise, left alone when someone else changed
  it during the window. Every other annotation is as it was.
- After a window, the Service's previous server-side apply manager (``helm``) owns the selector
  again: it may change it without ``--force`` (a plain JSON Patch restore would leave ``maint``
  owning it, and that apply would get a 409 conflict).

Real kube-apiserver and controller-manager, the fake kubelet, SQLite and PostgreSQL, the
settable clock. No Flux or Helm runs here: the tests prove what maint writes, through the
annotations and ``managedFields`` those tools read.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from maint import naming
from maint.notices import TargetState
from maint.runner import restore_overdue
from maint.switch.pause import FLUX_RECONCILE
from tests.support.window import APP_LABELS, Window

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

APPLY = "application/apply-patch+yaml"  # server-side apply
FLUX_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "apps",
    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
}


def _flux_service(k8s, namespace: str, annotations: dict[str, str]) -> None:
    CoreV1Api(k8s).create_namespaced_service(
        namespace,
        {
            "metadata": {
                "name": "site",
                "labels": FLUX_LABELS,
                "annotations": annotations,
            },
            "spec": {"selector": APP_LABELS, "ports": [{"name": "http", "port": 80}]},
        },
    )


def _switched(window: Window, *, pause: bool) -> int:
    """A notice on ``site`` (pausing reconcilers when asked), prepared and switched."""
    notice = window.add(service="site", pause_reconcilers=pause, allow=() if pause else ("flux",))
    window.step()
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE, window.lines
    return notice.id


def _annotations(k8s, namespace: str) -> dict[str, str]:
    meta = CoreV1Api(k8s).read_namespaced_service("site", namespace).metadata
    return dict(meta.annotations or {})


@pytest.mark.parametrize("before", [None, "enabled"], ids=["absent", "enabled"])
def test_pause_reconcilers_pauses_flux_for_the_window_and_puts_back_exactly_what_was(
    window, k8s, before: str | None
) -> None:
    ns = window.namespace
    others = {"team": "shop", "example.com/owner": "payments"}
    original = others | ({FLUX_RECONCILE: before} if before else {})
    _flux_service(k8s, ns, original)
    notice_id = _switched(window, pause=True)

    during = _annotations(k8s, ns)
    assert during[FLUX_RECONCILE] == "disabled"
    assert json.loads(during[naming.PAUSED_ANNOTATION]) == {FLUX_RECONCILE: before}
    assert window.notice(notice_id).targets[0].paused == {FLUX_RECONCILE: before}
    assert {k: during[k] for k in others} == others

    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _annotations(k8s, ns) == original


def test_without_the_flag_flux_is_not_touched(window, k8s) -> None:
    ns = window.namespace
    _flux_service(k8s, ns, {"team": "shop"})
    notice_id = _switched(window, pause=False)
    during = _annotations(k8s, ns)
    assert FLUX_RECONCILE not in during and naming.PAUSED_ANNOTATION not in during
    assert window.notice(notice_id).targets[0].paused is None


def test_an_annotation_already_disabled_by_the_operator_is_neither_recorded_nor_removed(
    window, k8s
) -> None:
    ns = window.namespace
    _flux_service(k8s, ns, {FLUX_RECONCILE: "disabled"})
    notice_id = _switched(window, pause=True)
    assert naming.PAUSED_ANNOTATION not in _annotations(k8s, ns)
    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert _annotations(k8s, ns) == {FLUX_RECONCILE: "disabled"}


def test_a_value_changed_by_someone_else_during_the_window_is_theirs(window, k8s) -> None:
    ns = window.namespace
    _flux_service(k8s, ns, {"team": "shop"})
    notice_id = _switched(window, pause=True)
    CoreV1Api(k8s).patch_namespaced_service(
        "site", ns, {"metadata": {"annotations": {FLUX_RECONCILE: "enabled"}}}
    )
    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _annotations(k8s, ns) == {"team": "shop", FLUX_RECONCILE: "enabled"}


def test_the_forced_restore_resumes_flux_from_the_service_alone(window, k8s) -> None:
    """`maint restore --overdue` (no database) reads the record from the Service."""
    ns = window.namespace
    _flux_service(k8s, ns, {"team": "shop"})
    notice_id = _switched(window, pause=True)
    notice = window.notice(notice_id)
    overdue = notice.end + window.app.settings.grace() + timedelta(seconds=1)
    # This namespace only: cluster-wide, a time this far ahead would force-restore the live
    # windows of tests running in parallel.
    [result] = restore_overdue(window.app.api, now=overdue, namespace=ns)
    assert (result.service, result.outcome) == (f"{ns}/site", "restored"), result
    assert _annotations(k8s, ns) == {"team": "shop"}


def _helm_service(namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "site", "namespace": namespace, "labels": {"chart": "site-1"}},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}]},
    }


def _selector_owners(k8s, namespace: str) -> dict[str, dict[str, Any]]:
    service = CoreV1Api(k8s).read_namespaced_service("site", namespace)
    return {
        entry.manager: entry.fields_v1["f:spec"]["f:selector"]
        for entry in service.metadata.managed_fields or []
        if "f:selector" in ((entry.fields_v1 or {}).get("f:spec") or {})
    }


def test_helm_owns_the_selector_again_after_the_window_and_changes_it_without_force(
    window, k8s
) -> None:
    core = CoreV1Api(k8s)
    ns = window.namespace
    core.patch_namespaced_service(  # created by server-side apply, as Helm 4 does
        "site", ns, _helm_service(ns, APP_LABELS), field_manager="helm", _content_type=APPLY
    )
    before = _selector_owners(k8s, ns)
    assert set(before) == {"helm"}
    notice_id = _switched(window, pause=False)
    assert set(_selector_owners(k8s, ns)) == {"maint"}  # the switch took it, as any patch does
    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _selector_owners(k8s, ns) == before
    restore = [e for e in window.app.store.events(notice_id) if e.step == "restore"]
    assert "selector ownership given back to helm" in restore[-1].detail

    moved = {"app": "web", "tier": "frontend"}
    try:  # no force: a conflict with another owner of the selector would raise 409 here
        core.patch_namespaced_service(
            "site", ns, _helm_service(ns, moved), field_manager="helm", _content_type=APPLY
        )
    except ApiException as e:
        pytest.fail(f"helm's apply after the window conflicted: {e.status} {e.body}")
    assert core.read_namespaced_service("site", ns).spec.selector == moved
