"""The event-log line of an observer that tells others (webhooks, Alertmanager's silences).

Such an observer runs on a thread of its own, off every step's path: its own outcome (a
silence created, a notification given up) is written to the event log when the database lets
it, and only logged when it does not; it never fails the observer, which tries again anyway.
"""

from __future__ import annotations

import logging
from datetime import datetime

from maint.errors import MaintError
from maint.notices import Event, NoticeStore

log = logging.getLogger(__name__)


def record(
    store: NoticeStore,
    *,
    at: datetime,
    notice_id: int,
    target: str,
    step: str,
    outcome: str,
    detail: str,
) -> None:
    """Append the event; a database error is logged (with the line that was lost), not raised."""
    event = Event(
        at=at, notice_id=notice_id, target=target, step=step, outcome=outcome, detail=detail
    )
    try:
        store.record(event)
    except MaintError as e:
        log.warning(
            "%s %s of notice %s %s not recorded: %s (%s)",
            step,
            outcome,
            notice_id,
            target,
            e,
            detail,
        )
