"""``maint run``: when to call a reconcile pass. The only user of APScheduler.

An interval job runs a pass every ``poll_interval`` (the safety net), and one date job is kept
armed at the earliest future due time, or ``Runner.arm_ahead`` before it: that pass arms the
switch (restore) due then, whose thread sends the PATCH at ``start`` (``end``) itself
(``instant``), rather than up to a poll late. Both use ``misfire_grace_time=None``: a late
wake-up still runs (an end is never skipped).
The forced-restore sweep (from Service annotations, no database) is a job of its own on its own
thread: a database that hangs holds up the passes, never the restore at ``end + grace``.
The job store stays in memory; the notices tables are the source of truth (FACTS.md).

The scheduler builds its ``Runner`` (a factory taking the runner's hooks as keyword arguments:
``on_step_done``, ``wake_at``, ``sweep_in_pass``), so nothing is patched onto it afterwards.
Two things besides the clock ask for a pass at once: an intent in the database (the change
marker, polled twice a second) and a page Pod deleted or evicted (``PageWatch``, a watch).
``/healthz`` fails when passes stop completing or a step runs past its deadline; ``/metrics``
on the same port serves the runner's Prometheus metrics (``maint_targets`` is counted by a job
of its own every poll interval, so neither a scrape nor a pass waits on that count).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from maint.errors import DatabaseUnavailable
from maint.runner.health import Heartbeat, serve_health
from maint.runner.pages import PageWatch
from maint.runner.reconcile import Runner

log = logging.getLogger(__name__)
INTENT_POLL = 0.5  # seconds between looks at the change marker: intent acted on within 1 s
RunnerFactory = Callable[..., Runner]  # called with on_step_done=, wake_at=, sweep_in_pass=


class Scheduler:
    def __init__(
        self, runner: RunnerFactory, *, poll_interval: float, health_port: int = 0
    ) -> None:
        """``runner`` is a factory (``App.runner``) called with the scheduler's hooks."""
        hooks: dict[str, Any] = {
            "on_step_done": self.arm,
            "wake_at": self.wake_at,
            "sweep_in_pass": False,  # its own job below, which a hung database cannot hold up
        }
        self.runner = runner(**hooks)
        self.poll_interval = poll_interval
        self.health_port = health_port
        self.heartbeat = Heartbeat(
            stale_after=max(60.0, 4 * poll_interval), wedged=self.runner.claims.wedged
        )
        self.pages = PageWatch(
            self.runner.api,
            namespaces=self.runner.settings.allowed_target_namespaces(),
            gone=self._page_gone,
        )
        self.stopped = threading.Event()
        self.wanted = threading.Event()
        self.passing = threading.Lock()
        self.marker: datetime | None = None
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(4),
                "sweep": ThreadPoolExecutor(1),
                "intents": ThreadPoolExecutor(1),
                "metrics": ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 4, "misfire_grace_time": None},
        )

    def run(self) -> None:
        """Run until SIGTERM/SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.scheduler.add_job(
            self._pass,
            "interval",
            seconds=self.poll_interval,
            id="reconcile",
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self._sweep,
            "interval",
            seconds=self.poll_interval,
            id="sweep",
            executor="sweep",
            next_run_time=datetime.now(UTC),
        )
        # Intent (cancel, end, extend) is only data: look for it twice a second, not every poll.
        self.scheduler.add_job(
            self._watch_intents,
            "interval",
            seconds=INTENT_POLL,
            id="intents",
            executor="intents",
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self.runner.count_targets,
            "interval",
            seconds=self.poll_interval,
            id="metrics",
            executor="metrics",
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        self.pages.start()
        health = None
        if self.health_port:
            health = serve_health(
                self.heartbeat, port=self.health_port, metrics=self.runner.metrics.exposition
            )
        log.info("maint run: reconcile every %.1fs", self.poll_interval)
        self.stopped.wait()
        self.pages.stop()
        if health is not None:
            health.shutdown()
        self.scheduler.shutdown(wait=False)
        self.runner.shutdown()

    def _pass(self) -> None:
        """Run a pass; a wake-up that fires during one makes it go round once more.

        APScheduler would drop a job still running (``max_instances``): a switch due while a
        pass runs would then wait a whole poll interval.
        """
        self.wanted.set()
        while self.wanted.is_set():
            if not self.passing.acquire(blocking=False):
                return  # the running pass sees `wanted` and goes round again
            try:
                self.wanted.clear()
                result = self.runner.pass_once()
                self.heartbeat.beat()
                for label in result.started:
                    log.info("started %s", label)
            finally:
                self.passing.release()
        self.arm()

    def _watch_intents(self) -> None:
        """A pass at once when a notice was added or an operator recorded an intent."""
        try:
            marker = self.runner.store.change_marker()
        except DatabaseUnavailable:
            return
        if marker != self.marker:
            first, self.marker = self.marker is None, marker
            if not first:
                log.info("notices changed; reconciling now")
                self._pass_now(job="intent")

    def _page_gone(self, pod: str) -> None:
        """A page Pod was deleted or evicted: a pass now observes its target."""
        log.info("page Pod %s is gone; reconciling now", pod)
        self.runner.page_gone(pod)
        self._pass_now(job="pages")

    def _pass_now(self, *, job: str) -> None:
        """A pass at once, as a date job of its own id: a retry armed for later stays."""
        if self.scheduler.running:
            self.scheduler.add_job(
                self._pass, "date", run_date=datetime.now(UTC), id=job, replace_existing=True
            )

    def _sweep(self) -> None:
        self.runner.sweep(now=self.runner.clock())

    def arm(self) -> None:
        """(Re)arm the one date job at the earliest future due time, or earlier: ``arm_ahead``
        before a due time, so that the pass then arms the switch or restore due at it."""
        now = datetime.now(UTC)
        ahead = self.runner.arm_ahead
        try:
            due = self.runner.store.next_due(after=now)
            later = self.runner.store.next_due(after=now + ahead) if due is not None else None
        except DatabaseUnavailable:
            return
        if due is None or not self.scheduler.running:
            return
        wake = due if later is None else min(due, later - ahead)
        self.scheduler.add_job(
            self._pass, "date", run_date=wake, id="wakeup", replace_existing=True
        )

    def wake_at(self, moment: datetime) -> None:
        """One extra pass at ``moment`` (retries); coalesced with any retry already armed."""
        if self.scheduler.running:
            self.scheduler.add_job(
                self._pass, "date", run_date=moment, id="retry", replace_existing=True
            )

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("maint run: signal %d, stopping", signum)
        self.stopped.set()
