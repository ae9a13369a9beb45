"""The event-log line of an observer that tells others (webhooks, Alertmanager's silences).

Such an observer runs on a thread of its own, off every step's path: its own outcome (a
silence created, a notification given up) is written to the event log when the database lets
it, and only logged when it does not; it never fails the observer, which tries again anyway.
"""

from __future__ import annotations

import logging

from maint.errors import MaintError
from maint.notices import Event, NoticeStore

log = logging.getLogger(__name__)


def record(store: NoticeStore, event: Event) -> None:
    """Append ``event``; a database error is logged (with the line that was lost), not raised."""
    try:
        store.record(event)
    except MaintError as e:
        log.warning(
            "%s %s of notice %s %s not recorded: %s (%s)",
            event.step,
            event.outcome,
            event.notice_id,
            event.target,
            e,
            event.detail,
        )
