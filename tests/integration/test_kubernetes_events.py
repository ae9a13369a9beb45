"""Milestones become Kubernetes Events on the target Service (real API server, events.k8s.io/v1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes.client import CoreV1Api, EventsV1Api

from maint import cluster
from maint.notices import Event, TargetState
from maint.runner.announce import KubernetesEvents
from maint.runner.transitions import PREPARE_MARGIN
from tests.support.kubelet import JobResult
from tests.support.window import make_app

pytestmark = pytest.mark.k8s


def _maints(k8s, namespace: str) -> list:
    """maint's Events in ``namespace`` (the API server adds its own: ClusterIPNotAllocated)."""
    return [
        e
        for e in EventsV1Api(k8s).list_namespaced_event(namespace).items
        if e.reporting_controller == "maint.io/maint"
    ]


def _event(namespace: str, step: str, outcome: str, detail: str = "") -> Event:
    return Event(
        at=datetime.now(UTC),
        notice_id=7,
        target=f"{namespace}/web",
        step=step,
        outcome=outcome,
        detail=detail,
    )


def test_milestones_are_told_on_the_service_and_other_steps_are_not(control_plane, k8s, namespace):
    make_app(k8s, namespace)
    api = cluster.connect(kubeconfig=str(control_plane.kubeconfig))
    events = KubernetesEvents(api, instance="maint-0")
    for step, outcome in [
        ("prepare", "started"),
        ("prepare", "ok"),
        ("switch", "ok"),
        ("pod", "created"),
        ("drift", "foreign"),
        ("restore", "ok"),
    ]:
        events(_event(namespace, step, outcome, "x" * 2000 if step == "drift" else "detail"))
    events.close()
    api.close()
    assert (events.sent, events.failed) == (4, 0)
    told = _maints(k8s, namespace)
    told.sort(key=lambda e: e.event_time)
    assert [e.reason for e in told] == ["Prepared", "Switched", "Drift", "Restored"]
    assert {e.reporting_controller for e in told} == {"maint.io/maint"}
    assert {(e.regarding.kind, e.regarding.name) for e in told} == {("Service", "web")}
    assert [e.type for e in told] == ["Normal", "Normal", "Warning", "Normal"]
    assert told[0].note == "notice 7: prepare ok: detail"
    assert len(told[2].note.encode()) <= 1024


def test_an_event_maint_may_not_create_is_logged_and_never_raises(
    control_plane, k8s, namespace, caplog
):
    make_app(k8s, namespace)
    api = cluster.connect(kubeconfig=str(control_plane.kubeconfig), impersonate="nobody")
    events = KubernetesEvents(api, instance="maint-0")
    events(_event(namespace, "switch", "ok"))
    events.close()
    api.close()
    assert (events.sent, events.failed) == (0, 1)
    assert "Event Switched for" in caplog.text and "not sent" in caplog.text
    assert _maints(k8s, namespace) == []


def test_a_whole_window_is_told_on_the_service(window, k8s, namespace):
    """`maint run`'s wiring (App.runner): prepare, switch and restore each leave one Event."""
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
    window.close()  # App.close sends what is queued: every Event is there now
    told = _maints(k8s, namespace)
    told.sort(key=lambda e: e.event_time)
    assert [e.reason for e in told] == ["Prepared", "Switched", "Restored"]
    assert all(e.note.startswith(f"notice {notice.id}: ") for e in told)


def test_a_blocker_that_appears_after_notice_add_is_told_at_prepare(window, k8s, namespace):
    """Flux adopts the Service between `notice add` and the preparation: the window goes on
    (only the operator cancels), and the event log and the Service's Events say why to look."""
    notice = window.add(start_in=600, length=600)
    CoreV1Api(k8s).patch_namespaced_service(
        "web", namespace, {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}}
    )
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    logged = [
        (e.step, e.outcome, e.detail.split(":")[0])
        for e in window.app.store.events(notice.id)
        if e.step == "preflight"
    ]
    assert logged == [("preflight", "blocked", "flux")]
    window.close()  # App.close sends what is queued: every Event is there now
    told = _maints(k8s, namespace)
    assert sorted(e.reason for e in told) == ["PreflightBlocked", "Prepared"]
    (blocked,) = [e for e in told if e.reason == "PreflightBlocked"]
    assert blocked.type == "Warning" and "Flux" in blocked.note


def test_a_rolled_back_window_is_told_on_the_service(window, k8s, namespace, kubelet):
    """A build that keeps failing past the start (and its margin) rolls the window back: the
    Service says so, as a Warning."""
    kubelet.default_job_result = JobResult(succeeded=False, message="error building image")
    notice = window.add(start_in=600, length=600)
    window.step()  # a failed build is retried until the start plus PREPARE_MARGIN
    window.clock.at(notice.start + PREPARE_MARGIN)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    window.close()  # App.close sends what is queued: every Event is there now
    told = _maints(k8s, namespace)
    assert [(e.reason, e.type) for e in told] == [("RolledBack", "Warning")]
    assert f"notice {notice.id}: rollback ok" in told[0].note


def test_a_restore_that_finds_someone_elses_selector_is_told_on_the_service(window, k8s, namespace):
    """Someone points the Service elsewhere during the window: maint never overwrites it, and
    the Service's Events carry the conflict as a Warning, after Prepared and Switched."""
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    CoreV1Api(k8s).patch_namespaced_service(
        "web", namespace, [{"op": "replace", "path": "/spec/selector", "value": {"x": "y"}}]
    )
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.FAILED
    window.close()  # App.close sends what is queued: every Event is there now
    told = sorted(_maints(k8s, namespace), key=lambda e: e.event_time)
    reasons = [e.reason for e in told]
    assert reasons[:2] == ["Prepared", "Switched"] and "RestoreConflict" in reasons, reasons
    (conflict,) = [e for e in told if e.reason == "RestoreConflict"]
    assert conflict.type == "Warning" and "not overwritten" in conflict.note
