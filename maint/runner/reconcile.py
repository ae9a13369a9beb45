"""One reconcile pass: look at every due target, decide, and hand the step to a worker.

Level-triggered: the pass recomputes what to do from the database and the clock each time, so a
missed wake-up, a crash or another replica's half-done work is picked up by the next pass.
A target is worked on by at most one thread here and one replica overall (a claim with expiry
in the database, by the database's clock); a step whose claim is gone stops before its next
write (``claims``). The DB-less forced restore runs on every pass as well.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from maint import cluster
from maint.cluster import Cluster
from maint.errors import ClaimLost, DatabaseUnavailable, MaintError
from maint.notices import NoticeStore, TargetState, WorkItem
from maint.runner.claims import Claims
from maint.runner.metrics import Metrics
from maint.runner.overdue import restore_overdue
from maint.runner.steps import Steps, Superseded, describe
from maint.runner.transitions import Step, decide, utcnow
from maint.settings import Settings

log = logging.getLogger(__name__)
ARM_AHEAD = 10.0  # seconds before a start (end) at which its switch (restore) is armed:
# enough to claim and read 500 targets sharing one instant on two busy cores
ARMED_WORKERS = 512  # armed steps waiting for their instant at once (threads, mostly asleep)


@dataclass
class PassResult:
    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    database_ok: bool = True


def replica_id() -> str:
    """Who claims: host, pid and a random suffix (a pid may be reused after a restart)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


def make_claims(store: NoticeStore, settings: Settings) -> Claims:
    return Claims(
        store=store, owner=replica_id(), ttl=settings.claim_ttl, deadline=settings.step_deadline
    )


