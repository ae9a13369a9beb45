"""An intent recorded while a step works wins before that step's next cluster write.

A cancel or an end that lands while a late preparation reads the Service or waits for its
build, or while an extend's rebuild is under way, is followed by nothing the window no longer
wants: no build started, no page Pod created, no selector moved. The record of what reached
the API server is the audit of an ``ApiProxy`` that every request of maint goes through.

In-process with the settable clock (a pass runs on the runner's worker while the test records
the intent, as an operator would from another shell); everything else is real: the control
plane, the registry, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import BatchV1Api, CoreV1Api

from maint import naming
from maint.notices import TargetState
from tests.support.faults import ApiProxy, Exchange, Fault
from tests.support.processes import wait_until
from tests.support.window import APP_LABELS, Window, leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

WRITTEN = frozenset({"configmaps", "jobs", "pods", "services"})  # what a window's steps change


@pytest.fixture
def window_settings(proxy, tmp_path) -> dict[str, Any]:
    """The shared window, its steps going through the counting proxy."""
    return {"kubeconfig": str(proxy.kubeconfig(tmp_path / "kubeconfig")), "step_retry_delay": 1}


def _writes(proxy: ApiProxy, *, since: int) -> list[str]:
    """The window's cluster writes (not its Kubernetes Events) after the ``since``-th request;
    the proxy must have seen the window's requests at all, or "no writes" would prove nothing
    (after ``since`` there may be none: the steps' reads come from the watch cache)."""
    seen = proxy.audit.all()
    assert seen, "maint's requests did not go through the counting proxy"
    return [str(e) for e in seen[since:] if e.mutating and e.resource in WRITTEN]


def _job_exists(k8s, window: Window, name: str) -> bool:
    jobs = BatchV1Api(k8s).list_namespaced_job(window.build_namespace).items
    return any(j.metadata.name == name for j in jobs)


def _selector(k8s, window: Window) -> dict[str, str]:
    return dict(CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector)


def _ends_untouched(window: Window, k8s, notice_id: int, state: TargetState) -> None:
    """The next pass acts on the intent: ``state``, the app's selector, nothing left."""
    window.step()
    assert window.notice(notice_id).targets[0].state is state, window.lines[-8:]
    assert _selector(k8s, window) == APP_LABELS
    assert leftovers_after(k8s, notice_id) == []


def test_a_cancel_while_a_late_preparation_reads_the_service_starts_no_build(window, k8s, proxy):
    notice = window.add(start_in=600, length=600)
    window.clock.at(notice.start + timedelta(seconds=5))  # the preparation runs late

    def service_read(exchange: Exchange) -> bool:
        """The preparation's first read of the Service: the watch cache's list of them."""
        listed = exchange.path == f"/api/v1/namespaces/{window.namespace}/services"
        return exchange.method == "GET" and listed and not exchange.watch

    slow = proxy.inject(Fault.delay(2), when=service_read, limit=1)
    since = len(proxy.audit.all())
    window.runner.pass_once()
    wait_until(lambda: slow.hits, timeout=10, what="the preparation to read the Service")
    window.app.end_notice(notice.id, cancel=True)
    window.runner.wait_idle()
    assert _writes(proxy, since=since) == []  # no ConfigMap, no Job, no Pod
    assert not [e for e in window.app.store.events(notice.id) if e.step == "build"]
    _ends_untouched(window, k8s, notice.id, TargetState.CANCELLED)


def test_a_cancel_while_a_late_preparation_builds_creates_no_page_pod(window, k8s, kubelet, proxy):
    notice = window.add(start_in=600, length=600)
    window.clock.at(notice.start + timedelta(seconds=5))
    job = window.page_name(notice.id)
    kubelet.held_jobs.add(job)
    window.runner.pass_once()
    wait_until(lambda: _job_exists(k8s, window, job), timeout=15, what=f"the Job {job}")
    window.app.end_notice(notice.id, cancel=True)
    since = len(proxy.audit.all())
    kubelet.finish_held_job(job)  # the build ends after the cancel
    window.runner.wait_idle()
    assert _writes(proxy, since=since) == []  # no page Pod
    outcomes = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
    assert ("build", "ok") in outcomes and ("pod", "created") not in outcomes
    _ends_untouched(window, k8s, notice.id, TargetState.CANCELLED)


@pytest.mark.parametrize("verb", ["cancel", "end"])
def test_an_intent_during_an_extends_rebuild_never_switches_the_new_page_in(
    window, k8s, kubelet, proxy, verb
):
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    old = window.notice(notice.id).targets[0]
    assert old.state is TargetState.ACTIVE
    window.app.extend_notice(notice.id, end=(notice.end + timedelta(minutes=30)).isoformat())
    new_page = window.page_name(notice.id)
    kubelet.held_jobs.add(new_page)
    window.clock.advance(window.app.settings.poll_interval + 1)
    window.runner.pass_once()  # the observe moves restore-by, then rebuilds the page
    wait_until(lambda: _job_exists(k8s, window, new_page), timeout=15, what="the rebuild's Job")
    window.app.end_notice(notice.id, cancel=verb == "cancel")
    since = len(proxy.audit.all())
    kubelet.finish_held_job(new_page)  # the rebuild ends after the intent
    window.runner.wait_idle()
    assert _writes(proxy, since=since) == []  # no new page Pod, no selector moved
    assert _selector(k8s, window) == naming.page_selector(name=old.pod, keys=APP_LABELS)
    assert window.notice(notice.id).targets[0].pod == old.pod
    refresh = [e.outcome for e in window.app.store.events(notice.id) if e.step == "refresh"]
    assert refresh == ["started"]  # neither "ok" nor a "failed" that would be retried
    _ends_untouched(window, k8s, notice.id, TargetState.COMPLETED)
