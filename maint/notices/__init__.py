"""Notices, their targets and the event log: validation, storage (the only SQLAlchemy user)."""

from maint.notices.store import POOL_LOGGER, Claim, DatabaseLimits, NoticeStore, TargetUpdate
from maint.notices.types import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    Event,
    NewNotice,
    Notice,
    ServiceRef,
    Target,
    TargetState,
    WorkItem,
)
from maint.notices.validation import new_notice, parse_time

__all__ = [
    "IN_FLIGHT_STATES",
    "POOL_LOGGER",
    "TERMINAL_STATES",
    "Claim",
    "DatabaseLimits",
    "Event",
    "NewNotice",
    "Notice",
    "NoticeStore",
    "ServiceRef",
    "Target",
    "TargetState",
    "TargetUpdate",
    "WorkItem",
    "new_notice",
    "parse_time",
]