class Runner:
    """Owns the worker pool and the claims; ``Steps`` does the work.

    ``claims`` must be the object whose ``renew`` the ``steps`` were built with
    (``Steps(renew=claims.renew)``, see ``App.runner``). ``on_step_done`` is called after every
    step, ``wake_at`` asks for an extra pass at a moment (a failed step's retry);
    ``sweep_in_pass`` runs the forced-restore sweep at the end of every pass (``maint run``
    sweeps on a thread of its own instead).
    ``clock`` is this replica's view of the time for deciding what is due; claims never use it.
    ``metrics`` (default: a registry of its own) times the steps and counts the claims and API
    errors; its ``observe`` belongs among the steps' observers (``App.runner`` puts it there).

    A READY target whose start is at most ``ARM_AHEAD`` seconds away gets its switch armed
    (``Serving.switch`` with ``at``): claimed, read and computed now, its PATCH sent at the
    start by the thread that waits for it. The same for an ACTIVE target's restore at its end.
    Armed steps run on a pool of their own, so a shared start never waits for a free worker.
    """

    def __init__(
        self,
        *,
        api: Cluster,
        store: NoticeStore,
        steps: Steps,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        workers: int = 64,
        claims: Claims,
        on_step_done: Callable[[], None] = lambda: None,
        wake_at: Callable[[datetime], None] = lambda _moment: None,
        sweep_in_pass: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.steps = steps
        self.settings = settings
        self.clock = clock
        self.claims = claims
        self.owner = claims.owner
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step")
        self.armed_pool = ThreadPoolExecutor(max_workers=ARMED_WORKERS, thread_name_prefix="armed")
        self.arm_ahead = timedelta(seconds=ARM_AHEAD)
        self.running: dict[int, Future[None]] = {}
        self.lock = threading.Lock()
        self.pass_lock = threading.Lock()
        self.reported: set[tuple[int, str]] = set()
        self.rerun = False
        self.observed: dict[int, datetime] = {}
        self.gone_pages: set[str] = set()  # page Pods deleted or evicted, not yet observed
        self.sweep_in_pass = sweep_in_pass
        self.on_step_done = on_step_done
        self.wake_at = wake_at
        self.metrics = metrics or Metrics()
        self._watch()
        self._stopping = threading.Event()
        threading.Thread(target=self._keep_claims, name="claims", daemon=True).start()

    def _watch(self) -> None:
        """Hook the metrics in: the claims held and the API errors."""
        self.metrics.claims_held.set_function(self.claims.count)
        self._unlisten = cluster.on_api_error(self.metrics.api_error)

    def count_targets(self) -> bool:
        """Count the targets by state for ``maint_targets``; False while the database cannot
        answer (the last count stays, with its time)."""
        try:
            self.metrics.count_targets(self.store.count_by_state())
        except MaintError as e:
            log.warning("metrics: targets not counted: %s", e)
            return False
        return True

    def pass_once(self) -> PassResult:
        with self.pass_lock:
            return self._pass()

    def _pass(self) -> PassResult:
        result = PassResult()
        now = self.clock()
        try:
            items = self.store.due(now=now, horizon=timedelta(0))
        except DatabaseUnavailable as e:
            log.error("reconcile: %s", e)
            items, result.database_ok = [], False
        for item in items:
            decision = decide(item.target.state, now=now, window=self.steps.window(item))
            if decision.step is Step.WAIT:
                continue
            urgent = self._page_is_gone(item)
            self._interrupt_if_moved(item, decision.step, now, urgent=urgent)
            at = self._instant(item, decision.step, now, within=2 * self.arm_ahead)
            if at is not None and at - now > self.arm_ahead:
                if item.target.state is TargetState.READY and not urgent:
                    continue  # switched soon, and the armed switch reads the Pod and Service
                # An ACTIVE target is observed up to its arming: a page Pod deleted or a
                # foreign selector in its last seconds is recreated or reported all the same.
            elif at is not None:
                step = Step.SWITCH if item.target.state is TargetState.READY else Step.RESTORE
                label = f"{item.notice.id}/{item.target.ref}:{step.value} at {at.isoformat()}"
                if self._start(item, step, at=at):
                    result.started.append(label)
                else:
                    result.skipped.append(label)
                continue
            if decision.step is Step.OBSERVE and not (
                self._observe_due(item.target.id, now) or urgent
            ):
                continue
            label = f"{item.notice.id}/{item.target.ref}:{decision.step.value}"
            if self._start(item, decision.step, urgent=urgent):
                result.started.append(label)
            else:
                result.skipped.append(label)
        self._forget_gone_pages(keep={item.target.pod for item in items})
        if self.sweep_in_pass:
            result.overdue = self.sweep(now=now)
        return result

    def sweep(self, *, now: datetime) -> list[str]:
        """The DB-less forced restore of every overdue Service (``maint restore --overdue``)."""
        restored = []
        try:
            for done in restore_overdue(self.api, now=now):
                restored.append(f"{done.service}: {done.outcome}")
                log.warning(
                    "forced restore of %s: %s (%s)", done.service, done.outcome, done.detail
                )
        except MaintError as e:
            log.error("forced-restore sweep failed: %s", e)
        else:
            self.metrics.sweep_completed()
        return restored

    def page_gone(self, pod: str) -> None:
        """A page Pod was deleted or evicted (``PageWatch``): the next pass observes its
        target, so it is recreated now rather than at the next poll."""
        with self.lock:
            self.gone_pages.add(pod)

    def _page_is_gone(self, item: WorkItem) -> bool:
        with self.lock:
            return item.target.pod in self.gone_pages

    def _forget_gone_pages(self, *, keep: set[str | None]) -> None:
        """Drop what no live target serves with (our own cleanup deletes page Pods too)."""
        with self.lock:
            self.gone_pages &= keep

    def _instant(
        self, item: WorkItem, step: Step, now: datetime, *, within: timedelta
    ) -> datetime | None:
        """The start (READY) or end (ACTIVE) ahead, when it is at most ``within`` away and
        nothing else is due first."""
        if step is not Step.OBSERVE:
            return None
        state = item.target.state
        if state is TargetState.READY:
            at = item.notice.start
        elif state is TargetState.ACTIVE:
            at = item.notice.end
        else:
            return None
        return at if now < at <= now + within else None

    def _interrupt_if_moved(
        self, item: WorkItem, step: Step, now: datetime, *, urgent: bool
    ) -> None:
        """A step armed for an instant while something else is due now (an operator cancelled
        or ended the window) or its page Pod is gone (``urgent``): wake it, it decides again
        at once."""
        if step is not Step.OBSERVE or urgent:
            self.steps.interrupt(item.target.id, now=now)

    def _observe_due(self, target_id: int, now: datetime) -> bool:
        """Observe (drift, refresh) once per poll interval, not on every wake-up pass:
        otherwise each wake-up for one target re-reads every live target."""
        last = self.observed.get(target_id)
        if last is not None and (now - last).total_seconds() < self.settings.poll_interval:
            return False
        self.observed[target_id] = now
        return True

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every started step has finished (``maint run --once``, tests)."""
        while True:
            with self.lock:
                pending = list(self.running.values())
            if not pending:
                return
            wait(pending, timeout=timeout)

    def shutdown(self) -> None:
        self._stopping.set()
        self._unlisten()
        self.steps.stop_armed()  # before their instant, with claims no longer renewed
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.armed_pool.shutdown(wait=False, cancel_futures=True)

    def _keep_claims(self) -> None:
        """Renew the claims of the steps in progress every third of the TTL.

        A step may wait far longer than the TTL without an event (a Kaniko build): without
        this another replica would take the target over and run the same step at once.
        A replica that dies stops renewing, so its claims lapse one TTL later; one that is
        paused finds them gone when it resumes, and its steps stop before their next write.
        """
        while not self._stopping.wait(self.settings.claim_ttl / 3):
            self.claims.renew_all()

    def _start(
        self, item: WorkItem, step: Step, *, urgent: bool = False, at: datetime | None = None
    ) -> bool:
        """Hand the step to a worker; False while the target is busy. ``urgent``: its page
        Pod is gone, so even an observe must not wait for the next poll. ``at``: armed for
        that instant."""
        target_id = item.target.id
        with self.lock:
            if target_id in self.running:
                # Busy (e.g. an observe right before start): look again when it finishes, not
                # a whole poll interval later. An observe can wait for the next poll.
                self.rerun = self.rerun or step is not Step.OBSERVE or urgent
                return False
            self.gone_pages.discard(item.target.pod or "")
            # The claim is taken in the worker: 50 targets due at once are claimed in
            # parallel, not one database round trip after another in the pass.
            if at is None:
                self.running[target_id] = self.pool.submit(self._claim_and_work, item, step)
            else:
                self.running[target_id] = self.armed_pool.submit(
                    self._claim_and_work, item, step, at
                )
            return True

    def _claim_and_work(self, item: WorkItem, step: Step, at: datetime | None = None) -> None:
        """Claim, work, release: whatever any of it raises, the target is freed here.

        A target left in ``running`` would never be looked at again by this replica.
        """
        target_id = item.target.id
        held = None
        began, outcome = time.monotonic(), "error"
        try:
            held = self.claims.take(target_id)
            if held is not None:  # else another replica works on it
                with self.claims.fence(held):
                    outcome = self._work(item, step, at)
        except ClaimLost as e:
            outcome = "claim_lost"
            log.warning("%s of %s stopped: %s", step.value, item.target.ref, e)
            self._retry_later()
        except DatabaseUnavailable as e:
            outcome = "database_unavailable"
            log.warning("%s of %s: %s", step.value, item.target.ref, e)
            self._retry_later()
        except Exception:
            log.exception("unexpected error in %s of %s", step.value, item.target.ref)
            self._retry_later()
        finally:
            if at is not None and step is Step.SWITCH and outcome == "ok":
                self.observed[target_id] = self.clock()  # it just checked Pod and Service
            if held is not None:
                self.metrics.step_done(step.value, outcome, time.monotonic() - began)
            if held is not None:
                try:
                    self.claims.release(held)
                except Exception as e:  # the claim then lapses on its own after one TTL
                    log.warning("cannot release the claim on %s: %s", item.target.ref, e)
            with self.lock:
                self.running.pop(target_id, None)
                rerun, self.rerun = self.rerun, False
            if rerun:
                self.wake_at(self.clock())
            self.on_step_done()

    def _retry_later(self) -> None:
        self.wake_at(self.clock() + timedelta(seconds=self.settings.step_retry_delay))

    def _work(self, item: WorkItem, step: Step, at: datetime | None = None) -> str:
        """Run the step; its outcome for ``maint_step_duration_seconds``."""
        try:
            self._run(item, step, at)
        except Superseded as e:
            log.info("%s of %s: %s; deciding again", step.value, item.target.ref, e)
            self.wake_at(self.clock())
            return "superseded"
        except ClaimLost:
            raise  # nothing may be written for this target any more, not even an event
        except MaintError as e:
            log.warning("%s %s of notice %s: %s", step.value, item.target.ref, item.notice.id, e)
            # If the database is down too, the log line above is all we can leave; if the claim
            # was lost meanwhile (this replica was paused), the step stops here, as told.
            try:
                self.steps.event(item, step.value, "retry", describe(e))
            except ClaimLost:
                raise
            except MaintError:
                pass
            self._retry_later()
            return "retry"
        return "ok"

    def _run(self, item: WorkItem, step: Step, at: datetime | None = None) -> None:
        # Re-read under the claim: another replica or an operator may have moved it meanwhile.
        # Armed: the change marker first, then the target (an intent committed after the marker
        # was read moves it), the one read of both before the instant (StepContext.confirm).
        marker = self.store.change_marker() if at is not None else None
        item = self.store.target(item.target.id)
        if at is not None and marker is not None:  # armed: still the step wanted at its instant?
            armed = step
            step = decide(
                item.target.state, now=max(self.clock(), at), window=self.steps.window(item)
            ).step
            if step is armed is Step.SWITCH:
                self.steps.switch(item, at=at, since=marker)
                return
            if step is armed is Step.RESTORE and item.target.state is TargetState.ACTIVE:
                self.steps.restore(item, at=at, since=marker)
                return
        step = decide(item.target.state, now=self.clock(), window=self.steps.window(item)).step
        if step is Step.PREPARE:
            self.steps.prepare(item)
            # Preparation may have run late, and an intent may have come in while it built:
            # decide again from what the database says now, never from what was read before.
            item = self.store.target(item.target.id)
            step = decide(item.target.state, now=self.clock(), window=self.steps.window(item)).step
            if step is not Step.SWITCH:
                if step in (Step.CANCEL, Step.ROLLBACK):
                    self.wake_at(self.clock())
                return
        if step is Step.SWITCH:
            self.steps.switch(item)
        elif step is Step.OBSERVE:
            self.steps.observe(item, reported=self.reported)
        elif step is Step.RESTORE:
            self.steps.restore(item)
        elif step is Step.FORCE_RESTORE:
            self.steps.restore(item, forced=True)
        elif step is Step.ROLLBACK:
            self.steps.rollback(item, reason="the window ended before the page was switched in")
        elif step is Step.CANCEL:
            self.steps.rollback(item, reason="cancelled by an operator", to=TargetState.CANCELLED)
