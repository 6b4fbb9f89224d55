"""``tasks.source``: what sent a task's events (run, watch, shell, claude-code, relay), so the
web app's task list can filter by it. Tasks stored before stay ``NULL``: their events' payloads
are sealed, and a migration holds no log key to open them.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("source")
