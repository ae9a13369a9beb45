"""Real windows in real time: notices registered, ``maint`` run as a subprocess, facts collected.

Three ways of running the same kind of window:

- ``scheduled``: ``maint run`` as shipped (prepare lead, poll interval, exact wake-ups at due
  times), talking to the API server through the counting proxy.
- ``seed_style``: what the seed system did — a plain 30 s poll and the build at start time.
  ``maint run`` always arms its exact wake-ups, and maint/ is not ours to change, so the poll is
  driven from here: ``maint run --once`` every 30 s with ``MAINT_PREPARE_LEAD=0``.
- ``shared_start``: 50 (and 500) Services, one notice each, one start time; peak RSS of
  ``maint run``.

Lags come from the benchmark's Service watch (``servicewatch``) and, as a cross-check, from the
event log (the ``switch``/``restore`` details carry maint's own lag).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client import BatchV1Api, CoreV1Api

from bench.lab import Lab, log
from bench.process import MaintRun, run_once
from bench.profiling import PySpy
from bench.servicewatch import ServiceWatch
from maint import naming
from maint.app import App
from maint.notices import Event, Notice, TargetState
from maint.settings import Settings

LOG_LAG = re.compile(r"\(([+-][0-9.]+)s from (start|end)\)")


@dataclass
class WindowFacts:
    notice_id: int
    service: str
    state: str
    switch_lag: float | None  # seconds after the planned start the watch saw the page selector
    restore_lag: float | None  # seconds after the planned end the watch saw the app selector
    switch_lag_log: float | None  # the same, as maint's event log tells it
    restore_lag_log: float | None
    prepare: float | None  # "prepare started" to "pod-ready ok", seconds
    ready_before_start: bool


@dataclass
class PhaseResult:
    name: str
    windows: list[WindowFacts]
    seconds: float
    load: tuple[float, float]  # 1-min load average before, after
    api_requests: dict[str, dict[str, int]] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    leftovers: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self, attribute: str) -> list[float]:
        return [v for w in self.windows if (v := getattr(w, attribute)) is not None]

    def missing(self, attribute: str) -> int:
        return sum(1 for w in self.windows if getattr(w, attribute) is None)


def _settings(lab: Lab, *, lead: float) -> Settings:
    return Settings(
        kubeconfig=str(lab.plane.kubeconfig),
        database_url=lab.database_url,
        build_namespace=lab.build_namespace,
        image_repository=lab.image_repository,
        registry_insecure=True,
        prepare_lead=lead,
    )


def _register(
    app: App, namespace: str, services: list[str], starts: list[datetime], length: float
) -> list[Notice]:
    return [
        app.add_notice(
            title="Planned maintenance",
            reason="benchmark window",
            start=start.isoformat(),
            end=(start + timedelta(seconds=length)).isoformat(),
            targets=[f"{namespace}/{service}"],
            lang="en",
            maintenance=True,
        )
        for service, start in zip(services, starts, strict=True)
    ]


def _next_second(plus: float = 0) -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=0) + timedelta(seconds=1 + math.ceil(plus))


def _all_done(app: App, notices: list[Notice]) -> bool:
    return all(t.state.terminal for n in notices for t in app.store.get(n.id).targets)


def _count_ready(app: App, notices: list[Notice]) -> int:
    ready = (TargetState.READY, TargetState.ACTIVE)
    return sum(1 for n in notices for t in app.store.get(n.id).targets if t.state in ready)


def _at(events: list[Event], step: str, outcome: str) -> datetime | None:
    return next((e.at for e in events if e.step == step and e.outcome == outcome), None)


def _facts(app: App, watch: ServiceWatch, notice: Notice) -> WindowFacts:
    notice = app.store.get(notice.id)
    target = notice.targets[0]
    events = app.store.events(notice.id)
    seen = watch.of(target.ref.namespace, target.ref.name)
    switch_lag = seen.switched[0] - notice.start.timestamp() if seen.switched else None
    restore_lag = seen.restored[0] - notice.end.timestamp() if seen.restored else None
    logged: dict[str, float] = {}
    for e in events:
        m = LOG_LAG.search(e.detail)
        if m and e.step in ("switch", "restore", "force-restore") and e.outcome == "ok":
            logged.setdefault(m.group(2), float(m.group(1)))
    started, ready = _at(events, "prepare", "started"), _at(events, "pod-ready", "ok")
    prepared = _at(events, "prepare", "ok")
    return WindowFacts(
        notice_id=notice.id,
        service=str(target.ref),
        state=target.state.value,
        switch_lag=switch_lag,
        restore_lag=restore_lag,
        switch_lag_log=logged.get("start"),
        restore_lag_log=logged.get("end"),
        prepare=(ready - started).total_seconds() if started and ready else None,
        ready_before_start=prepared is not None and prepared <= notice.start,
    )


def _managed_objects(lab: Lab) -> int:
    selector = f"{naming.MANAGED_BY}={naming.MANAGER}"
    core, batch = CoreV1Api(lab.k8s), BatchV1Api(lab.k8s)
    return (
        len(core.list_pod_for_all_namespaces(label_selector=selector).items)
        + len(batch.list_job_for_all_namespaces(label_selector=selector).items)
        + len(core.list_config_map_for_all_namespaces(label_selector=selector).items)
    )


def _leftovers(lab: Lab, settle: float = 20) -> int:
    """maint's Pods, Jobs and ConfigMaps still there once deletions settle (Pods terminate and
    a Job's Pods are garbage-collected asynchronously after a successful DELETE)."""
    deadline = time.monotonic() + settle
    found = _managed_objects(lab)
    while found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = _managed_objects(lab)
    return found


