"""Crash at every step boundary of a window: SIGKILL a real ``maint run``, start a new one, and
the window still ends with the selector restored by ``end + grace``, a complete event log and
nothing of maint's left in the cluster or the registry.

The boundaries are found, not guessed, and hit exactly:

* before and after every create, patch and delete: the API proxy holds the request (so
  everything maint wrote before it, state included, is committed and the change is not made)
  or sees it applied by the API server and kills the process before the answer reaches it
  (the change is made, maint never learns it);
* before every event (and so every state write, which commits together with its event): the
  test holds the ``events`` table locked, so the process blocks when it writes its next event,
  i.e. after everything it did since the previous one; the test counts it as a boundary, kills
  the process there or lets exactly that one write through.

A reference run without a crash enumerates the N boundaries of a normal window; then one run
per boundary kills the first process exactly there. Runs are independent (own namespaces,
database, proxy and image) and several run at once to keep the wall time down.

The processes come from the test launcher (``tests.support.processes``): maint imported once,
a fresh fork per process, so a replacement is up in a fraction of a second instead of after
2-20 s of Python start-up on a loaded machine, and the recovery path taken does not depend on
the machine's load. When the selector came back is read from the API audit (the PATCH that
put the app's selector back), not from the event log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from maint.notices import Event, TargetState
from tests.support.faults import ApiProxy, Audit, Exchange
from tests.support.processes import (
    MaintRun,
    Stage,
    conninfo,
    launcher,
    make_stage,
    new_database,
)
from tests.support.window import APP_LABELS

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

# Seconds. The window is registered and its build arranged before the first process starts;
# preparation begins at once. The window leaves room for a takeover (claim TTL) in every phase.
# START_IN is the lead for a preparation interrupted once (a crash, a TTL, a new process) while
# nine windows prepare at once, each event through the gate, on two cores shared with the other
# test workers: 10 s was seen too short there (the window rolled back unswitched, correctly).
# LENGTH leaves a crash at the switch itself room for the takeover (claim TTL, a new process,
# its first pass) before the end: with 6 s the new process was seen deciding only after the
# end under load, and rolling back (correctly) a window it could still have switched.
START_IN = 20.0
LENGTH = 10.0
GRACE = 15.0
PARALLEL = 8  # each run holds ~8 PostgreSQL connections (max_connections is 100)
SURE = 15  # boundaries every window has at least: their runs start with the reference run

# What a complete event log holds, in this order, however often the window was interrupted.
# Endpoint checks after the switch and per-object cleanup lines are observations; a crash
# right before one of them loses it, and the restarted process has no reason to repeat it.
MILESTONES: list[tuple[set[str], set[str]]] = [
    ({"register"}, {"ok"}),
    ({"prepare"}, {"started"}),
    ({"build"}, {"started", "resumed"}),
    ({"build"}, {"ok"}),
    ({"pod"}, {"created", "exists"}),
    ({"pod-ready"}, {"ok"}),
    ({"prepare"}, {"ok"}),
    ({"switch"}, {"ok", "already"}),
    ({"restore", "force-restore"}, {"ok", "already"}),
    ({"endpoints"}, {"ok"}),
    ({"complete"}, {"ok"}),
]


class EventGate:
    """Keeps ``events`` locked so that the process stops at its next event write.

    Two connections take turns holding the lock. To let one write through, the idle one asks
    for the lock first (PostgreSQL queues it behind the waiting write, and queues every later
    write behind it), then the holder lets go: exactly one write passes, however slow this
    thread is to react.
    """

    LOCK = "LOCK TABLE events IN EXCLUSIVE MODE"

    def __init__(self, url: str) -> None:
        self._holders = [psycopg.connect(conninfo(url)) for _ in range(2)]
        self._ours = [c.info.backend_pid for c in self._holders]
        self._holding: int | None = None

    @property
    def _peek(self) -> psycopg.Connection[Any]:
        """The holder's connection answers the gate's own questions (it is idle meanwhile)."""
        return self._holders[self._holding or 0]

    def shut(self) -> None:
        self._holders[0].execute(self.LOCK)
        self._holding = 0

    def open(self) -> None:
        if self._holding is not None:
            self._holders[self._holding].commit()
            self._holding = None

    def let_one_through(self) -> None:
        assert self._holding is not None
        holder, other = self._holding, 1 - self._holding
        queued = threading.Thread(target=self._holders[other].execute, args=(self.LOCK,))
        queued.start()
        deadline = time.monotonic() + 30
        while not self._waiting(pid=self._ours[other]):
            assert time.monotonic() < deadline, "the gate's own lock request never queued"
            time.sleep(0.002)
        self._holders[holder].commit()
        queued.join(30)
        assert not queued.is_alive(), "the write let through never finished"
        self._holding = other

    def blocked(self) -> bool:
        """Someone else (the maint process) waits to write an event."""
        return self._waiting(pid=None)

    def _waiting(self, *, pid: int | None) -> bool:
        row = self._peek.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.relation = 'events'::regclass "
            "AND NOT l.granted AND "
            + ("l.pid = %(pid)s" if pid is not None else "l.pid <> ALL(%(ours)s)"),
            {"pid": pid, "ours": self._ours},
        ).fetchone()
        return bool(row and row[0])

    def last(self) -> tuple[int, str]:
        row = self._peek.execute(
            "SELECT count(*), (SELECT step || ' ' || outcome FROM events ORDER BY id DESC "
            "LIMIT 1) FROM events"
        ).fetchone()
        assert row is not None
        return int(row[0]), str(row[1])

    def close(self) -> None:
        for conn in self._holders:
            conn.close()


@dataclass
class Outcome:
    crash_at: int | None
    boundaries: list[str] = field(default_factory=list)
    crashed: str | None = None  # the boundary the first process died at
    problems: list[str] = field(default_factory=list)
    restore_lag: float | None = None  # seconds after `end` the selector was back
    events: list[str] = field(default_factory=list)
    logs: str = ""


@dataclass
class CrashRun:
    """One window; ``crash_at`` = k kills the first process at boundary k (None: no crash)."""

    control_plane: Any
    k8s: Any
    kubelet: Any
    registry: Any
    admin_url: str
    workdir: Path
    crash_at: int | None

    def __call__(self) -> Outcome:
        outcome = Outcome(crash_at=self.crash_at)
        try:
            self._run(outcome)
        except Exception as e:  # one broken run must not hide the others' results
            outcome.problems.append(f"the run itself failed: {e!r}")
        return outcome

    def _run(self, outcome: Outcome) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with new_database(self.admin_url) as url, self._proxy() as proxy:
            stage = make_stage(
                control_plane=self.control_plane,
                k8s=self.k8s,
                kubelet=self.kubelet,
                registry=self.registry,
                database_url=url,
                workdir=self.workdir,
                kubeconfig=proxy.kubeconfig(self.workdir / "kubeconfig"),
                restore_grace=GRACE,
            )
            gate = EventGate(url)
            try:
                self._play(stage, proxy, gate, outcome)
            finally:
                gate.close()
                outcome.logs = stage.logs()
                stage.close()

    def _proxy(self) -> ApiProxy:
        return ApiProxy(
            upstream=self.control_plane.server,
            ca_file=self.control_plane.ca_file,
            token=self.control_plane.token,
            label=f"run{self.crash_at}",
        )

    def _play(self, stage: Stage, proxy: ApiProxy, gate: EventGate, outcome: Outcome) -> None:
        notice = stage.add(start_in=START_IN, length=LENGTH)
        gate.shut()
        deadline = notice.end + timedelta(seconds=GRACE)
        lock = threading.Lock()
        crashed = threading.Event()
        first: MaintRun

        def boundary(label: str, process: MaintRun) -> bool:
            """Count a boundary; True if the process was killed at it."""
            with lock:
                if crashed.is_set():
                    return False
                outcome.boundaries.append(label)
                if len(outcome.boundaries) != self.crash_at:
                    return False
                process.kill()
                outcome.crashed = label
                crashed.set()
                return True

        def sent(exchange: Exchange) -> bool:
            # Not forwarded to a killed process's request: the change never happens.
            return not boundary(f"{exchange.method} {exchange.resource} sent", first)

        def applied(exchange: Exchange) -> bool:
            # Answer withheld from a killed process: it never learns the change happened.
            return not boundary(f"{exchange.method} {exchange.resource} applied", first)

        proxy.before_forward = sent
        proxy.before_answer = applied
        first = stage.run("first")
        checked = 0.0
        while not crashed.is_set():
            if gate.blocked():
                count, last = gate.last()
                if boundary(f"event {count + 1} pending (after '{last}')", first):
                    break
                gate.let_one_through()
                continue
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if stage.notice(notice.id).targets[0].state.terminal:
                    break
                if time.time() > deadline.timestamp() + 30:
                    outcome.problems.append("the first process never finished")
                    break
            time.sleep(0.02)
        gate.open()
        proxy.before_forward = proxy.before_answer = None
        if crashed.is_set():
            stage.run("second")
        self._finish(stage, notice.id, outcome, proxy.audit)

    def _finish(self, stage: Stage, notice_id: int, outcome: Outcome, audit: Audit) -> None:
        notice = stage.notice(notice_id)
        limit = notice.end + timedelta(seconds=GRACE + 30)
        while not stage.notice(notice_id).targets[0].state.terminal:
            if time.time() > limit.timestamp():
                break
            time.sleep(0.3)
        target = stage.notice(notice_id).targets[0]
        events = stage.events(notice_id)
        outcome.events = [f"{e.step} {e.outcome}" for e in events]
        if target.state is not TargetState.COMPLETED:
            outcome.problems.append(f"ended {target.state.value}, not COMPLETED")
        if not stage.restored():
            outcome.problems.append(f"selector not restored: {stage.selector()}")
        restored_at = _selector_restored_at(audit)
        if restored_at is None:
            outcome.problems.append("no PATCH put the app's selector back")
        else:
            lag = restored_at - notice.end.timestamp()
            outcome.restore_lag = lag
            if lag > GRACE:
                outcome.problems.append(f"restored {lag:.1f}s after end, grace is {GRACE:.0f}s")
        missing = _missing_milestones(events)
        if missing:
            outcome.problems.append(f"event log lacks {missing}")
        bad = [f"{e.step} {e.outcome}" for e in events if e.outcome in ("failed", "conflict")]
        if bad:
            outcome.problems.append(f"event log reports {bad}")
        leftovers = stage.settled_leftovers(notice_id)
        if leftovers:
            outcome.problems.append(f"left behind: {leftovers}")
        if not stage.image_deleted(notice_id):
            outcome.problems.append("image left in the registry")


def _selector_restored_at(audit: Audit) -> float | None:
    """When the API server applied the first patch that put the app's selector back."""
    for exchange in audit.all():
        if exchange.method != "PATCH" or exchange.resource != "services":
            continue
        if not exchange.applied or exchange.status not in (None, 200):
            continue
        ops = exchange.json_body() or []
        if any(
            op.get("op") == "replace"
            and op.get("path") == "/spec/selector"
            and op.get("value") == APP_LABELS
            for op in ops
        ):
            return exchange.finished or exchange.started
    return None


