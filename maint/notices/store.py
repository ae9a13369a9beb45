"""The notices database: the only place that opens SQLAlchemy sessions.

Rows are turned into ``types`` before they leave. A missing notice raises ``NotFound``; a
target whose state moved under us (another replica, an operator) raises ``Conflict``; a
database that cannot be reached raises ``DatabaseUnavailable`` so the runner can keep its
cluster-side safety nets going.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    and_,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.sql import ColumnElement, expression
from sqlalchemy.sql.compiler import SQLCompiler

from maint.errors import ClaimLost, Conflict, DatabaseUnavailable, InvalidInput, NotFound
from maint.notices.models import EventRow, NoticeRow, TargetRow
from maint.notices.outbox import Outbox, Routing, SweepLog, event_of
from maint.notices.types import (
    IN_FLIGHT_STATES,
    Event,
    NewNotice,
    Notice,
    ServiceRef,
    Target,
    TargetState,
    WorkItem,
)

_MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 10  # seconds to open a PostgreSQL connection before DatabaseUnavailable
_UNSET: Any = object()


@dataclass(frozen=True)
class DatabaseLimits:
    """How long the store waits on PostgreSQL, in seconds (``Settings.database_*`` says what
    each one catches and why its default)."""

    pool_timeout: float = 10.0
    statement_timeout: float = 4.0
    reply_timeout: float = 5.0
    keepalives_idle: int = 5
    keepalives_interval: int = 2
    keepalives_count: int = 3
    tcp_user_timeout: float = 10.0


@dataclass(frozen=True)
class TargetUpdate:
    """Fields a step writes together with a state change; ``None`` leaves a field alone."""

    image: str | None = None
    pod: str | None = None
    revision: str | None = None
    original_selector: dict[str, str] | None = None
    paused: dict[str, str | None] | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    forced: bool | None = None


class NoticeStore:
    """Notices, targets and events in one SQL database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 10,
        limits: DatabaseLimits | None = None,
        routing: Routing | None = None,
    ) -> None:
        """``connections`` caps the pool (no overflow); ``limits`` bound every wait on it;
        ``routing`` says which events queue webhook notifications (``outbox``)."""
        self.url = url
        self._engine = _engine(url, connections=connections, limits=limits or DatabaseLimits())
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self.outbox = Outbox(sessions=self._session, db_time=_DbTime, routing=routing)
        self.sweeps = SweepLog(sessions=self._session, db_time=_DbTime)

    def close(self) -> None:
        self._engine.dispose()

    # --- schema ---------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Create or migrate the schema to the newest revision (idempotent)."""
        # Imported here: Alembic costs ~1 s of start-up that no other command needs.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with _translated(), self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # A migration may rewrite a table or wait for a lock: not a 4 s statement.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # --- notices --------------------------------------------------------------------------
    def add(self, new: NewNotice, *, now: datetime, due_at: datetime | None) -> Notice:
        """Store a validated notice; ``InvalidInput`` (nothing written) if a window overlaps."""
        with self._session() as session, session.begin():
            if new.maintenance:
                # Check and insert under a per-Service lock, or two concurrent adds both see
                # "no overlap" and both insert. SQLite: the engine begins every transaction
                # with BEGIN IMMEDIATE (one writer at a time), so nothing more is needed here.
                _lock_services(session, new.targets)
                for ref in new.targets:
                    clash = _overlapping(session, ref, new.start, new.end)
                    if clash is not None:
                        raise InvalidInput(
                            f"{ref} already has maintenance notice {clash} overlapping "
                            f"{new.start.isoformat()}..{new.end.isoformat()}; "
                            "cancel it or pick another window"
                        )
            row = NoticeRow(
                title=new.title,
                reason=new.reason,
                lang=new.lang,
                maintenance=new.maintenance,
                start_at=new.start,
                end_at=new.end,
                display_zone=new.display_zone,
                pause_reconcilers=new.pause_reconcilers,
                bypass_salt=new.bypass_salt,
                created_at=now,
                updated_at=_next_marker(session),
            )
            row.targets = [
                TargetRow(
                    namespace=ref.namespace,
                    service=ref.name,
                    state=TargetState.SCHEDULED.value,
                    due_at=due_at if new.maintenance else None,
                    forced=False,
                )
                for ref in new.targets
            ]
            session.add(row)
            session.flush()
            session.add(
                EventRow(
                    notice_id=row.id,
                    target=None,
                    at=now,
                    step="register",
                    outcome="ok",
                    detail=("maintenance" if new.maintenance else "announcement only")
                    + f" for {', '.join(str(t) for t in new.targets) or 'no Service'}",
                )
            )
            session.flush()
            return _notice(row)

    def get(self, notice_id: int) -> Notice:
        with self._session() as session:
            row = session.get(NoticeRow, notice_id)
            if row is None:
                raise NotFound(f"notice {notice_id} does not exist (see `maint notice list`)")
            return _notice(row)

    def count_by_state(self) -> dict[str, int]:
        """How many targets are in each state (one grouped count; ``maint_targets``)."""
        with self._session() as session:
            rows = session.execute(select(TargetRow.state, func.count()).group_by(TargetRow.state))
            return {state: int(count) for state, count in rows}

    def recent(self, *, limit: int = 200) -> list[Notice]:
        """The newest notices first."""
        with self._session() as session:
            rows = session.scalars(
                select(NoticeRow).order_by(NoticeRow.start_at.desc()).limit(limit)
            )
            return [_notice(row) for row in rows]

    def live(self, *, now: datetime, failed_since: datetime) -> list[Notice]:
        """The windows ``maint status`` shows, oldest start first: a maintenance notice with a
        target not finished yet or FAILED since ``failed_since`` (its end, or the notice's),
        and an announcement (no targets) neither cancelled nor over at ``now``. Found from the
        targets' states (the (state, due_at) index), however many newer notices there are."""
        t, n = TargetRow, NoticeRow
        unfinished = [s.value for s in TargetState if not s.terminal]
        live_targets = (
            select(t.notice_id)
            .join(n, n.id == t.notice_id)
            .where(
                n.maintenance,
                or_(
                    t.state.in_(unfinished),
                    and_(
                        t.state == TargetState.FAILED.value,
                        func.coalesce(t.actual_end, n.end_at) > failed_since,
                    ),
                ),
            )
        )
        has_targets = select(t.id).where(t.notice_id == n.id).exists()
        announcement = and_(
            or_(~n.maintenance, ~has_targets), n.cancelled_at.is_(None), n.end_at > now
        )
        with self._session() as session:
            rows = session.scalars(
                select(n)
                .where(or_(n.id.in_(live_targets), announcement))
                .order_by(n.start_at, n.id)
            )
            return [_notice(row) for row in rows]

    def last_events(
        self,
        notice_ids: Collection[int],
        *,
        outcomes: Collection[str],
        except_steps: Collection[str] = (),
    ) -> dict[tuple[int, str], Event]:
        """The last event with one of ``outcomes`` and none of ``except_steps`` of each target
        of ``notice_ids``, by (notice id, target): one query for them all."""
        if not notice_ids:
            return {}
        e = EventRow
        last = (
            select(func.max(e.id))
            .where(
                e.notice_id.in_(notice_ids),
                e.target.is_not(None),
                e.outcome.in_(outcomes),
                e.step.not_in(except_steps),
            )
            .group_by(e.notice_id, e.target)
        )
        with self._session() as session:
            rows = session.scalars(select(e).where(e.id.in_(last)))
            return {(r.notice_id, r.target): event_of(r) for r in rows if r.target is not None}

    def set_window(
        self,
        notice_id: int,
        *,
        end: datetime | None = None,
        end_now: bool = False,
        cancelled: bool = False,
        intent: str = "",
        check_overlap: bool = False,
    ) -> Notice:
        """Record an operator's intent: move the end (extend, end now) or mark it cancelled.

        Only data: the running scheduler sees the change marker move (``change_marker``) and
        acts. Every time written here is the database's, never the caller's clock: ``end_now``
        ends the window at the database's now (if it ends later), and the marker, the cancel
        time, the targets' due time and the event all carry that time. ``end`` sets a new end
        (extend). ``intent`` is written to the event log in the same transaction.
        ``check_overlap`` (extend): ``InvalidInput``, nothing written, if the new window
        overlaps another notice on one of its Services; checked under the same per-Service lock
        as ``add``.
        """
        with self._session() as session, session.begin():
            # FOR NO KEY UPDATE, not FOR UPDATE: a step's event checks its foreign key to this
            # row (KEY SHARE) while the step holds its target row, which this transaction
            # updates below; FOR UPDATE made the two deadlock (PostgreSQL aborted one).
            row = session.get(NoticeRow, notice_id, with_for_update={"key_share": True})
            if row is None:
                raise NotFound(f"notice {notice_id} does not exist (see `maint notice list`)")
            if end is not None and check_overlap and row.maintenance:
                refs = [ServiceRef(namespace=t.namespace, name=t.service) for t in row.targets]
                _lock_services(session, refs)
                for ref in refs:
                    clash = _overlapping(session, ref, row.start_at, end, exclude=row.id)
                    if clash is not None:
                        raise InvalidInput(
                            f"--end {end.isoformat()} overlaps maintenance notice {clash} on "
                            f"{ref}; pick an earlier end or cancel notice {clash}"
                        )
            now = _next_marker(session)
            if end is not None:
                row.end_at = end
            if end_now:
                row.end_at = min(row.end_at, now)
            row.updated_at = now
            if cancelled:
                row.cancelled_at = now
            for target in row.targets:
                if not TargetState(target.state).terminal and row.maintenance:
                    target.due_at = now  # let the runner look at it at once
            if intent:
                session.add(
                    EventRow(
                        notice_id=row.id,
                        target=None,
                        at=now,
                        step=intent,
                        outcome="requested",
                        detail=f"ends {row.end_at.isoformat()}" if not cancelled else "",
                    )
                )
            session.flush()
            return _notice(row)

    def change_marker(self) -> datetime | None:
        """Moves whenever a notice is added or an operator records an intent (one index probe):
        ``max(updated_at)``, which only ``_next_marker`` writes."""
        with self._session() as session:
            return session.scalar(select(func.max(NoticeRow.updated_at)))

    # --- the runner's view ----------------------------------------------------------------
    def due(self, *, now: datetime, horizon: timedelta) -> list[WorkItem]:
        """Targets in flight, plus scheduled ones due before ``now + horizon``.

        Uses the (state, due_at) index: cost follows the number of live windows, not history.
        """
        in_flight = [s.value for s in IN_FLIGHT_STATES]
        with self._session() as session:
            rows = session.scalars(
                select(TargetRow)
                .options(selectinload(TargetRow.notice))
                .where(
                    or_(
                        TargetRow.state.in_(in_flight),
                        and_(
                            TargetRow.state == TargetState.SCHEDULED.value,
                            TargetRow.due_at <= now + horizon,
                        ),
                    )
                )
                .order_by(TargetRow.due_at, TargetRow.id)
            ).all()
            notices = {row.notice_id: _notice(row.notice) for row in rows}
            return [WorkItem(notice=notices[row.notice_id], target=_target(row)) for row in rows]

    def next_due(self, *, after: datetime) -> datetime | None:
        """Earliest due time after ``after`` of any live target (the scheduler's wake-up)."""
        live = [s.value for s in (TargetState.SCHEDULED, *IN_FLIGHT_STATES)]
        with self._session() as session:
            return session.scalar(
                select(func.min(TargetRow.due_at)).where(
                    TargetRow.state.in_(live), TargetRow.due_at > after
                )
            )

    def target(self, target_id: int) -> WorkItem:
        with self._session() as session:
            row = session.get(TargetRow, target_id)
            if row is None:
                raise NotFound(f"target {target_id} does not exist")
            return WorkItem(notice=_notice(row.notice), target=_target(row))

    def transition(
        self,
        target_id: int,
        *,
        expect: Collection[TargetState],
        to: TargetState,
        due_at: datetime | None,
        changes: TargetUpdate = TargetUpdate(),
        record: Event | None = None,
    ) -> Target:
        """Move a target to ``to`` if it is still in one of ``expect``; ``Conflict`` if not.

        ``record`` is written in the same transaction: a crash cannot leave the new state
        without the event that tells of it (the step that wrote it would not run again).
        Inside ``fenced``: ``ClaimLost`` (nothing written) unless the claim is still held.
        """
        values: dict[str, Any] = {"state": to.value, "due_at": due_at}
        for name in ("image", "pod", "revision", "actual_start", "actual_end", "forced"):
            value = getattr(changes, name)
            if value is not None:
                values[name] = value
        if changes.original_selector is not None:
            values["original_selector"] = json.dumps(changes.original_selector, sort_keys=True)
        if changes.paused:
            values["paused"] = json.dumps(changes.paused, sort_keys=True)
        fence = _fence_for(target_id)
        with self._session() as session, session.begin():
            result = session.execute(
                update(TargetRow)
                .where(TargetRow.id == target_id, TargetRow.state.in_([s.value for s in expect]))
                .where(*(_holds(fence) if fence is not None else ()))
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                if fence is not None:
                    _check_held(session, fence, doing=f"move it to {to.value}")
                current = session.get(TargetRow, target_id)
                state = current.state if current is not None else "missing"
                raise Conflict(
                    f"target {target_id} is {state}, expected one of "
                    f"{', '.join(sorted(s.value for s in expect))}"
                )
            if record is not None:
                logged = _event_row(record)
                session.add(logged)
                self.outbox.enqueue(session, logged, record)  # in this transaction: never lost
            row = session.get(TargetRow, target_id, populate_existing=True)
            assert row is not None
            return _target(row)

    def reschedule(self, target_id: int, *, due_at: datetime | None) -> None:
        fence = _fence_for(target_id)
        with self._session() as session, session.begin():
            result = session.execute(
                update(TargetRow)
                .where(TargetRow.id == target_id)
                .where(*(_holds(fence) if fence is not None else ()))
                .values(due_at=due_at)
            )
            if fence is not None and result.rowcount != 1:  # type: ignore[attr-defined]
                _check_held(session, fence, doing="reschedule it")

    # --- claims: at most one replica works on a target at a time ---------------------------
    # Expiry is computed and compared by the database's clock only (``_DbTime``): replicas'
    # clocks may disagree by any amount without two of them holding one target.
    def claim(self, target_id: int, *, owner: str, ttl: timedelta) -> Claim | None:
        """Take the claim on a target for ``ttl``; ``None`` while another live owner holds it.

        Every claim taken is a new generation, even by the same owner: whatever an older
        holder still has in flight is fenced off (``fenced``).
        """
        with self._session() as session, session.begin():
            result = session.execute(
                update(TargetRow)
                .where(
                    TargetRow.id == target_id,
                    or_(
                        TargetRow.claimed_by.is_(None),
                        TargetRow.claimed_by == owner,
                        TargetRow.claimed_until < _DbTime(0.0),
                    ),
                )
                .values(
                    claimed_by=owner,
                    claimed_until=_DbTime(ttl.total_seconds()),
                    claim_generation=TargetRow.claim_generation + 1,
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            generation = session.scalar(
                select(TargetRow.claim_generation).where(TargetRow.id == target_id)
            )
            assert generation is not None
            return Claim(target_id=target_id, owner=owner, generation=generation)

    def renew(self, claim: Claim, *, ttl: timedelta) -> bool:
        """Extend a claim that is still held and not yet expired; False once it is gone
        (taken over, released, or expired by the database's clock). Never takes one."""
        with self._session() as session, session.begin():
            result = session.execute(
                update(TargetRow)
                .where(*_holds(claim))
                .values(claimed_until=_DbTime(ttl.total_seconds()))
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, claim: Claim) -> None:
        """Give the claim up; a newer generation (another holder) is left alone."""
        with self._session() as session, session.begin():
            session.execute(
                update(TargetRow)
                .where(
                    TargetRow.id == claim.target_id,
                    TargetRow.claimed_by == claim.owner,
                    TargetRow.claim_generation == claim.generation,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    @staticmethod
    @contextmanager
    def fenced(claim: Claim) -> Iterator[None]:
        """Inside this block (this thread's context), every transition, reschedule and event
        of ``claim``'s target is written only while the claim is still held: ``ClaimLost``
        otherwise, with nothing written."""
        token = _fence.set(claim)
        try:
            yield
        finally:
            _fence.reset(token)

    # --- event log ------------------------------------------------------------------------
    def record(self, event_: Event) -> None:
        """Append to the event log; inside ``fenced``, only while the claim is still held."""
        fence = _fence.get()
        with self._session() as session, session.begin():
            if fence is not None:
                # Locks the target row until commit: a takeover waits for this event, or
                # this event sees the takeover (PostgreSQL; SQLite serialises writers anyway).
                held = session.scalar(select(TargetRow.id).where(*_holds(fence)).with_for_update())
                if held is None:
                    _check_held(session, fence, doing=f"record {event_.step} {event_.outcome}")
            logged = _event_row(event_)
            session.add(logged)
            self.outbox.enqueue(session, logged, event_)  # in this transaction: never lost

    def events(self, notice_id: int) -> list[Event]:
        with self._session() as session:
            rows = session.scalars(
                select(EventRow).where(EventRow.notice_id == notice_id).order_by(EventRow.id)
            )
            return [event_of(r) for r in rows]

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with _translated(), self._sessions() as session:
            yield session


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except OperationalError as e:
        raise DatabaseUnavailable(
            f"database unavailable ({e.orig.__class__.__name__}): check MAINT_DATABASE_URL "
            "and that the server is up; run `maint db upgrade` on a new database"
        ) from e
    except DBAPIError as e:
        if e.connection_invalidated:
            raise DatabaseUnavailable("database connection lost; will retry") from e
        raise


def _engine(url: str, *, connections: int, limits: DatabaseLimits) -> Engine:
    # ``connections`` is the cap: no overflow, so N replicas never open more than N times it
    # (Settings.workers). A thread that finds them all busy waits ``pool_timeout``.
    pool_args: dict[str, Any] = {
        "poolclass": _Pool,
        "pool_size": connections,
        "max_overflow": 0,
        "pool_timeout": limits.pool_timeout,
    }
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **pool_args)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling (a deferred BEGIN just before the first
            # write) is off: ``_sqlite_begin`` starts every transaction instead.
            dbapi_connection.isolation_level = None
            # WAL lets `maint run` and the CLI use one file at once; foreign keys are off by
            # default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # IMMEDIATE takes the write lock at once (waiting up to the 30 s busy timeout):
            # transactions serialise, so `notice add`'s overlap check and insert are atomic,
            # and a read-then-write transaction never fails on a snapshot another connection
            # wrote past (SQLITE_BUSY, which the busy timeout does not retry). In WAL mode a
            # transaction is short, so the wait is milliseconds.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            # libpq waits forever for a server that accepts the connection and never answers:
            # without a deadline one hung connect would hold up every later pass.
            "connect_timeout": CONNECT_TIMEOUT,
            # A partition (packets dropped) is noticed by the kernel: keepalive probes on an
            # idle connection, and the user timeout for data sent and never acknowledged.
            "keepalives": 1,
            "keepalives_idle": limits.keepalives_idle,
            "keepalives_interval": limits.keepalives_interval,
            "keepalives_count": limits.keepalives_count,
            "tcp_user_timeout": round(limits.tcp_user_timeout * 1000),
            # The server cancels a statement stuck on a lock or a bad plan.
            "options": f"-c statement_timeout={round(limits.statement_timeout * 1000)}",
        }
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool_args)
    if engine.dialect.driver == "psycopg":
        # Imported here: psycopg adds about 0.1 s to every start, which SQLite never needs.
        from maint.notices.postgres import BoundedConnection

        reply_timeout = limits.reply_timeout

        @event.listens_for(engine, "do_connect")
        def _bounded_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return BoundedConnection.connect(*cargs, reply_timeout=reply_timeout, **cparams)

    return engine


class _Pool(QueuePool):
    """A pool whose "all connections busy for ``pool_timeout``" is ``DatabaseUnavailable``."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as e:
            raise DatabaseUnavailable(
                f"database unavailable: no free connection within {self.timeout():g}s "
                "(all busy or hung); will retry"
            ) from e


# SQLAlchemy logs a pool under its class's module and name: this one sits inside maint's tree.
POOL_LOGGER = f"{_Pool.__module__}.{_Pool.__qualname__}"


@dataclass(frozen=True)
class Claim:
    """A claim this replica took: the target, who, and which generation (``NoticeStore.claim``)."""

    target_id: int
    owner: str
    generation: int


_fence: ContextVar[Claim | None] = ContextVar("maint_claim_fence", default=None)


def _fence_for(target_id: int) -> Claim | None:
    fence = _fence.get()
    return fence if fence is not None and fence.target_id == target_id else None


def _holds(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    """The row still carries this claim and it has not expired by the database's clock."""
    return (
        TargetRow.id == claim.target_id,
        TargetRow.claimed_by == claim.owner,
        TargetRow.claim_generation == claim.generation,
        TargetRow.claimed_until > _DbTime(0.0),
    )


def _check_held(session: Session, claim: Claim, *, doing: str) -> None:
    """Raise ``ClaimLost`` saying why, if the row no longer carries a live ``claim``."""
    row = session.execute(
        select(
            TargetRow.claimed_by,
            TargetRow.claim_generation,
            TargetRow.claimed_until < _DbTime(0.0),
        ).where(TargetRow.id == claim.target_id)
    ).one_or_none()
    if row is None:
        return  # the target itself is gone: the caller reports that
    owner, generation, expired = row
    if owner == claim.owner and generation == claim.generation and not expired:
        return
    if owner == claim.owner and generation == claim.generation:
        why = "it expired"
    elif owner is None:
        why = "it was released"
    else:
        why = f"{owner} holds generation {generation} now"
    raise ClaimLost(
        f"target {claim.target_id}: not allowed to {doing}: claim generation "
        f"{claim.generation} of {claim.owner} is gone ({why})"
    )


class _DbTime(expression.FunctionElement[datetime]):
    """The database's current UTC time plus ``seconds``, as the naive UTC the columns hold.

    SQLite: text in SQLAlchemy's storage format (microseconds, so text order is time order).
    PostgreSQL: ``clock_timestamp()`` in UTC, whatever the session's TimeZone.
    """

    type = DateTime()
    name = "maint_db_time"
    inherit_cache = True

    def __init__(self, seconds: float) -> None:
        super().__init__(literal(seconds, Float()))


@compiles(_DbTime, "sqlite")
def _db_time_sqlite(element: _DbTime, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.6f seconds', {seconds})) || '000')"


@compiles(_DbTime, "postgresql")
def _db_time_postgresql(element: _DbTime, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"((clock_timestamp() AT TIME ZONE 'UTC') + make_interval(secs => {seconds}))"


def _next_marker(session: Session) -> datetime:
    """The next value of the change marker (``notices.updated_at``), in this transaction.

    The database's clock, not the writer's: a CLI whose clock is behind the newest marker would
    not move ``max(updated_at)``, and the scheduler would see its intent only at its next poll.
    And at least a microsecond past the newest marker, so it moves even when two writes share
    a clock tick or the database's clock steps back. Taken under one lock until commit
    (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE`` serialises writers anyway), so
    markers are committed in the order of their values and a poll never skips one.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_MARKER_LOCK)))
    now, newest = session.execute(select(_DbTime(0.0), func.max(NoticeRow.updated_at))).one()
    now = now.replace(tzinfo=UTC)
    if newest is not None and now <= newest:
        return newest + timedelta(microseconds=1)
    return now


def _lock_services(session: Session, refs: Collection[ServiceRef]) -> None:
    """PostgreSQL: a transaction-scoped advisory lock per Service, in one global order (no
    deadlock between two notices naming the same Services in another order). Released at
    commit or rollback. Other databases: nothing (SQLite serialises whole transactions)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({_lock_key(ref) for ref in refs}):
        session.execute(select(func.pg_advisory_xact_lock(key)))


def _lock_key(ref: ServiceRef) -> int:
    """A stable signed 64-bit key (Python's ``hash`` changes between processes)."""
    return _key(f"maint/notice-overlap/{ref.namespace}/{ref.name}")


def _key(name: str) -> int:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_MARKER_LOCK = _key("maint/change-marker")


def _overlapping(
    session: Session,
    ref: ServiceRef,
    start: datetime,
    end: datetime,
    *,
    exclude: int | None = None,
) -> int | None:
    live = [
        s.value for s in TargetState if s not in (TargetState.CANCELLED, TargetState.ROLLED_BACK)
    ]
    return session.scalar(
        select(NoticeRow.id)
        .join(TargetRow)
        .where(
            NoticeRow.id != (exclude if exclude is not None else -1),
            TargetRow.namespace == ref.namespace,
            TargetRow.service == ref.name,
            TargetRow.state.in_(live),
            NoticeRow.maintenance.is_(True),
            NoticeRow.cancelled_at.is_(None),
            NoticeRow.start_at < end,
            NoticeRow.end_at > start,
        )
        .limit(1)
    )


def _event_row(event_: Event) -> EventRow:
    return EventRow(
        notice_id=event_.notice_id,
        target=event_.target,
        at=event_.at,
        step=event_.step,
        outcome=event_.outcome,
        detail=event_.detail[:4000],
    )


def _target(row: TargetRow) -> Target:
    return Target(
        id=row.id,
        notice_id=row.notice_id,
        ref=ServiceRef(namespace=row.namespace, name=row.service),
        state=TargetState(row.state),
        image=row.image,
        pod=row.pod,
        revision=row.revision,
        original_selector=json.loads(row.original_selector) if row.original_selector else None,
        actual_start=row.actual_start,
        actual_end=row.actual_end,
        forced=bool(row.forced),
        paused=json.loads(row.paused) if row.paused else None,
    )


def _notice(row: NoticeRow) -> Notice:
    return Notice(
        id=row.id,
        title=row.title,
        reason=row.reason,
        lang=row.lang,
        maintenance=row.maintenance,
        start=row.start_at,
        end=row.end_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cancelled_at=row.cancelled_at,
        targets=tuple(_target(t) for t in row.targets),
        display_zone=row.display_zone,
        pause_reconcilers=bool(row.pause_reconcilers),
        bypass_salt=row.bypass_salt,
    )
