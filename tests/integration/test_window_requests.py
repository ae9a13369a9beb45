"""What a window asks of the API server (issue 15): its writes, and reads only where a read
decides something the watch cache must not (``maint.cluster.caching``).

The first window in a namespace starts the runner's informers there (a list and a watch per
kind); a window after it reads its Service, page Pod, Job, Kaniko Pods, EndpointSlices,
NetworkPolicies and what it cleans up from them. Its own reads are then the Namespace (the
preflight) and the Service before the selector PATCHes that are not armed (a test's clock never
arms one: ``test_window_armed`` has the armed steps). The cleanup deletes what the cache lists,
including what was created a moment before (``Cache.wrote``), and finds the digests to delete in
the Kaniko Pods it knows; those Pods go with their Job (garbage collector).

The shared window's steps go through an ``ApiProxy`` whose audit is the record; everything is
real (control plane, registry, SQLite and PostgreSQL) but the clock, which the test sets. The
fake kubelet reports a really pushed digest (Kaniko cannot run here).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from maint.notices import TargetState
from tests.support.faults import ApiProxy, Exchange
from tests.support.kubelet import JobResult
from tests.support.window import leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]
WINDOW_BUDGET = 16  # requests per window (issue 15)


@pytest.fixture
def window_settings(proxy, tmp_path) -> dict[str, Any]:
    """The shared window, its steps going through the counting proxy."""
    return {"kubeconfig": str(proxy.kubeconfig(tmp_path / "kubeconfig")), "step_retry_delay": 1}


def _made(proxy: ApiProxy, *, since: int) -> list[Exchange]:
    """The runner's requests after the ``since``-th, but those of every pass, not of a window:
    the page watch (one per runner) and the forced-restore sweep (one cluster-wide list)."""
    return [
        e
        for e in proxy.audit.all()[since:]
        if not e.page_watch and not (e.resource == "services" and e.path == "/api/v1/services")
    ]


def _run(window, notice_id: int) -> None:
    """Prepare, switch at the start, restore at the end."""
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.READY
    notice = window.notice(notice_id)
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED


def test_a_window_after_the_first_costs_its_writes_and_three_reads(
    window, proxy, kubelet, oci_registry, k8s
):
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    first = window.add()
    _run(window, first.id)
    kubelet.default_job_result = JobResult(  # its own image, for its clean-up to delete
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    second = window.add()  # `notice add` reads as the CLI does, without the runner's cache
    since = len(proxy.audit.all())
    _run(window, second.id)
    made = _made(proxy, since=since)
    reads = [e.path for e in made if e.method == "GET" and not e.watch]
    namespace = f"/api/v1/namespaces/{window.namespace}"
    service = f"{namespace}/services/web"
    # The preflight's Namespace; the Service before the switch's and the restore's PATCH.
    assert reads == [namespace, service, service], [str(e) for e in made]
    assert not [e for e in made if e.watch], [str(e) for e in made if e.watch]
    writes = Counter((e.method, e.resource) for e in made if e.method != "GET")
    assert writes == {
        ("POST", "configmaps"): 1,
        ("POST", "jobs"): 1,
        ("POST", "pods"): 1,
        ("POST", "events"): 3,
        ("PATCH", "services"): 3,  # switch, restore, the selector's ownership handed back
        ("DELETE", "pods"): 1,
        ("DELETE", "jobs"): 1,
        ("DELETE", "configmaps"): 1,
    }, writes
    assert len(made) <= WINDOW_BUDGET, [str(e) for e in made]
    details = [e.detail for e in window.app.store.events(second.id) if e.step == "cleanup"]
    assert any(d.startswith("deleted image ") for d in details), details
    assert leftovers_after(k8s, first.id) == []
    assert leftovers_after(k8s, second.id) == []