def _missing_milestones(events: list[Event]) -> list[str]:
    """Milestones not found in order (each after the one before it)."""
    missing = []
    position = 0
    for steps, outcomes in MILESTONES:
        for i in range(position, len(events)):
            if events[i].step in steps and events[i].outcome in outcomes:
                position = i + 1
                break
        else:
            missing.append(f"{'/'.join(sorted(steps))} {'/'.join(sorted(outcomes))}")
    return missing


def _describe(boundary: str, reference: Outcome) -> str:
    """``event 5 pending (after 'x')`` -> ``before event 'y' (after 'x')``, names from the
    reference run, whose log up to a crash point is the crashed run's log."""
    if boundary.endswith(" sent"):
        return f"before {boundary.removesuffix(' sent')}"
    if not boundary.startswith("event "):
        return f"after {boundary.removesuffix(' applied')}"
    number = int(boundary.split()[1])
    after = boundary.partition("(")[2].rstrip(")")
    return f"before event '{reference.events[number - 1]}' ({after})"


@pytest.fixture
def runs(control_plane, k8s, kubelet, oci_registry, postgres_admin_url, tmp_path) -> Iterator[Any]:
    def make(crash_at: int | None) -> CrashRun:
        return CrashRun(
            control_plane=control_plane,
            k8s=k8s,
            kubelet=kubelet,
            registry=oci_registry,
            admin_url=postgres_admin_url,
            workdir=tmp_path / f"run-{crash_at}",
            crash_at=crash_at,
        )

    yield make


