"""Inbound provider requests already handled: a redelivered Feishu event or a replayed Discord
interaction runs nothing twice, whichever API replica it reaches.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_inbound_seen",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "external_id"),
    )
    op.create_index("ix_relay_inbound_seen_seen_at", "relay_inbound_seen", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_relay_inbound_seen_seen_at", table_name="relay_inbound_seen")
    op.drop_table("relay_inbound_seen")
