"""SQLAlchemy tables. Rows never leave this package: ``store.py`` turns them into ``types``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TITLE_MAX = 200
REASON_MAX = 4000
ZONE_MAX = 64


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type; storing naive UTC and re-attaching UTC on the way out gives
    the same behaviour as PostgreSQL's ``timestamptz`` without relying on either.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class NoticeRow(Base):
    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    reason: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8))
    maintenance: Mapped[bool] = mapped_column(Boolean)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # IANA zone name or fixed offset the page shows times in; NULL: the display default.
    display_zone: Mapped[str | None] = mapped_column(String(ZONE_MAX), nullable=True)
    # Random, not secret: the bypass link and cookie key derive from it (``page.bypass``).
    bypass_salt: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Set Flux's reconcile-disabled annotation on each target for the window (--pause-reconcilers).
    pause_reconcilers: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Moved by every operator intent: ``max(updated_at)`` is the scheduler's change marker.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    targets: Mapped[list[TargetRow]] = relationship(
        back_populates="notice", order_by="TargetRow.id", lazy="selectin"
    )


class TargetRow(Base):
    __tablename__ = "targets"
    __table_args__ = (
        Index("ix_targets_state_due", "state", "due_at"),
        Index("ix_targets_service", "namespace", "service"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    # When this target next needs a step (prepare, switch, restore, forced restore); NULL once
    # terminal. A reconcile pass reads only due rows, so 100,000 old notices cost nothing.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    image: Mapped[str | None] = mapped_column(String(512), nullable=True)
    pod: Mapped[str | None] = mapped_column(String(253), nullable=True)
    revision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    original_selector: Mapped[str | None] = mapped_column(Text, nullable=True)
    # JSON {annotation: value before the switch, or null}: what the switch added to pause
    # reconcilers, removed exactly at every ending. NULL: nothing was added.
    paused: Mapped[str | None] = mapped_column(Text, nullable=True)
    actual_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    actual_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Moves on every new claim: a transition is written only under the generation it was
    # claimed with, so a replica that lost the claim (a pause, a partition) is fenced off.
    claim_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    notice: Mapped[NoticeRow] = relationship(back_populates="targets")


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    target: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    step: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


class NotificationRow(Base):
    """One webhook notification of a milestone: the outbox (``notices.outbox``).

    Written in the transaction of the event it tells of, so a process killed right after the
    event still leaves it to be sent; the unique key makes a second row for the same milestone
    (another replica, a retried step) a no-op. ``next_try_at`` is NULL once it is sent or given
    up, so the due index holds only what is left to send.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint(
            "channel", "notice_id", "target", "kind", "once", name="uq_notifications_once"
        ),
        Index("ix_notifications_due", "channel", "next_try_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Which webhook: a digest of its URL (the URL may carry a token; it is never stored).
    channel: Mapped[str] = mapped_column(String(16))
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    target: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))  # switched, restored, failed, drift...
    once: Mapped[str] = mapped_column(String(64), default="")  # "" or what makes it new (drift)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    gave_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SweepRow(Base):
    """When each replica's forced-restore sweep last completed, by the database's clock, so
    ``maint status`` (another process) sees a sweep that stopped."""

    __tablename__ = "sweeps"

    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