def test_every_crash_point_of_a_window_recovers(runs, capsys):
    started = time.monotonic()
    launcher()  # from the main thread, so that it dies with this process
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        first = [pool.submit(runs(k)) for k in range(1, SURE + 1)]
        reference = runs(None)()  # alongside them, on this thread
        boundaries = reference.boundaries
        n = len(boundaries)
        rest = [pool.submit(runs(k)) for k in range(SURE + 1, n + 1)]
        outcomes = [future.result() for future in first + rest]
    assert not reference.problems, f"{reference.problems}\n{reference.events}\n{reference.logs}"
    assert n >= SURE, boundaries

    lines = []
    for k, outcome in zip(range(1, n + 1), outcomes, strict=True):
        status = "recovered" if outcome.crashed and not outcome.problems else "FAILED"
        lag = "" if outcome.restore_lag is None else f"restored at end{outcome.restore_lag:+.1f}s"
        where = _describe(outcome.crashed or f"no crash, expected {boundaries[k - 1]}", reference)
        if outcome.crashed and outcome.crashed != boundaries[k - 1]:
            where += f" [reference: {_describe(boundaries[k - 1], reference)}]"
        lines.append(f"{k:>2}/{n} {where}: {status} {lag} {'; '.join(outcome.problems)}")
    recovered = sum(1 for o in outcomes if o.crashed and not o.problems)
    summary = f"{recovered}/{n} crash points recovered ({time.monotonic() - started:.0f}s)"
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + summary)
    failed = [o for o in outcomes if not o.crashed or o.problems]
    assert not failed, "\n".join(
        f"--- crash at {o.crash_at} ({o.crashed}): {o.problems}\n{o.events}\n"
        f"{o.boundaries}\n{o.logs}"
        for o in failed
    )
