"""The zone a notice's page shows times in: ``notices.display_zone``.

An IANA name (``--timezone Asia/Seoul``) or the fixed offset ``--start`` was written with
(``+09:00``). NULL, as for every notice stored before this revision, means the runner's
``MAINT_DISPLAY_TIMEZONE``, so existing pages keep their revision and are not rebuilt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notices", sa.Column("display_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("display_zone")
