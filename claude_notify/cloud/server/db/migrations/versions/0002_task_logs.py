"""Task logs: encrypted chunks and per-task totals and digest.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_log_chunks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_log_chunks_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_task_log_chunks_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_log_chunks")),
        sa.UniqueConstraint("task_id", "seq", name=op.f("uq_task_log_chunks_task_id_seq")),
    )
    with op.batch_alter_table("task_log_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_log_chunks_user_id"), ["user_id"], unique=False)

    op.create_table(
        "task_logs",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_kept", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_logs_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_task_logs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_logs")),
    )
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_logs_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_logs_user_id"))

    op.drop_table("task_logs")
    with op.batch_alter_table("task_log_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_log_chunks_user_id"))

    op.drop_table("task_log_chunks")
