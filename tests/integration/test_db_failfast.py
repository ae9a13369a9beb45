"""The database fails fast and `notice add`'s overlap check is atomic (issue 10, items 3 and 4).

- Overlap race: N processes, each with its own ``NoticeStore``, released together by a barrier,
  add overlapping windows on one Service; of each round exactly one is stored and the others
  get ``InvalidInput`` (exit 2 in the CLI). On SQLite (BEGIN IMMEDIATE) and PostgreSQL (an
  advisory lock per Service).
- A black-holed PostgreSQL (a proxy that accepts and then forwards nothing, without closing):
  a store query fails as ``DatabaseUnavailable`` within its bound instead of hanging.
- The pool holds exactly ``connections`` connections, and waiting for one is bounded.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from maint.app import App
from maint.errors import DatabaseUnavailable, InvalidInput
from maint.notices.store import DatabaseLimits, NoticeStore
from maint.notices.types import NewNotice, ServiceRef
from maint.settings import Settings
from tests.support.faults import TcpProxy

PROCESSES = 6
ROUNDS = 5
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _notice(round_: int, worker: int) -> NewNotice:
    """Every worker's window overlaps the others' (same hour, shifted by minutes)."""
    start = START + timedelta(days=round_, minutes=worker)
    return NewNotice(
        title=f"round {round_} worker {worker}",
        reason="race",
        lang="en",
        maintenance=True,
        start=start,
        end=start + timedelta(hours=1),
        targets=(ServiceRef("shop", f"web-{round_}"), ServiceRef("shop", "shared")),
    )


def _racer(url: str, worker: int, barrier: Any, results: Any) -> None:
    """One process: its own store (connection opened before the barrier), one add a round."""
    store = NoticeStore(url, connections=2)
    try:
        store.recent(limit=1)  # connect now, so the barrier releases the adds, not connects
        for round_ in range(ROUNDS):
            barrier.wait(timeout=60)
            try:
                store.add(_notice(round_, worker), now=datetime.now(UTC), due_at=None)
            except InvalidInput:
                results.put((round_, "refused"))
            except Exception as e:  # reported to the test, which fails on it
                results.put((round_, f"error: {e!r}"))
            else:
                results.put((round_, "stored"))
    finally:
        store.close()


def test_of_concurrent_overlapping_adds_exactly_one_is_stored_every_round(
    database_url: str,
) -> None:
    NoticeStore(database_url).upgrade()
    context = multiprocessing.get_context("spawn")  # no forked copies of pytest's threads
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_racer, args=(database_url, i, barrier, results), daemon=True)
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()

    by_round = {r: Counter(o for rr, o in outcomes if rr == r) for r in range(ROUNDS)}
    for round_, counts in by_round.items():
        assert counts == Counter(stored=1, refused=PROCESSES - 1), (round_, counts)
    store = NoticeStore(database_url)
    try:
        notices = store.recent()
    finally:
        store.close()
    assert len(notices) == ROUNDS
    per_service = Counter(str(t.ref) for n in notices for t in n.targets)
    assert all(per_service[f"shop/web-{r}"] == 1 for r in range(ROUNDS)), per_service


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    with TcpProxy(upstream_host=url.host or "127.0.0.1", upstream_port=url.port or 5432) as p:
        yield p


def _via(url: str, proxy: TcpProxy) -> str:
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


def test_a_query_to_a_black_holed_postgres_fails_as_unavailable_within_its_bound(
    postgres_url: str, proxy: TcpProxy
) -> None:
    NoticeStore(postgres_url).upgrade()
    store = NoticeStore(_via(postgres_url, proxy))  # the defaults of Settings
    try:
        assert store.recent() == []  # a pooled connection, through the proxy
        proxy.blackhole()
        for what in ("a pooled connection", "a new connection"):
            began = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                store.recent()
            elapsed = time.monotonic() - began
            assert elapsed < 20, f"{what}: {elapsed:.1f}s to fail"
        proxy.heal()
        assert store.recent() == []  # and it recovers once the network does
    finally:
        store.close()


def test_the_server_gets_the_statement_timeout_and_libpq_the_keepalives(
    postgres_url: str,
) -> None:
    settings = Settings(
        database_url=postgres_url,
        database_statement_timeout=1.5,
        database_keepalives_idle=7,
        database_tcp_user_timeout=9,
    )
    app = App(settings)
    store = app.store
    try:
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            params = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["keepalives"] == "1"
        assert params["keepalives_idle"] == "7"
        assert params["tcp_user_timeout"] == "9000"
        assert store._engine.pool.size() == settings.workers + 4  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_pool_holds_exactly_the_connections_asked_for(database_url: str) -> None:
    store = NoticeStore(database_url, connections=3, limits=DatabaseLimits(pool_timeout=0.5))
    try:
        store.upgrade()
        pool = store._engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        held = [store._engine.connect() for _ in range(3)]
        try:
            began = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="no free connection"):
                store.recent()
            assert time.monotonic() - began < 5
        finally:
            for connection in held:
                connection.close()
        assert store.recent() == []
    finally:
        store.close()
