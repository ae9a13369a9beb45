"""Switch and restore armed before their instant: at the instant, one PATCH and nothing before it.

A pass less than ``arm_ahead`` before a start (an end) arms the target's switch (restore): the
claim, the page Pod and the Service are read then, the patch computed. At the instant the notice
is confirmed once more and the PATCH goes out from the thread that waited; the EndpointSlices are
checked after it. An intent recorded while it waits (a cancel, an extend) still wins: nothing is
patched. Several targets with one start send all their PATCHes before any EndpointSlice request.

In-process with the settable clock, moved to the instant while the armed thread waits (as time
passes for ``maint run``); everything else is real, and every request of maint goes through an
``ApiProxy`` whose audit is what reached the API server.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from maint import naming
from maint.notices import TargetState
from tests.support.faults import ApiProxy, Exchange
from tests.support.processes import wait_until
from tests.support.window import APP_LABELS, Window, as_older_release, leftovers_after, make_app

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def window_settings(proxy, tmp_path) -> dict[str, Any]:
    """The shared window, its steps going through the counting proxy."""
    return {"kubeconfig": str(proxy.kubeconfig(tmp_path / "kubeconfig"))}


def _selector(k8s, window: Window, service: str = "web") -> dict[str, str]:
    return dict(CoreV1Api(k8s).read_namespaced_service(service, window.namespace).spec.selector)


def _requests(proxy: ApiProxy, *, since: int) -> list[Exchange]:
    """What maint asked after the ``since``-th request: the steps' requests only (no Kubernetes
    Events, no long-lived page watch)."""
    return [e for e in proxy.audit.all()[since:] if e.resource != "events" and not e.page_watch]


def _arm(window: Window, proxy: ApiProxy, at: datetime, *, services: int = 1) -> int:
    """A pass one second before ``at`` that arms; returns once the armed steps have read their
    Services (from the watch cache) and wait for the instant (the audit's length then)."""
    window.clock.at(at - timedelta(seconds=1))
    started = window.runner.pass_once().started
    assert len([label for label in started if " at " in label]) == services, started
    instants = window.runner.steps.ctx.instants
    wait_until(lambda: instants.armed() >= services, timeout=10, what="the steps to be armed")
    return len(proxy.audit.all())


def _ready(window: Window, **add) -> int:
    notice = window.add(**add)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY, window.lines[-6:]
    return notice.id


def test_an_armed_switch_sends_its_patch_first_at_the_start_then_checks_endpoints(
    window, k8s, proxy
):
    notice_id = _ready(window)
    start = window.notice(notice_id).start
    since = _arm(window, proxy, start)
    assert _requests(proxy, since=since) == []  # waiting: nothing more before the instant
    window.clock.at(start)
    window.runner.wait_idle()
    after = _requests(proxy, since=since)
    assert after, "nothing was sent at the instant"
    first = after[0]
    assert (first.method, first.resource, first.name) == ("PATCH", "services", "web")
    # Guarded by the selector it replaces (and, since bf5eb90, first by the resourceVersion).
    assert {"op": "test", "path": "/spec/selector", "value": APP_LABELS} in first.json_body()
    assert [e for e in after if e.method == "PATCH"] == [first]
    assert {e.resource for e in after[1:]} <= {"endpointslices"}, [str(e) for e in after]
    target = window.notice(notice_id).targets[0]
    assert target.state is TargetState.ACTIVE
    assert _selector(k8s, window) == naming.page_selector(name=target.pod, keys=APP_LABELS)
    events = [(e.step, e.outcome, e.detail) for e in window.app.store.events(notice_id)]
    switch = [d for step, outcome, d in events if (step, outcome) == ("switch", "ok")]
    assert len(switch) == 1 and "(+0.000s from start)" in switch[0], events
    assert ("endpoints", "ok") in [(s, o) for s, o, _d in events]


def test_an_armed_restore_sends_its_patch_first_at_the_end_and_completes(window, k8s, proxy):
    notice_id = _ready(window, length=300)
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    since = _arm(window, proxy, notice.end)
    window.clock.at(notice.end)
    window.runner.wait_idle()
    after = _requests(proxy, since=since)
    first = after[0]
    assert (first.method, first.resource, first.name) == ("PATCH", "services", "web")
    assert first.json_body()[1] == {"op": "replace", "path": "/spec/selector", "value": APP_LABELS}
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _selector(k8s, window) == APP_LABELS
    events = [(e.step, e.outcome, e.detail) for e in window.app.store.events(notice_id)]
    restore = [d for step, outcome, d in events if (step, outcome) == ("restore", "ok")]
    assert len(restore) == 1 and "(+0.000s from end)" in restore[0], events
    assert "selector ownership" in restore[0]
    assert leftovers_after(k8s, notice_id) == []


@pytest.mark.parametrize("woken", [False, True], ids=["at-the-instant", "by-the-next-pass"])
def test_a_cancel_while_the_switch_is_armed_wins_and_nothing_is_patched(window, k8s, proxy, woken):
    """Recorded in the last second: seen by the confirm at the instant, or (``woken``) by a
    pass before it, which wakes the armed step at once."""
    notice_id = _ready(window)
    start = window.notice(notice_id).start
    since = _arm(window, proxy, start)
    window.app.end_notice(notice_id, cancel=True)
    if woken:
        window.runner.pass_once()
    else:
        window.clock.at(start)
    window.runner.wait_idle()
    patches = [e for e in _requests(proxy, since=since) if e.method == "PATCH"]
    assert patches == []
    assert _selector(k8s, window) == APP_LABELS
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.CANCELLED
    assert _selector(k8s, window) == APP_LABELS
    assert leftovers_after(k8s, notice_id) == []


def test_an_extend_while_the_restore_is_armed_wins_and_the_page_keeps_serving(window, k8s, proxy):
    notice_id = _ready(window, length=300)
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    pod = window.notice(notice_id).targets[0].pod
    since = _arm(window, proxy, notice.end)
    new_end = notice.end + timedelta(minutes=30)
    window.app.extend_notice(notice_id, end=new_end.isoformat())
    window.clock.at(notice.end)
    window.runner.wait_idle()
    assert [str(e) for e in _requests(proxy, since=since) if e.method == "PATCH"] == []
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    assert _selector(k8s, window) == naming.page_selector(name=pod, keys=APP_LABELS)


def test_targets_sharing_a_start_send_every_patch_before_any_endpoint_check(window, k8s, proxy):
    for name in ("api", "shop"):
        make_app(k8s, window.namespace, service=name)
    start = window.clock() + timedelta(seconds=600)
    ids = []
    for name in ("web", "api", "shop"):
        notice = window.add(service=name, start_in=600)
        assert notice.start == start
        ids.append(notice.id)
    window.step()
    assert all(window.notice(i).targets[0].state is TargetState.READY for i in ids)
    since = _arm(window, proxy, start, services=3)
    window.clock.at(start)
    window.runner.wait_idle()
    after = _requests(proxy, since=since)
    kinds = [(e.method, e.resource) for e in after]
    patches = [i for i, kind in enumerate(kinds) if kind == ("PATCH", "services")]
    endpoints = [i for i, (_m, resource) in enumerate(kinds) if resource == "endpointslices"]
    assert len(patches) == 3 and endpoints, [str(e) for e in after]
    assert max(patches) < min(endpoints), [str(e) for e in after]
    for i, name in zip(ids, ("web", "api", "shop"), strict=True):
        target = window.notice(i).targets[0]
        assert target.state is TargetState.ACTIVE
        assert _selector(k8s, window, name) == naming.page_selector(
            name=target.pod, keys=APP_LABELS
        )


def test_a_foreign_selector_shortly_before_the_restore_is_armed_is_reported_as_drift(
    window, k8s, proxy
):
    """Within twice the arming lead of the end, before the restore is armed: still observed."""
    notice_id = _ready(window, length=300)
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    CoreV1Api(k8s).patch_namespaced_service(
        "web", window.namespace, [{"op": "replace", "path": "/spec/selector", "value": {"x": "y"}}]
    )
    window.clock.at(notice.end - timedelta(seconds=15))
    started = window.runner.pass_once().started
    window.runner.wait_idle()
    assert [label for label in started if label.endswith(":observe")], started
    events = [(e.step, e.outcome, e.detail) for e in window.app.store.events(notice_id)]
    drift = [d for step, outcome, d in events if (step, outcome) == ("drift", "foreign")]
    assert len(drift) == 1 and "{'x': 'y'}" in drift[0], events


def test_an_armed_restore_that_patched_nothing_is_not_counted_as_fired(window, k8s, proxy, caplog):
    """The Service deleted before the arming: nothing is armed, nothing fired at the end."""
    caplog.set_level(logging.INFO, logger="maint.runner.instant")
    notice_id = _ready(window, length=300)
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    CoreV1Api(k8s).delete_namespaced_service("web", window.namespace)
    since = _arm(window, proxy, notice.end)
    window.clock.at(notice.end)
    window.runner.wait_idle()
    assert [str(e) for e in _requests(proxy, since=since) if e.method == "PATCH"] == []
    assert window.notice(notice_id).targets[0].state is not TargetState.ACTIVE
    assert "PATCH(es) armed" not in caplog.text


def test_a_runner_shut_down_while_a_switch_is_armed_sends_no_patch_at_the_start(window, k8s, proxy):
    """Its claim is no longer renewed after the shutdown: the armed step leaves unfired."""
    notice_id = _ready(window)
    start = window.notice(notice_id).start
    since = _arm(window, proxy, start)
    window.runner.shutdown()
    window.clock.at(start)
    window.runner.wait_idle()
    assert [str(e) for e in _requests(proxy, since=since) if e.method == "PATCH"] == []
    assert _selector(k8s, window) == APP_LABELS
    assert window.notice(notice_id).targets[0].state is TargetState.READY


def test_an_armed_restore_of_a_window_an_older_release_switched_sends_its_patch_first(
    window, k8s, proxy
):
    """The older release's page selector (``naming.legacy_page_selector``, without the app's
    keys) is armed for the end too, as the usual restore gives it back."""
    ns = window.namespace
    notice_id = _ready(window, length=300)
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    pod = window.notice(notice_id).targets[0].pod
    legacy = as_older_release(k8s, ns, pod=pod)
    since = _arm(window, proxy, notice.end)
    window.clock.at(notice.end)
    window.runner.wait_idle()
    first = _requests(proxy, since=since)[0]
    assert (first.method, first.resource, first.name) == ("PATCH", "services", "web")
    assert {"op": "test", "path": "/spec/selector", "value": legacy} in first.json_body()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _selector(k8s, window) == APP_LABELS


def test_an_armed_switch_reads_its_target_once_before_the_instant(window, k8s, proxy, monkeypatch):
    """Under its claim, the change marker and then the target; at the instant, while the marker
    has not moved, no second read."""
    notice_id = _ready(window)
    start = window.notice(notice_id).start
    store = window.runner.store
    assert window.runner.steps.ctx.store is store
    reads: list[int] = []
    read = store.target

    def counted(target_id: int):
        reads.append(target_id)
        return read(target_id)

    monkeypatch.setattr(store, "target", counted)
    _arm(window, proxy, start)
    assert len(reads) == 1, reads
    window.clock.at(start)
    window.runner.wait_idle()
    assert len(reads) == 1, reads
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE


def test_a_switch_armed_while_the_previous_window_of_its_service_serves_switches_at_its_start(
    window, k8s, proxy
):
    """Two windows on one Service, 5 s apart: the second's switch is armed while the first's
    page still serves. Its patch cannot be computed then; it is read and sent at its start
    (after the first's restore), not rolled back as "behind a maintenance page"."""
    window.reconfigure(prepare_lead=1200)  # both prepared before the first starts
    first = window.notice(_ready(window, length=300))
    second = window.add(start_in=905, length=300)
    window.step()
    assert window.notice(second.id).targets[0].state is TargetState.READY
    window.clock.at(first.start)
    window.step()
    _arm(window, proxy, first.end, services=2)  # the first's restore and the second's switch
    window.clock.at(first.end)
    wait_until(
        lambda: window.notice(first.id).targets[0].state is TargetState.COMPLETED,
        timeout=10,
        what="the first window's restore",
    )
    assert window.notice(second.id).targets[0].state is TargetState.READY
    window.clock.at(second.start)
    window.runner.wait_idle()
    target = window.notice(second.id).targets[0]
    assert target.state is TargetState.ACTIVE, window.lines[-6:]
    assert _selector(k8s, window) == naming.page_selector(name=target.pod, keys=APP_LABELS)
    events = [(e.step, e.outcome, e.detail) for e in window.app.store.events(second.id)]
    switch = [d for step, outcome, d in events if (step, outcome) == ("switch", "ok")]
    assert len(switch) == 1 and "(+0.000s from start)" in switch[0], events
