"""Drift during a window: what other people do to the cluster while the page is up.

A deleted maintenance Pod is back after one reconcile pass (one poll interval), before the
start and during the window, and a running ``maint run`` at the default poll interval (15 s)
has it (or a replacement of an evicted one) back and Ready within 10 s: the page Pods are
watched, not found at the next poll; a
selector that someone else changed is never overwritten, is reported once in the
event log, and the window ends FAILED with that selector left in place.

Mostly in-process with the settable clock (the passes are real, only "now" is chosen), against
the real control plane and PostgreSQL.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from maint import naming
from maint.notices import TargetState
from maint.settings import Settings
from tests.support.processes import ready_endpoints, wait_until
from tests.support.window import (
    APP_LABELS,
    ON_POSTGRESQL,
)

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"poll_interval": 1}


def _delete_and_wait_gone(k8s, namespace: str, pod: str) -> None:
    core = CoreV1Api(k8s)
    uid = core.read_namespaced_pod(pod, namespace).metadata.uid

    def gone() -> bool:
        try:
            return core.read_namespaced_pod(pod, namespace).metadata.uid != uid
        except ApiException as e:
            return e.status == 404

    core.delete_namespaced_pod(pod, namespace)
    wait_until(gone, timeout=15, what=f"Pod {pod} to be deleted")


@pytest.mark.parametrize("phase", ["before start", "during the window"])
@ON_POSTGRESQL
def test_a_deleted_page_pod_is_back_after_one_pass(window, k8s, phase):
    notice = window.add(start_in=600, length=600)
    window.step()
    if phase == "during the window":
        window.clock.at(notice.start)
        window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is (TargetState.READY if phase == "before start" else TargetState.ACTIVE)
    _delete_and_wait_gone(k8s, window.namespace, target.pod)

    window.clock.advance(window.app.settings.poll_interval)  # the next poll
    started = time.monotonic()
    window.step()
    took = time.monotonic() - started
    pod = CoreV1Api(k8s).read_namespaced_pod(target.pod, window.namespace)
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    if phase == "during the window":
        assert wait_until(
            lambda: ready_endpoints(k8s, window.namespace) == {target.pod},
            timeout=15,
            what="the Service to list the new page Pod",
        )
    outcomes = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
    assert ("pod", "missing") in outcomes
    assert outcomes.count(("pod", "created")) == 2
    print(f"page Pod recreated and Ready in one pass ({took:.2f}s)")


EVICTED = {
    "status": {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
        "conditions": [{"type": "Ready", "status": "False"}],
    }
}


@pytest.mark.parametrize(
    ("lost", "event"),
    [("deleted", ("pod", "missing")), ("evicted", ("pod", "evicted"))],
)
def test_a_running_maint_at_the_default_poll_brings_a_lost_page_pod_back_within_10s(
    stage, k8s, capsys, lost, event
):
    """Deleted, or evicted (phase Failed, as the kubelet of a node under pressure reports it:
    the fake kubelet stands in for that node), the page Pod is back and Ready within 10 s."""
    poll = Settings.model_fields["poll_interval"].default
    notice = stage.add(start_in=4, length=120)
    run = stage.run("maint", poll_interval=poll)
    # Active, and the switch step over (it waits for the EndpointSlices to list the page Pod).
    wait_until(
        lambda: (
            stage.notice(notice.id).targets[0].state is TargetState.ACTIVE
            and any(e.step == "endpoints" for e in stage.events(notice.id))
        ),
        timeout=40,
        what=f"the window to be active\n{run.tail()}",
        interval=0.2,
    )
    # Lose it right after an observe has started: the next one by the clock is a poll away.
    observe = f"started {notice.id}/{stage.namespace}/web:observe"
    seen = run.output().count(observe)
    wait_until(
        lambda: run.output().count(observe) > seen,
        timeout=2 * poll + 5,  # a pass a hair early skips its observe to the next poll
        what=f"an observe pass\n{run.tail()}",
        interval=0.05,
    )
    pod = stage.notice(notice.id).targets[0].pod
    core = CoreV1Api(k8s)
    uid = core.read_namespaced_pod(pod, stage.namespace).metadata.uid

    def back() -> bool:
        try:
            found = core.read_namespaced_pod(pod, stage.namespace)
        except ApiException:
            return False
        ready = any(c.type == "Ready" and c.status == "True" for c in found.status.conditions or [])
        return found.metadata.uid != uid and ready

    began = time.time()
    if lost == "deleted":
        core.delete_namespaced_pod(pod, stage.namespace)
    else:
        core.patch_namespaced_pod_status(pod, stage.namespace, EVICTED)
    wait_until(back, timeout=poll + 5, what=f"the page Pod to be back\n{run.tail()}", interval=0.05)
    took = time.time() - began
    assert took <= 10, f"page Pod back {took:.2f}s after it was {lost} (poll {poll:.0f}s)"
    assert stage.selector() == naming.page_selector(name=pod, keys=APP_LABELS)
    assert event in [(e.step, e.outcome) for e in stage.events(notice.id)]
    with capsys.disabled():
        print(f"\ndrift: a {lost} page Pod was back and Ready {took:.2f}s later (poll {poll:.0f}s)")


@ON_POSTGRESQL
def test_a_foreign_selector_is_reported_once_and_never_overwritten(window, k8s):
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    target = window.notice(notice.id).targets[0]
    theirs = {"app": "web", "track": "canary"}
    core = CoreV1Api(k8s)
    core.patch_namespaced_service(
        "web", window.namespace, [{"op": "replace", "path": "/spec/selector", "value": theirs}]
    )

    for _ in range(3):  # three polls inside the window
        window.clock.advance(window.app.settings.poll_interval)
        window.step()
        assert core.read_namespaced_service("web", window.namespace).spec.selector == theirs
    drift = [e for e in window.app.store.events(notice.id) if e.step == "drift"]
    assert len(drift) == 1 and drift[0].outcome == "foreign"
    assert "track" in drift[0].detail and "left as is" in drift[0].detail

    # Someone points another Service at the page: at the FAILED end it must keep serving.
    core.create_namespaced_service(
        window.namespace,
        {
            "metadata": {"name": "still-paged"},
            "spec": {"selector": {"maint.io/page": target.pod}, "ports": [{"port": 80}]},
        },
    )
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.FAILED
    assert core.read_namespaced_service("web", window.namespace).spec.selector == theirs
    conflict = [e for e in window.app.store.events(notice.id) if e.outcome == "conflict"]
    assert len(conflict) == 1 and "not overwritten" in conflict[0].detail
    # Later passes (and the forced restore after end + grace) leave it alone too.
    window.clock.at(notice.end + window.app.settings.grace())
    window.clock.advance(1)
    window.step()
    assert core.read_namespaced_service("web", window.namespace).spec.selector == theirs
    assert core.read_namespaced_pod(target.pod, window.namespace).metadata.name == target.pod
