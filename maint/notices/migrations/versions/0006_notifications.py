"""Webhook notifications and the sweep's heartbeat: ``notifications`` and ``sweeps``.

``notifications`` is the outbox of webhook notifications: one row per webhook and milestone,
written in the transaction of the event that tells of the milestone, sent by whichever replica
holds its lease, unique per (webhook, notice, target, kind, once) so no milestone is queued
twice. ``sweeps`` holds, per replica, when its forced-restore sweep last completed (the
database's clock), which ``maint status`` reads. Both start empty: nothing already in the
event log is sent.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from maint.notices.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("once", sa.String(64), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_try_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("leased_by", sa.String(128), nullable=True),
        sa.Column("leased_until", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("gave_up_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name="fk_notifications_notice_id_notices"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_notifications_event_id_events"
        ),
        sa.UniqueConstraint(
            "channel", "notice_id", "target", "kind", "once", name="uq_notifications_once"
        ),
    )
    op.create_index("ix_notifications_notice_id", "notifications", ["notice_id"])
    op.create_index("ix_notifications_due", "notifications", ["channel", "next_try_at"])
    op.create_table(
        "sweeps",
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("replica", name="pk_sweeps"),
    )
    op.create_index("ix_sweeps_at", "sweeps", ["at"])


def downgrade() -> None:
    op.drop_table("sweeps")
    op.drop_table("notifications")
