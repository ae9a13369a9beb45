"""An index on ``notices.updated_at``: the change marker the scheduler polls.

Every operator intent (cancel, end, extend) and every new notice moves ``updated_at``;
``max(updated_at)`` read from this index costs one index probe however many notices exist, so
``maint run`` can look every half second and act on an intent within a second.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notices_updated_at", "notices", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_notices_updated_at", table_name="notices")
