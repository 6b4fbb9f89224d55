"""The SHA-256 of a task's whole output, as the machine that ran it saw it.

A log over the plan's cap keeps only its tail; the digest of everything is what remains of the
rest (spec §11: "only hash task logs > 10 MB").

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("output_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.drop_column("output_bytes")
        batch_op.drop_column("output_sha256")
