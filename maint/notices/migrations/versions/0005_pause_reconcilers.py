"""Pausing Flux for a window: ``notices.pause_reconcilers`` and ``targets.paused``.

``pause_reconcilers``: the operator asked maint to set Flux's
``kustomize.toolkit.fluxcd.io/reconcile: disabled`` on each target Service for the window.
``paused``: what maint added, as JSON ``{annotation: value before the switch or null}``, written
in the same step as the switch and read back at restore, rollback and forced restore, so maint
removes exactly what it added. Rows stored before this revision: false and NULL (nothing paused).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notices",
        sa.Column("pause_reconcilers", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("targets", sa.Column("paused", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("paused")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("pause_reconcilers")
