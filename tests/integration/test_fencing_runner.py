"""Fencing in the runner, on the real API server and a real database (SQLite and PostgreSQL).

- The claim check installed around a step stops a cluster write once the claim is lost
  (refused by the database) or merely unproven (its last renewal older than TTL less the
  margin, on the monotonic clock), and nothing reaches the API server.
- A step past ``MAINT_STEP_DEADLINE`` is no longer renewed and ``/healthz`` answers 503.
- Clock skew: a replica whose clock runs two TTLs ahead never takes a live claim; with the old
  claim (expiry compared with the caller's clock) it would have taken it at once.

The fake kubelet stands in for Kaniko (no container runtime here): it keeps the Job running.
The monotonic clock of ``Claims`` is injected where a test must stand past a TTL or a deadline.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from maint import cluster
from maint.app import App
from maint.errors import ClaimLost
from maint.notices import TargetState
from maint.runner.claims import Claims
from maint.runner.health import Heartbeat, serve_health
from tests.support.kubelet import JobResult
from tests.support.processes import wait_until
from tests.support.window import APP_LABELS, Window

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

TTL = 2.0


class Monotonic:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def window_settings() -> dict[str, Any]:
    """The shared window, with claims short enough to lapse within a test."""
    return {"claim_ttl": TTL}


def _config_map(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": "v"},
    }


def _exists(k8s: Any, namespace: str, name: str) -> bool:
    try:
        CoreV1Api(k8s).read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def test_the_claim_check_stops_a_write_once_the_claim_is_lost_or_unproven(
    window: Window, k8s, namespace
) -> None:
    notice = window.add(start_in=600)
    target_id = notice.targets[0].id
    store, api = window.app.store, window.app.api
    clock = Monotonic()
    claims = Claims(store=store, owner="replica-a", ttl=TTL, deadline=600, monotonic=clock)
    held = claims.take(target_id)
    assert held is not None
    with claims.fence(held):
        assert cluster.create(api, _config_map(namespace, "fresh"))
        # Paused past TTL less the margin: not proven held any more, even before anyone
        # else could have taken it. The request never goes out.
        clock.now += TTL - claims.margin + 0.01
        with pytest.raises(ClaimLost, match=r"create ConfigMap .*/unproven.*last renewed"):
            cluster.create(api, _config_map(namespace, "unproven"))
    assert not _exists(k8s, namespace, "unproven")
    claims.release(held)

    held = claims.take(target_id)
    assert held is not None
    time.sleep(TTL + 0.5)  # expired in the database; another replica takes over
    assert store.claim(target_id, owner="replica-b", ttl=timedelta(seconds=30)) is not None
    clock.now += 0.1  # the local age alone would still allow the write
    assert not claims.renew(target_id)
    with claims.fence(held):
        with pytest.raises(ClaimLost, match="database refused the renewal"):
            cluster.create(api, _config_map(namespace, "lost"))
        with pytest.raises(ClaimLost, match="replica-b holds"):
            store.transition(
                target_id,
                expect=[TargetState.SCHEDULED],
                to=TargetState.PREPARING,
                due_at=None,
            )
    assert not _exists(k8s, namespace, "lost")
    assert store.target(target_id).target.state is TargetState.SCHEDULED


def test_a_step_past_its_deadline_is_not_renewed_and_healthz_fails(window: Window) -> None:
    notice = window.add(start_in=600)
    target_id = notice.targets[0].id
    clock = Monotonic()
    claims = Claims(store=window.app.store, owner="a", ttl=TTL, deadline=30, monotonic=clock)
    heartbeat = Heartbeat(stale_after=60, wedged=claims.wedged)
    server = serve_health(heartbeat, port=0, host="127.0.0.1")
    port = server.server_address[1]

    def probe() -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status, response.read().decode()

    try:
        held = claims.take(target_id)
        assert held is not None
        clock.now += 29
        assert claims.renew(target_id)
        assert probe()[0] == 200
        clock.now += 2  # 31 s into the step: past its 30 s deadline
        assert not claims.renew(target_id)
        status, body = probe()
        assert status == 503 and "past its 30s deadline" in body, body
        claims.release(held)  # the step ended after all: healthy again
        assert probe()[0] == 200
    finally:
        server.shutdown()


def test_a_replica_with_its_clock_two_ttls_ahead_never_takes_a_live_claim(
    window: Window, kubelet, oci_registry
) -> None:
    notice = window.add(start_in=30)
    job = window.page_name(notice.id)
    kubelet.job_results[job] = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    kubelet.held_jobs.add(job)
    target_id = notice.targets[0].id
    a = window.runner
    a.pass_once()  # prepare starts; the held build keeps the step (and its claim) going
    wait_until(
        lambda: window.app.store.target(target_id).target.state is TargetState.PREPARING,
        timeout=30,
        what="the build to start",
    )
    skewed = App(
        settings=window.app.settings,
        clock=lambda: window.clock() + timedelta(seconds=2 * TTL),
        say=window.lines.append,
    )
    b = skewed.runner()
    taken: list[bool] = []
    try:
        deadline = time.monotonic() + 3 * TTL
        while time.monotonic() < deadline:  # several TTLs: A renews meanwhile, B keeps trying
            b.pass_once()
            b.wait_idle()
            taken.append(b.claims.take(target_id) is not None)
            time.sleep(TTL / 4)
        row = window.app.store.target(target_id)
        assert not any(taken), "the skewed replica took a live claim"
        assert row.target.state is TargetState.PREPARING
        assert not [e for e in window.app.store.events(notice.id) if e.outcome == "resumed"]
    finally:
        kubelet.finish_held_job(job)
        done = threading.Event()
        threading.Thread(target=lambda: (a.wait_idle(), done.set()), daemon=True).start()
        done.wait(60)
        b.shutdown()
        skewed.close()
    assert window.app.store.target(target_id).target.state is TargetState.READY


def test_an_armed_switch_whose_claim_lapsed_while_it_waited_sends_no_patch(
    window: Window, k8s, namespace, caplog
) -> None:
    """The switch armed two seconds before the start holds the claim while it waits; its
    renewals stop (as in a replica cut off from its database) and another replica takes the
    target over. At the start the claim check stops the PATCH: the Service keeps the app."""
    caplog.set_level(logging.WARNING, logger="maint.runner.reconcile")
    notice = window.add(start_in=600)
    target_id = notice.targets[0].id
    window.step()
    runner = window.runner
    window.clock.at(notice.start - timedelta(seconds=2))
    started = runner.pass_once().started
    assert [label for label in started if " at " in label], started
    wait_until(lambda: runner.claims.count() == 1, timeout=10, what="the armed switch's claim")
    runner._stopping.set()  # the renewer stops; the armed step keeps waiting for the start
    time.sleep(TTL + 0.3)
    other = window.app.store.claim(target_id, owner="replica-b", ttl=timedelta(seconds=30))
    assert other is not None, "the lapsed claim was not taken over"
    window.clock.at(notice.start)
    runner.wait_idle()
    service = CoreV1Api(k8s).read_namespaced_service("web", namespace)
    assert dict(service.spec.selector) == APP_LABELS
    assert window.app.store.target(target_id).target.state is TargetState.READY
    assert not [e for e in window.app.store.events(notice.id) if e.step == "switch"]
    # Stopped by the check at the PATCH, not spared by a step that never reached it.
    fenced = f"stopped: patch Service {namespace}/web: claim on target {target_id} lost"
    stopped = [r.getMessage() for r in caplog.records if " stopped: " in r.getMessage()]
    assert [m for m in stopped if fenced in m], stopped