def _wait_done(
    app: App, notices: list[Notice], *, run: MaintRun | None, deadline: datetime
) -> None:
    while not _all_done(app, notices):
        if run is not None and not run.alive():
            raise RuntimeError(f"maint run exited early:\n{run.tail()}")
        if datetime.now(UTC) > deadline:
            raise TimeoutError(
                f"windows not finished by {deadline.isoformat()}"
                + (f"; maint run log:\n{run.tail()}" if run else "")
            )
        time.sleep(0.5)


def scheduled(
    lab: Lab,
    watch: ServiceWatch,
    *,
    count: int,
    stagger: float,
    length: float,
    lead: float,
    first_start_in: float,
) -> PhaseResult:
    """``count`` windows, one Service each, starts ``stagger`` s apart, run by ``maint run``."""
    namespace = "bench-scheduled"
    services = [f"web-{i:02d}" for i in range(count)]
    lab.make_services(namespace, services)
    app = App(settings=_settings(lab, lead=lead), say=lambda _line: None)
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    t0 = _next_second(first_start_in)
    starts = [t0 + timedelta(seconds=i * stagger) for i in range(count)]
    notices = _register(app, namespace, services, starts, length)
    lab.reset_proxy_counts()
    run = MaintRun(
        ["run"],
        env=lab.maint_env(via_proxy=True, prepare_lead=lead, poll_interval=15),
        log=lab.workdir / "maint-run-scheduled.log",
    ).start()
    log(
        f"scheduled: {count} windows of {length:.0f}s starting {starts[0]:%H:%M:%S}"
        f"..{starts[-1]:%H:%M:%S}, prepare lead {lead:.0f}s, poll 15s (through the proxy)"
    )
    try:
        _wait_done(app, notices, run=run, deadline=starts[-1] + timedelta(seconds=length + 120))
        counts = lab.proxy_counts()
    finally:
        run.stop()
    result = PhaseResult(
        name="scheduled",
        windows=[_facts(app, watch, n) for n in notices],
        seconds=time.monotonic() - began,
        load=(load_before, os.getloadavg()[0]),
        api_requests=counts,
        peak_rss_mb=run.peak_kb / 1024,
        leftovers=_leftovers(lab),
    )
    app.close()
    return result


