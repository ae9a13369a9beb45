"""The engineers' bypass: ``notices.bypass_salt``.

A random, non-secret salt per notice registered with ``--bypass``; the link token and the cookie
key are derived from it under ``MAINT_BYPASS_KEY`` (``maint.page.bypass``), so nothing secret is
stored. NULL, as for every notice stored before this revision: no bypass.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notices", sa.Column("bypass_salt", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("bypass_salt")
