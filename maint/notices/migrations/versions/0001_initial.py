"""Notices, targets and the append-only event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from maint.notices.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notices"),
    )
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("image", sa.String(512), nullable=True),
        sa.Column("pod", sa.String(253), nullable=True),
        sa.Column("revision", sa.String(16), nullable=True),
        sa.Column("original_selector", sa.Text(), nullable=True),
        sa.Column("actual_start", UTCDateTime(), nullable=True),
        sa.Column("actual_end", UTCDateTime(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], name="fk_targets_notice_id_notices"),
    )
    op.create_index("ix_targets_notice_id", "targets", ["notice_id"])
    op.create_index("ix_targets_state_due", "targets", ["state", "due_at"])
    op.create_index("ix_targets_service", "targets", ["namespace", "service"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], name="fk_events_notice_id_notices"),
    )
    op.create_index("ix_events_notice_id", "events", ["notice_id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("targets")
    op.drop_table("notices")
