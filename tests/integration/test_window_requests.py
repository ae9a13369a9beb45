"""What a window asks of the API server: nothing read twice where one read answers (issue 15).

The preparation reads the Service once (the preflight's read plans the page and its
NetworkPolicy) and lists the app's Pods and the namespace's NetworkPolicies once; the cleanup
lists each kind once per namespace and finds the digests to delete in the Kaniko Pods it lists,
not with another list of each Job's Pods; those Pods go with their Job (garbage collector).

The shared window's steps go through an ``ApiProxy`` whose audit is the record; everything is
real (control plane, registry, SQLite and PostgreSQL) but the clock, which the test sets. The
fake kubelet reports a really pushed digest (Kaniko cannot run here).
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import pytest

from maint.notices import TargetState
from tests.support.faults import ApiProxy, Exchange
from tests.support.kubelet import JobResult
from tests.support.window import leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def window_settings(proxy, tmp_path) -> dict[str, Any]:
    """The shared window, its steps going through the counting proxy."""
    return {"kubeconfig": str(proxy.kubeconfig(tmp_path / "kubeconfig")), "step_retry_delay": 1}


def _reads(proxy: ApiProxy, *, since: int) -> list[Exchange]:
    """The GETs after the ``since``-th request that are not watches (a wait's watch is one)."""
    return [e for e in proxy.audit.all()[since:] if e.method == "GET" and not e.watch]


def _labels(exchange: Exchange) -> str:
    return parse_qs(exchange.query).get("labelSelector", [""])[0]


def _lists(reads: list[Exchange]) -> Counter[tuple[str, str, str]]:
    """How often each collection was listed: (namespace in the path, resource, labels)."""
    return Counter((e.path.split("/")[-2], e.resource, _labels(e)) for e in reads if not e.name)


def test_a_window_reads_each_thing_once_per_step(window, proxy, kubelet, oci_registry, k8s):
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    notice = window.add()
    since = len(proxy.audit.all())
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    prepare = _reads(proxy, since=since)
    assert [e.name for e in prepare if e.resource == "services" and e.name] == ["web"]
    app_pods = [e for e in prepare if e.resource == "pods" and _labels(e) == "app=web"]
    assert len(app_pods) == 1, [str(e) for e in prepare]
    assert len([e for e in prepare if e.resource == "networkpolicies"]) == 1

    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    since = len(proxy.audit.all())
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
    ending = _reads(proxy, since=since)
    listed = _lists(ending)
    assert listed, [str(e) for e in ending]
    assert max(listed.values()) == 1, listed
    assert not [e for e in ending if "job-name=" in _labels(e)], [str(e) for e in ending]
    details = [e.detail for e in window.app.store.events(notice.id) if e.step == "cleanup"]
    assert any(d.startswith("deleted image ") for d in details), details
    deleted = [e.path for e in proxy.audit.all()[since:] if e.method == "DELETE"]
    assert any("/jobs/" in p for p in deleted) and any("/configmaps/" in p for p in deleted)
    assert any(f"/namespaces/{window.namespace}/pods/" in p for p in deleted)
    assert not [p for p in deleted if f"/namespaces/{window.build_namespace}/pods/" in p]
    assert leftovers_after(k8s, notice.id) == []
