"""A ``NoticeStore`` on the test's database and the notices and events the store tests write
to it, without a runner: the store modules (outbox, fencing, lock order) share these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from maint.notices import Event, Notice, NoticeStore, new_notice
from maint.notices.outbox import Routing


@contextmanager
def open_store(database_url: str, *, routing: Routing | None = None) -> Iterator[NoticeStore]:
    """The store on ``database_url``, migrated to head; closed afterwards."""
    store = NoticeStore(database_url, routing=routing)
    store.upgrade()
    try:
        yield store
    finally:
        store.close()


def add_notice(
    store: NoticeStore,
    *,
    now: datetime | None = None,
    service: str = "web",
    start_in: timedelta = timedelta(hours=1),
    length: timedelta = timedelta(hours=1),
) -> Notice:
    """A maintenance notice on ``shop/<service>`` starting ``start_in`` after ``now``, due at
    ``now`` (the database's clock decides the rest)."""
    now = datetime.now(UTC) if now is None else now
    new = new_notice(
        title="Planned maintenance",
        reason="DB upgrade",
        start=(now + start_in).isoformat(),
        end=(now + start_in + length).isoformat(),
        targets=[f"shop/{service}"],
        lang="en",
        maintenance=True,
        now=now,
        start_tolerance=timedelta(minutes=5),
    )
    return store.add(new, now=now, due_at=now)


def event(
    notice_id: int, step: str, outcome: str, detail: str = "", *, at: datetime | None = None
) -> Event:
    """An event of ``shop/web`` (at ``at``, else now)."""
    return Event(
        at=datetime.now(UTC) if at is None else at,
        notice_id=notice_id,
        target="shop/web",
        step=step,
        outcome=outcome,
        detail=detail,
    )
