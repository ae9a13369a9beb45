"""One reconcile pass with 100,000 notices in the database, on SQLite and on PostgreSQL.

Rows are bulk-inserted with SQLAlchemy Core through maint's own table definitions (the store
has no bulk API, and 100,000 ``add`` calls would only measure inserts). The mix per 1,000
notices: 900 past and COMPLETED (``due_at`` NULL), 99 or 100 far in the future and SCHEDULED
(``due_at`` = start - lead, months away); on top of that a fixed handful of live targets
(READY or ACTIVE, due now) that every pass must look at.

Timed, each ``REPEAT`` times after one warm-up:

- ``pass``: ``Runner.pass_once()`` as ``maint run`` calls it: ``store.due``, a decision and a
  claim per due target, and — where the pass still holds it (``sweep_in_pass``; ``maint run``
  now sweeps in a job of its own) — the cluster-wide Service list of the forced-restore sweep. The
  steps it starts are no-ops here (``IdleSteps``): a step runs on a worker thread after the
  pass, and what it costs is measured by the window benchmarks, not here.
- ``due``: ``store.due(now, horizon=0)`` alone — the database part of the pass.
- ``next_due``: the query behind each wake-up the scheduler arms after a pass.
- ``sweep``: ``restore_overdue`` alone (one ``list Services`` over the whole cluster).

Measured at 10,000 and again at 100,000 notices, to show the pass does not grow with history.
PostgreSQL gets an ``ANALYZE`` after the bulk insert (autovacuum does the same within a minute
of such a load in production); SQLite is left as maint leaves it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from sqlalchemy import create_engine, insert, text

from bench.lab import log, postgres_database
from bench.profiling import cprofile_top
from bench.stats import percentile
from maint import build
from maint.cluster import Cluster
from maint.notices import NoticeStore, TargetState, WorkItem
from maint.notices.models import NoticeRow, TargetRow
from maint.runner import Runner, Steps, make_claims, restore_overdue
from maint.settings import Settings

LIVE = 10
REPEAT = 30
BATCH = 5_000


class IdleSteps(Steps):
    """Steps that do nothing: the pass still claims and dispatches, no I/O follows."""

    def prepare(self, item: WorkItem) -> WorkItem:
        return item

    def switch(
        self, item: WorkItem, *, at: datetime | None = None, since: datetime | None = None
    ) -> WorkItem:
        return item

    def observe(self, item: WorkItem, *, reported: set[tuple[int, str]]) -> WorkItem:
        return item

    def restore(
        self,
        item: WorkItem,
        *,
        forced: bool = False,
        at: datetime | None = None,
        since: datetime | None = None,
    ) -> WorkItem:
        return item

    def rollback(
        self, item: WorkItem, *, reason: str, to: TargetState = TargetState.ROLLED_BACK
    ) -> WorkItem:
        return item


def _rows(
    first: int, count: int, *, now: datetime, lead: timedelta
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    notices, targets = [], []
    for i in range(first, first + count):
        kind = i % 1000
        if kind < 900:
            start = now - timedelta(days=1 + i % 3650, minutes=i % 1440)
            state, due = TargetState.COMPLETED, None
        else:
            start = now + timedelta(days=30 + i % 335, minutes=i % 1440)
            state, due = TargetState.SCHEDULED, start - lead
        end = start + timedelta(hours=1)
        notices.append(
            {
                "id": i,
                "title": f"notice {i}",
                "reason": "routine maintenance",
                "lang": "en",
                "maintenance": True,
                "start_at": start,
                "end_at": end,
                "created_at": start - timedelta(days=7),
                "updated_at": start - timedelta(days=7),
            }
        )
        targets.append(
            {
                "id": i,
                "notice_id": i,
                "namespace": f"team-{i % 97}",
                "service": f"svc-{i % 1009}",
                "state": state.value,
                "due_at": due,
                "forced": False,
                "actual_start": start if due is None else None,
                "actual_end": end if due is None else None,
            }
        )
    return notices, targets


def _live_rows(first: int, *, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """READY targets whose start is an hour away and ACTIVE ones whose end is: due every pass."""
    notices, targets = [], []
    for k in range(LIVE):
        i = first + k
        active = k % 2 == 1
        start = now - timedelta(minutes=5) if active else now + timedelta(hours=1)
        end = start + timedelta(hours=2)
        notices.append(
            {
                "id": i,
                "title": f"live {i}",
                "reason": "benchmark",
                "lang": "en",
                "maintenance": True,
                "start_at": start,
                "end_at": end,
                "created_at": now,
                "updated_at": now,
            }
        )
        targets.append(
            {
                "id": i,
                "notice_id": i,
                "namespace": "bench-live",
                "service": f"live-{k}",
                "state": (TargetState.ACTIVE if active else TargetState.READY).value,
                "due_at": end if active else start,
                "forced": False,
                "pod": f"maint-{i}-live-{k}",
                "image": "127.0.0.1:5000/maint-page@sha256:" + "0" * 64,
            }
        )
    return notices, targets


def _insert(url: str, notices: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(0, len(notices), BATCH):
                conn.execute(insert(NoticeRow.__table__), notices[i : i + BATCH])
                conn.execute(insert(TargetRow.__table__), targets[i : i + BATCH])
        if not url.startswith("sqlite"):
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
            # Explicit ids leave the sequences behind; a later add() must not collide.
            with engine.begin() as conn:
                for table in ("notices", "targets"):
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
    finally:
        engine.dispose()


def _timed(fn: Callable[[], object], *, after: Callable[[], None] = lambda: None) -> list[float]:
    fn()
    after()
    samples = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
        after()
    return samples


def _ms(samples: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(samples, 50), 2), "p95": round(percentile(samples, 95), 2)}


def _measure(url: str, api: Cluster, settings: Settings, *, profile: bool) -> dict[str, Any]:
    store = NoticeStore(url)
    claims = make_claims(store, settings)
    steps = IdleSteps(
        api=api,
        store=store,
        registry=build.OciRegistry(repository=build.parse_repository(settings.image_repository)),
        settings=settings,
        clock=lambda: datetime.now(UTC),
        say=lambda _line: None,
        renew=claims.renew,
    )
    # `maint run` sweeps in a job of its own, not in the pass: time the pass as it runs there
    # (the sweep is timed on its own).
    runner = Runner(
        api=api, store=store, steps=steps, settings=settings, claims=claims, sweep_in_pass=False
    )
    try:
        now = datetime.now(UTC)
        due_count = len(store.due(now=now, horizon=timedelta(0)))
        if profile:

            def one_pass() -> None:
                runner.pass_once()
                runner.wait_idle()

            top = cprofile_top(one_pass, repeat=10)
            log(f"cProfile of 10 passes on {url.split(':')[0]}:\n{top}")
        return {
            "pass": _ms(_timed(runner.pass_once, after=runner.wait_idle)),
            "due": _ms(_timed(lambda: store.due(now=datetime.now(UTC), horizon=timedelta(0)))),
            "next_due": _ms(_timed(lambda: store.next_due(after=datetime.now(UTC)))),
            "sweep": _ms(_timed(lambda: restore_overdue(api, now=datetime.now(UTC)))),
            "due_targets": due_count,
            "sweep_in_pass": False,
        }
    finally:
        runner.shutdown()
        store.close()


def _backend(
    url: str, api: Cluster, settings: Settings, sizes: tuple[int, ...], *, profile: bool
) -> dict[str, Any]:
    NoticeStore(url).upgrade()
    now = datetime.now(UTC)
    live_first = 10_000_000
    _insert(url, *_live_rows(live_first, now=now))
    results: dict[str, Any] = {}
    done = 0
    for size in sizes:
        began = time.monotonic()
        _insert(url, *_rows(done + 1, size - done, now=now, lead=settings.lead()))
        inserted = time.monotonic() - began
        done = size
        measured = _measure(url, api, settings, profile=profile and size == sizes[-1])
        results[str(size)] = measured | {"insert_s": round(inserted, 1)}
    return results


def reconcile_pass(
    *,
    api: Cluster,
    settings: Settings,
    sizes: tuple[int, ...] = (10_000, 100_000),
    profile: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="maint-bench-db-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'maint.db'}"
        out["sqlite"] = _backend(url, api, settings, sizes, profile=profile)
        log(f"reconcile pass on SQLite: {out['sqlite']}")
    with postgres_database("maint_bench_pass") as url:
        out["postgresql"] = _backend(url, api, settings, sizes, profile=profile)
        log(f"reconcile pass on PostgreSQL: {out['postgresql']}")
    return out


def sweep_by_services(
    api: Cluster, k8s: ApiClient, *, extra: int = 1000, namespace: str = "bench-many"
) -> dict[str, float]:
    """The forced-restore sweep (one ``list Services`` over the cluster, every pass) as the
    cluster grows: p50 ms now and after ``extra`` more Services (selector, no Pods)."""
    core = CoreV1Api(k8s)

    def sweep_ms() -> tuple[int, float]:
        services = len(core.list_service_for_all_namespaces().items)
        samples = _timed(lambda: restore_overdue(api, now=datetime.now(UTC)))
        return services, round(percentile(samples, 50), 1)

    out: dict[str, float] = {}
    n, ms = sweep_ms()
    out[str(n)] = ms
    core.create_namespace({"metadata": {"name": namespace}})

    def create(i: int) -> None:
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": f"many-{i:04d}"},
                # Headless: a thousand Services need no Service IPs for the sweep to read them.
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app": f"many-{i:04d}"},
                    "ports": [{"port": 80}],
                },
            },
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(extra)))
    n, ms = sweep_ms()
    out[str(n)] = ms
    log(f"forced-restore sweep p50 ms by Services in the cluster: {out}")
    return out
