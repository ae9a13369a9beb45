"""The outbox of webhook notifications, and the sweep's heartbeat: tables the runner shares.

``Outbox.enqueue`` runs inside the store's transaction that appends an event: a milestone
event gets one ``notifications`` row per webhook in that same transaction, so a process killed
a moment later still leaves the notification to be sent. A row that already exists for the
same (webhook, notice, target, kind, once) is skipped (``ON CONFLICT DO NOTHING``): a retried
step, a restart or a second replica never queue a milestone twice, and never fail the step.

Sending is leased: ``claim`` gives a row to one replica until ``leased_until`` (the database's
clock, as claims on targets), ``sent`` and ``failed`` finish it only while that replica still
holds it. A replica that dies holding a lease leaves the row to the next claim once the lease
has passed. The sessions come from ``NoticeStore`` (``NoticeStore.outbox``): it stays the only
place that opens them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from maint.notices.models import EventRow, NotificationRow, SweepRow
from maint.notices.types import Event

#: What an event becomes: (kind, once) or None when it is no milestone (``runner.notify.route``).
Route = Callable[[Event], "tuple[str, str] | None"]
DbTime = Callable[[float], ColumnElement[datetime]]
Sessions = Callable[[], AbstractContextManager[Session]]

SWEEPS_KEPT = timedelta(days=1)  # a replica's heartbeat row is dropped a day after it stopped


@dataclass(frozen=True)
class Routing:
    """Which events become notifications (``route``) and for which webhooks (``channels``,
    the keys ``channel_key`` gives their URLs: at least one; no webhooks, no ``Routing``)."""

    channels: tuple[str, ...]
    route: Route


@dataclass(frozen=True)
class Delivery:
    """A notification this replica holds the lease of, with the event it tells of."""

    id: int
    notice_id: int
    target: str
    kind: str
    attempts: int  # this one included
    event_id: int
    event: Event
    age: float  # seconds since it was queued, by the database's clock


@dataclass(frozen=True)
class Backlog:
    """Notifications not sent, per state (``maint status``)."""

    pending: int
    gave_up: int


def channel_key(url: str) -> str:
    """The outbox's name for a webhook: a digest of its URL (never the URL, which may carry a
    token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class Outbox:
    def __init__(self, *, sessions: Sessions, db_time: DbTime, routing: Routing | None) -> None:
        self._sessions = sessions
        self._now = db_time
        self.routing = routing

    # --- in the event's transaction -----------------------------------------------------
    def enqueue(self, session: Session, row: EventRow, event: Event) -> None:
        """Queue the notifications of ``event`` (just added as ``row``), if it is a milestone
        (``route`` answers None for every other event, and for one without a target)."""
        if self.routing is None:  # no webhooks
            return
        routed = self.routing.route(event)
        if routed is None:
            return
        kind, once = routed
        session.flush()  # the event's id
        values = [
            {
                "channel": channel,
                "notice_id": event.notice_id,
                "target": event.target,
                "kind": kind,
                "once": once,
                "event_id": row.id,
                "created_at": self._now(0.0),
                "next_try_at": self._now(0.0),
                "attempts": 0,
            }
            for channel in self.routing.channels
        ]
        # Imported here: a process loads the dialect of its own URL only (the engine has).
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        session.execute(dialect.insert(NotificationRow).values(values).on_conflict_do_nothing())

    # --- the sender ---------------------------------------------------------------------
    def claim(self, *, channel: str, owner: str, lease: float) -> Delivery | None:
        """The oldest due notification of ``channel`` nobody holds, leased to ``owner`` for
        ``lease`` seconds (its attempt counted); None when there is none."""
        n = NotificationRow
        free = or_(n.leased_until.is_(None), n.leased_until < self._now(0.0))
        with self._sessions() as session, session.begin():
            candidates = session.scalars(
                select(n.id)
                .where(n.channel == channel, n.next_try_at <= self._now(0.0), free)
                .order_by(n.next_try_at, n.id)
                .limit(5)
            ).all()
            for candidate in candidates:
                # Compare-and-set: of two replicas that both saw it free, one gets it.
                taken = session.execute(
                    update(n)
                    .where(n.id == candidate, n.next_try_at.is_not(None), free)
                    .values(
                        leased_by=owner,
                        leased_until=self._now(lease),
                        attempts=n.attempts + 1,
                    )
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return self._delivery(session, candidate)
        return None

    def next_try_in(self, *, channel: str) -> float | None:
        """Seconds until a notification of ``channel`` not sent yet may be claimed (0: now;
        a leased one when its lease passes); None when there is none."""
        n = NotificationRow
        claimable = case((n.leased_until > n.next_try_at, n.leased_until), else_=n.next_try_at)
        with self._sessions() as session:
            earliest, now = session.execute(
                select(func.min(claimable), self._now(0.0)).where(
                    n.channel == channel, n.next_try_at.is_not(None)
                )
            ).one()
        if earliest is None:
            return None
        wait: float = (earliest - now.replace(tzinfo=UTC)).total_seconds()
        return max(0.0, wait)

    def sent(self, delivery: Delivery, *, owner: str) -> bool:
        """Mark it sent; False when ``owner`` no longer held it (another replica took it over
        after the lease passed, and may send it again)."""
        return self._finish(delivery, owner=owner, values={"sent_at": self._now(0.0)})

    def failed(self, delivery: Delivery, *, owner: str, error: str, retry_in: float | None) -> bool:
        """Try again in ``retry_in`` seconds, or (None) give up; ``error`` must hold nothing
        secret (it is shown by ``maint status``)."""
        values: dict[str, object] = {"last_error": error[:1000]}
        if retry_in is None:
            values["gave_up_at"] = self._now(0.0)
        else:
            values["next_try_at"] = self._now(retry_in)
        return self._finish(delivery, owner=owner, values=values, done=retry_in is None)

    def backlog(self) -> Backlog:
        n = NotificationRow
        with self._sessions() as session:
            pending = session.scalar(select(func.count()).where(n.next_try_at.is_not(None)))
            gave_up = session.scalar(select(func.count()).where(n.gave_up_at.is_not(None)))
            return Backlog(pending=int(pending or 0), gave_up=int(gave_up or 0))

    def _finish(
        self,
        delivery: Delivery,
        *,
        owner: str,
        values: dict[str, object],
        done: bool = True,
    ) -> bool:
        n = NotificationRow
        with self._sessions() as session, session.begin():
            changes = dict(values, leased_by=None, leased_until=None)
            if done:
                changes["next_try_at"] = None
            result = session.execute(
                update(n)
                .where(n.id == delivery.id, n.leased_by == owner, n.next_try_at.is_not(None))
                .values(**changes)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _delivery(self, session: Session, notification_id: int) -> Delivery:
        n, e = NotificationRow, EventRow
        found, told, now = session.execute(
            select(n, e, self._now(0.0)).join(e, e.id == n.event_id).where(n.id == notification_id)
        ).one()
        return Delivery(
            id=found.id,
            notice_id=found.notice_id,
            target=found.target,
            kind=found.kind,
            attempts=found.attempts,
            event_id=found.event_id,
            event=event_of(told),
            age=(now.replace(tzinfo=UTC) - found.created_at).total_seconds(),
        )


def event_of(row: EventRow) -> Event:
    """The event a row of the event log holds (``NoticeStore.events`` and the outbox's)."""
    return Event(
        at=row.at,
        notice_id=row.notice_id,
        target=row.target,
        step=row.step,
        outcome=row.outcome,
        detail=row.detail,
    )


class SweepLog:
    """Each replica's last completed forced-restore sweep (``sweeps``), by the database's clock."""

    def __init__(self, *, sessions: Sessions, db_time: DbTime) -> None:
        self._sessions = sessions
        self._now = db_time

    def completed(self, replica: str) -> None:
        with self._sessions() as session, session.begin():
            done = session.execute(
                update(SweepRow).where(SweepRow.replica == replica).values(at=self._now(0.0))
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                # A new replica: drop the rows of replicas gone for a day (restarts leave one each).
                session.execute(
                    delete(SweepRow).where(SweepRow.at < self._now(-SWEEPS_KEPT.total_seconds()))
                )
                session.execute(insert(SweepRow).values(replica=replica, at=self._now(0.0)))

    def last(self) -> tuple[dict[str, datetime], datetime]:
        """Each replica's last sweep, and the database's now to measure them against."""
        with self._sessions() as session:
            rows = session.execute(select(SweepRow.replica, SweepRow.at)).all()
            now = session.scalar(select(self._now(0.0)))
        assert now is not None
        return {replica: at for replica, at in rows}, now.replace(tzinfo=UTC)
