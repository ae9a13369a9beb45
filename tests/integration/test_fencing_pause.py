"""A paused replica is fenced: two real ``maint run`` processes, one database, one cluster.

The replica holding the target's claim is SIGSTOPped in the middle of its prepare step (the
fake kubelet keeps the Kaniko Job running, so the step is waiting for the build) and stays
stopped far longer than the claim TTL. The other replica takes the claim over, resumes the
build and runs the whole window to its end. Then the paused one is resumed (SIGCONT): its
step wakes up still believing it is building. Counted at its own API proxy and in the
database, it makes no mutating request and writes no transition or event for the target from
then on; its log says the step was stopped because the claim was gone.

Each replica reaches the API server through its own counting proxy (``ApiProxy``), so the
audit says which process sent which request. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from maint.notices import TargetState
from tests.support.faults import ApiProxy, Audit
from tests.support.processes import FAST_SETTINGS, make_stage, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

CLAIM_TTL = float(FAST_SETTINGS["claim_ttl"])
POLL = float(FAST_SETTINGS["poll_interval"])


@pytest.fixture
def replicas(control_plane, k8s, kubelet, oci_registry, postgres_url, tmp_path) -> Iterator[Any]:
    """Two replicas on PostgreSQL only. On SQLite a replica frozen inside a transaction keeps
    the file's single write lock until it resumes, so nobody can take over (seen in CI: the
    other replica and this test got "database is locked"): SQLite is the one-replica database
    of the kind and local overlays, never the store of two replicas."""
    database_url = postgres_url
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
        database_url=database_url,
        workdir=tmp_path,
        prepare_lead=14,
    )
    try:
        yield stage, proxies, audit
    finally:
        stage.close()
        for proxy in proxies.values():
            proxy.stop()


def _claim(url: str) -> tuple[str | None, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            owner, generation = conn.execute(
                text("SELECT claimed_by, claim_generation FROM targets")
            ).one()
    finally:
        engine.dispose()
    return owner, int(generation)


def test_a_replica_paused_past_its_claim_writes_nothing_after_it_resumes(replicas, kubelet, capsys):
    stage, proxies, audit = replicas
    notice = stage.add(start_in=15, length=5, hold_build=True)
    job = stage.page_name(notice.id)
    processes = {
        name: stage.run(name, kubeconfig=proxy.kubeconfig(stage.workdir / f"kubeconfig-{name}"))
        for name, proxy in proxies.items()
    }

    def events(step: str, outcome: str) -> list[Any]:
        return [e for e in stage.events(notice.id) if (e.step, e.outcome) == (step, outcome)]

    wait_until(lambda: events("build", "started"), timeout=60, what="the build to start")
    time.sleep(CLAIM_TTL)  # the holder renews meanwhile: it is really mid-step
    owner, generation = _claim(stage.database_url)
    assert owner is not None, "a replica builds without holding the claim"
    paused_name = next(n for n, p in processes.items() if f"/{p.pid}/" in owner)
    other = next(n for n in processes if n != paused_name)
    paused = processes[paused_name]
    paused.freeze()
    frozen_at = time.time()

    resumed = wait_until(
        lambda: events("build", "resumed"),
        timeout=CLAIM_TTL + 10 * POLL + 20,
        what=f"the other replica to take over\n{stage.logs()}",
    )[0]
    takeover = resumed.at.timestamp() - frozen_at
    new_owner, new_generation = _claim(stage.database_url)
    assert new_owner is not None and f"/{processes[other].pid}/" in new_owner
    assert new_generation > generation
    kubelet.finish_held_job(job)
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state.terminal,
        timeout=90,
        what=f"the window to finish\n{stage.logs()}",
        interval=0.3,
    )
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED, stage.logs()
    assert stage.restored()
    events_before = stage.events(notice.id)
    generation_before = _claim(stage.database_url)[1]

    thawed_at = time.time()
    pause = thawed_at - frozen_at
    assert pause > 3 * CLAIM_TTL
    paused.thaw()

    def misbehaved() -> bool:
        return stage.events(notice.id) != events_before or any(
            e.mutating for e in audit.all() if e.label == paused_name and e.started >= thawed_at
        )

    # Its step wakes up in the middle of the build wait and reaches its next checkpoint.
    deadline = time.monotonic() + stage.values()["build_timeout"] + 30
    while "stopped:" not in paused.output() and not misbehaved():
        assert time.monotonic() < deadline, f"the resumed step never ended\n{paused.tail(80)}"
        time.sleep(0.3)
    time.sleep(3 * CLAIM_TTL + 2 * POLL)  # passes, retries, the sweep: time to misbehave

    after = [e for e in audit.all() if e.label == paused_name and e.started >= thawed_at]
    mutating = [str(e) for e in after if e.mutating]
    written = [e for e in stage.events(notice.id) if e not in events_before]
    assert mutating == [], "\n".join(mutating)
    assert written == [], f"written after the resume: {written}"
    final = stage.notice(notice.id).targets[0]
    assert final.state is TargetState.COMPLETED
    assert _claim(stage.database_url)[1] == generation_before  # it did not even claim again
    log = paused.output()
    assert "claim on target" in log, paused.tail(80)
    assert stage.settled_leftovers(notice.id) == []

    with capsys.disabled():
        print(
            f"\npause: replica {paused_name} stopped {pause:.1f}s mid-build (claim TTL "
            f"{CLAIM_TTL:.0f}s); replica {other} took over after {takeover:.2f}s and completed "
            f"the window; after SIGCONT the paused replica sent {len(after)} requests, "
            f"{len(mutating)} mutating, and wrote 0 events"
        )
