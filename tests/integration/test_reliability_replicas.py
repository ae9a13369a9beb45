"""Two replicas: two real ``maint run`` processes on one database and one cluster.

Each replica talks to the API server through its own proxy, so the shared API audit says which
process sent which request and when. A replica only works on a target while it holds the
target's claim in the database (``claimed_by``/``claimed_until``, renewed while it works), so
the requests of the two replicas' steps never overlap in time. A long step (a Kaniko build
that the fake kubelet holds) outlasts the claim TTL many times over without the other replica
joining in; when the replica doing it is SIGKILLed, the other one resumes the step once the
claim expires. The takeover time is measured and bounded by the claim TTL plus one poll.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from maint.notices import TargetState
from tests.support.faults import ApiProxy, Audit, Exchange
from tests.support.processes import FAST_SETTINGS, conninfo, make_stage, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

CLAIM_TTL = float(FAST_SETTINGS["claim_ttl"])
POLL = float(FAST_SETTINGS["poll_interval"])


@pytest.fixture
def replicas(control_plane, k8s, kubelet, oci_registry, postgres_url, tmp_path) -> Iterator[Any]:
    audit = Audit()
    proxies = {
        name: ApiProxy(
            upstream=control_plane.server,
            ca_file=control_plane.ca_file,
            token=control_plane.token,
            label=name,
            audit=audit,
        ).start()
        for name in ("a", "b")
    }
    stage = make_stage(
        control_plane=control_plane,
        k8s=k8s,
        kubelet=kubelet,
        registry=oci_registry,
        database_url=postgres_url,
        workdir=tmp_path,
        prepare_lead=14,
    )
    try:
        yield stage, proxies, audit
    finally:
        stage.close()
        for proxy in proxies.values():
            proxy.stop()


def _step_requests(audit: Audit, label: str) -> list[Exchange]:
    """The replica's requests made by steps: all but the forced-restore sweep's Service list,
    which every pass makes, and the watch of every page Pod, which every replica keeps open,
    claim or not."""
    return [
        e
        for e in audit.all()
        if e.label == label
        and not (e.method == "GET" and e.path == "/api/v1/services")
        and not e.page_watch
    ]


def _overlaps(first: list[Exchange], second: list[Exchange]) -> list[str]:
    found = []
    for x in first:
        for y in second:
            x_end = x.finished or x.started
            y_end = y.finished or y.started
            if x.started < y_end and y.started < x_end:
                found.append(f"{x} [{x.started:.3f}..{x_end:.3f}] overlaps {y} [{y.started:.3f}]")
    return found


def _claim_owner(url: str) -> str | None:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT claimed_by FROM targets").fetchone()
    return row[0] if row else None


def test_two_replicas_never_step_at_once_and_the_survivor_takes_over(replicas, kubelet, capsys):
    stage, proxies, audit = replicas
    notice = stage.add(start_in=15, length=5, hold_build=True)
    job = stage.page_name(notice.id)
    processes = {
        name: stage.run(name, kubeconfig=proxy.kubeconfig(stage.workdir / f"kubeconfig-{name}"))
        for name, proxy in proxies.items()
    }

    def events(step: str, outcome: str) -> list[Any]:
        return [e for e in stage.events(notice.id) if (e.step, e.outcome) == (step, outcome)]

    wait_until(lambda: events("build", "started"), timeout=30, what="the build to start")
    # The build takes many claim TTLs; nobody else may pick the step up meanwhile.
    time.sleep(3 * CLAIM_TTL)
    assert not events("build", "resumed"), "the other replica joined a step in progress"

    owner = _claim_owner(stage.database_url)
    assert owner is not None, "a replica builds without holding the claim"
    active = next(n for n, p in processes.items() if f"/{p.pid}/" in owner)
    survivor = next(n for n in processes if n != active)
    killed_at = processes[active].kill()

    resumed = wait_until(
        lambda: events("build", "resumed"),
        timeout=CLAIM_TTL + 10 * POLL + 10,
        what="the survivor to take over",
    )[0]
    first_request = min(e.started for e in _step_requests(audit, survivor) if e.started > killed_at)
    takeover = resumed.at.timestamp() - killed_at
    kubelet.finish_held_job(job)

    wait_until(
        lambda: stage.notice(notice.id).targets[0].state.terminal,
        timeout=60,
        what=f"the window to finish\n{stage.logs()}",
        interval=0.3,
    )
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED, stage.logs()
    assert target.actual_end is not None
    assert target.actual_end <= notice.end + timedelta(seconds=stage.values()["restore_grace"])
    assert stage.restored()
    assert stage.settled_leftovers(notice.id) == []

    # Proof of exclusivity, from the API audit: no request of one replica's steps ran while a
    # request of the other's was in flight, over the whole window.
    overlaps = _overlaps(_step_requests(audit, "a"), _step_requests(audit, "b"))
    assert not overlaps, "\n".join(overlaps[:10])
    survivor_requests = _step_requests(audit, survivor)
    assert any(e.method == "PATCH" for e in survivor_requests)  # it switched and restored
    # Every step of the window exactly once (the resumed build aside).
    once = [("prepare", "started"), ("build", "ok"), ("prepare", "ok"), ("switch", "ok")]
    once += [("restore", "ok"), ("complete", "ok")]
    for step, outcome in once:
        assert len(events(step, outcome)) == 1, (step, outcome, stage.events(notice.id))

    assert takeover <= CLAIM_TTL + POLL + 2, f"takeover took {takeover:.1f}s"
    with capsys.disabled():
        print(
            f"\ntwo replicas: no overlapping steps in {len(audit.all())} API requests; "
            f"replica {active} killed mid-build, replica {survivor} took over in "
            f"{takeover:.2f}s (first request after {first_request - killed_at:.2f}s; "
            f"claim TTL {CLAIM_TTL:.0f}s, poll {POLL:.0f}s)"
        )
