"""The command relay: agents bound to machines, queued commands, the audit log.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _stamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "relay_audit",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("command_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("machine_id", sa.String(length=128), nullable=True),
        sa.Column("session_id", sa.String(length=256), nullable=True),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _stamp("created_at", nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_relay_audit_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_audit")),
    )
    with op.batch_alter_table("relay_audit", schema=None) as batch_op:
        batch_op.create_index("ix_relay_audit_user_created", ["user_id", "created_at"])

    op.create_table(
        "relay_commands",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("machine_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=256), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("cwd", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        _stamp("created_at", nullable=False),
        _stamp("expires_at", nullable=False),
        _stamp("delivered_at", nullable=True),
        _stamp("started_at", nullable=True),
        _stamp("finished_at", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_relay_commands_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_commands")),
    )
    with op.batch_alter_table("relay_commands", schema=None) as batch_op:
        batch_op.create_index("ix_relay_commands_route", ["user_id", "machine_id", "state"])
        batch_op.create_index("ix_relay_commands_user_created", ["user_id", "created_at"])

    op.create_table(
        "relay_agents",
        sa.Column("token_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("machine_id", sa.String(length=128), nullable=False),
        sa.Column("sessions", JSON, nullable=True),
        _stamp("created_at", nullable=False),
        _stamp("last_seen_at", nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"],
                                name=op.f("fk_relay_agents_token_id_api_tokens"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_relay_agents_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_relay_agents")),
    )
    with op.batch_alter_table("relay_agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relay_agents_user_id"), ["user_id"])


def downgrade() -> None:
    with op.batch_alter_table("relay_agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_agents_user_id"))
    op.drop_table("relay_agents")
    with op.batch_alter_table("relay_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_commands_user_created")
        batch_op.drop_index("ix_relay_commands_route")
    op.drop_table("relay_commands")
    with op.batch_alter_table("relay_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_audit_user_created")
    op.drop_table("relay_audit")
