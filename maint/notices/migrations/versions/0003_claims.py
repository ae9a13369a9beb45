"""A claim generation on every target: fencing for replicas that lost their claim.

Each new claim increments ``targets.claim_generation``; a state transition and an event are
written only while the row still carries the claimant's owner and generation and an expiry in
the future by the database's clock. Existing rows start at generation 0.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "targets",
        sa.Column("claim_generation", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("claim_generation")
