"""Relay commands have a kind: a shell command, or a reply that continues a Claude Code session.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relay_commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False,
                                      server_default="shell"))


def downgrade() -> None:
    with op.batch_alter_table("relay_commands", schema=None) as batch_op:
        batch_op.drop_column("kind")
