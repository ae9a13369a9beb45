"""Prometheus metrics of ``maint run``, served at ``/metrics`` on the health port.

Every metric lives in a registry of this object's own (never the library's global one), so two
Runners in one process, and tests, each count their own. Nothing here touches the database or
the cluster at scrape time: ``maint_targets`` is the count taken at the end of the last pass
that could read the database (``maint_targets_updated_timestamp_seconds`` says when), so a
scrape stays fast while the database hangs. Recording never raises into a step.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from maint.notices import Event, TargetState

log = logging.getLogger(__name__)

#: Lag after the planned start or end: a few ms when all is well, minutes when it is not.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))
#: A step: a switch takes ms, a Kaniko build minutes.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, float("inf"))
_LAG = re.compile(r"\(([+-]\d+(?:\.\d+)?)s from (start|end)\)")
#: Which stored events carry the lag of a switch or a restore, and into which histogram.
_LAGGED = {("switch", "ok"): "switch", ("restore", "ok"): "restore"}
#: The event told right before a target goes FAILED (``Ending.fail_foreign``).
_FAILED = ("restore", "conflict")
NOTIFY_OUTCOMES = ("sent", "failed", "gave_up")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Targets(Collector):
    """``maint_targets{state}`` from the last count (every state, zeros included)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.updated = 0.0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counts, updated = dict(self.counts), self.updated
        targets = GaugeMetricFamily(
            "maint_targets",
            "Targets of the recent notices by state, as of the last pass that read the database",
            labels=["state"],
        )
        for state in TargetState:
            targets.add_metric([state.value], counts.get(state.value, 0))
        yield targets
        yield GaugeMetricFamily(
            "maint_targets_updated_timestamp_seconds",
            "When maint_targets was last counted (Unix time; 0: not yet)",
            value=updated,
        )


class Metrics:
    """The metrics of one Runner; ``observe`` is an event observer (``StepContext.observe``).

    ``on_sweep`` hears each completed sweep (``SweepBeacon`` writes it to the database for
    ``maint status``, by the database's clock); it must not block: it runs on the sweep's thread.
    """

    def __init__(self, *, on_sweep: Callable[[], None] = lambda: None) -> None:
        self.on_sweep = on_sweep
        self.registry = CollectorRegistry(auto_describe=True)
        self._targets = _Targets()
        self.registry.register(self._targets)
        self.switch_lag = Histogram(
            "maint_switch_lag_seconds",
            "Seconds from a window's planned start to its Service's switch to the page",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.restore_lag = Histogram(
            "maint_restore_lag_seconds",
            "Seconds from a window's planned end to its Service's restore",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "maint_step_duration_seconds",
            "Time a reconcile step took in its worker, by step and outcome",
            ["step", "outcome"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.api_errors = Counter(
            "maint_api_errors_total",
            "Kubernetes API call attempts that failed, by verb and HTTP code (0: no answer)",
            ["verb", "code"],
            registry=self.registry,
        )
        self.sweep_success = Gauge(
            "maint_sweep_last_success_timestamp_seconds",
            "When the forced-restore sweep last completed (Unix time; 0: not yet)",
            registry=self.registry,
        )
        # A counter, not a gauge of FAILED targets: a FAILED target stays FAILED in the database
        # for ever, so `maint_targets{state="FAILED"} > 0` would never resolve. Created at 0
        # (no labels), so `increase()` sees the first failure of a process too.
        self.target_failures = Counter(
            "maint_target_failures_total",
            "Targets this replica moved to FAILED (someone else's selector at the restore)",
            registry=self.registry,
        )
        self.notifications = Counter(
            "maint_notifications_total",
            "Webhook notification attempts by outcome (sent, failed: retried, gave_up)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in NOTIFY_OUTCOMES:
            self.notifications.labels(outcome=outcome)
        self.claims_held = Gauge(
            "maint_claims_held",
            "Claims on targets this replica holds (one per step in progress)",
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        """An observer of stored events: a switch's or a restore's lag into its histogram, a
        target that fails into ``maint_target_failures_total``."""
        if (event.step, event.outcome) == _FAILED:
            self.target_failures.inc()
            return
        kind = _LAGGED.get((event.step, event.outcome))
        if kind is None:
            return
        lag = event_lag(event)
        if lag is None:
            log.debug("no lag in the %s event of notice %s", kind, event.notice_id)
            return
        (self.switch_lag if kind == "switch" else self.restore_lag).observe(lag)

    def api_error(self, verb: str, code: int) -> None:
        """The listener ``maint.cluster.on_api_error`` calls for each failed attempt."""
        self.api_errors.labels(verb=verb, code=str(code)).inc()

    def step_done(self, step: str, outcome: str, seconds: float) -> None:
        self.step_duration.labels(step=step, outcome=outcome).observe(seconds)

    def sweep_completed(self, at: float | None = None) -> None:
        self.sweep_success.set(time.time() if at is None else at)
        try:
            self.on_sweep()
        except Exception:  # recording never raises into the sweep
            log.exception("a listener of the sweep failed")

    def notified(self, outcome: str) -> None:
        """A webhook notification's attempt: sent, failed (retried) or gave_up."""
        self.notifications.labels(outcome=outcome).inc()

    def count_targets(self, counts: Mapping[str, int], at: float | None = None) -> None:
        """Targets per state (``NoticeStore.count_by_state``), as of ``at``."""
        with self._targets.lock:
            self._targets.counts = dict(counts)
            self._targets.updated = time.time() if at is None else at

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def event_lag(event: Event) -> float | None:
    """The ``(+0.123s from start)`` a switch or restore event carries, in seconds."""
    match = _LAG.search(event.detail)
    return float(match.group(1)) if match else None