def seed_style(
    lab: Lab,
    watch: ServiceWatch,
    *,
    count: int,
    stagger: float,
    length: float,
    poll: float,
    first_start_in: float,
) -> PhaseResult:
    """The same windows the seed's way: a ``poll`` s loop of ``maint run --once``, lead 0."""
    namespace = "bench-seed"
    services = [f"web-{i:02d}" for i in range(count)]
    lab.make_services(namespace, services)
    app = App(settings=_settings(lab, lead=0), say=lambda _line: None)
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    t0 = _next_second(first_start_in)
    starts = [t0 + timedelta(seconds=i * stagger) for i in range(count)]
    notices = _register(app, namespace, services, starts, length)
    env = lab.maint_env(via_proxy=False, prepare_lead=0, poll_interval=poll)
    log(
        f"seed style: {count} windows of {length:.0f}s starting {starts[0]:%H:%M:%S}"
        f"..{starts[-1]:%H:%M:%S}, `maint run --once` every {poll:.0f}s, prepare lead 0"
    )
    deadline = starts[-1] + timedelta(seconds=length + 3 * poll)
    passes: list[float] = []
    tick = time.monotonic()
    while not _all_done(app, notices):
        if datetime.now(UTC) > deadline:
            raise TimeoutError("seed-style windows did not finish")
        passes.append(run_once(env, lab.workdir / "maint-run-seed.log"))
        tick += poll
        time.sleep(max(0.0, tick - time.monotonic()))
    result = PhaseResult(
        name="seed_style",
        windows=[_facts(app, watch, n) for n in notices],
        seconds=time.monotonic() - began,
        load=(load_before, os.getloadavg()[0]),
        leftovers=_leftovers(lab),
        extra={
            "once_runs": len(passes),
            # The first run finds nothing due: what starting the process and one pass cost,
            # which the seed's in-process poll did not pay.
            "empty_once_run_s": round(passes[0], 2),
            "once_run_s_max": round(max(passes), 2),
        },
    )
    app.close()
    return result


def shared_start(
    lab: Lab,
    watch: ServiceWatch,
    *,
    count: int,
    length: float,
    first_start_in: float,
    profile: bool = False,
    name: str = "shared_start",
) -> PhaseResult:
    """``count`` Services, one notice each, one start; prepared at once (default lead).

    ``profile``: sample ``maint run`` with py-spy from 1 s before the start for 8 s.
    """
    namespace = "bench-" + name.replace("_", "-")
    services = [f"svc-{i:03d}" for i in range(count)]
    lab.make_services(namespace, services, timeout=max(120, count))
    lead = 600.0
    app = App(settings=_settings(lab, lead=lead), say=lambda _line: None)
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    start = _next_second(first_start_in)
    notices = _register(app, namespace, services, [start] * count, length)
    run = MaintRun(
        ["run"],
        env=lab.maint_env(via_proxy=False, prepare_lead=lead, poll_interval=15),
        log=lab.workdir / f"maint-run-{name}.log",
    ).start()
    log(f"shared start: {count} Services, one start {start:%H:%M:%S}, window {length:.0f}s")
    all_ready_s: float | None = None
    spy: PySpy | None = None
    try:
        while datetime.now(UTC) < start - timedelta(seconds=1):
            if all_ready_s is None and _count_ready(app, notices) == count:
                all_ready_s = time.monotonic() - began
            time.sleep(0.25)
        if profile and run.process is not None:
            spy = PySpy(run.process.pid, seconds=8, out=lab.workdir / "shared-start.pyspy")
        after = length + max(180, count)  # restores, then every cleanup
        _wait_done(app, notices, run=run, deadline=start + timedelta(seconds=after))
    finally:
        run.stop()
    result = PhaseResult(
        name=name,
        windows=[_facts(app, watch, n) for n in notices],
        seconds=time.monotonic() - began,
        load=(load_before, os.getloadavg()[0]),
        peak_rss_mb=run.peak_kb / 1024,
        leftovers=_leftovers(lab),
        extra={
            "all_ready_after_s": round(all_ready_s, 1) if all_ready_s is not None else None,
            "start_after_s": round(first_start_in, 1),
            "max_sampled_rss_mb": round(run.max_rss_kb / 1024, 1),
        },
    )
    if spy is not None:
        result.extra["profile"] = spy.wait()
    app.close()
    return result
