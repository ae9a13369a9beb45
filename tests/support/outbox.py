"""What the outbox of webhook notifications holds, read straight from the database: only
tests ask (the runner claims one due notification at a time, ``Outbox.claim``)."""

from __future__ import annotations

import sqlalchemy as sa

from maint.notices.models import NotificationRow


def deliveries(database_url: str, notice_id: int) -> list[tuple[str, str, str, bool]]:
    """(channel, target, kind, sent) of each notification of a notice, in order."""
    n = NotificationRow
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(n.channel, n.target, n.kind, n.sent_at.is_not(None))
                .where(n.notice_id == notice_id)
                .order_by(n.id)
            ).all()
    finally:
        engine.dispose()
    return [(channel, target, kind, bool(sent)) for channel, target, kind, sent in rows]
