"""Reply tokens for the phone, and a notification found by its provider message id.

A reply to a Telegram message names the message id it replies to; ``(channel_id, provider_id)``
finds its notification without scanning the channel's history. A reply token lets a phone queue
a command for one session and nothing else; only its SHA-256 is stored.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _stamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_channel_provider", ["channel_id", "provider_id"])

    op.create_table(
        "relay_reply_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("machine_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=256), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _stamp("created_at", nullable=False),
        _stamp("expires_at", nullable=False),
        _stamp("last_used_at", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_relay_reply_tokens_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"],
                                name=op.f("fk_relay_reply_tokens_notification_id_notifications"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_reply_tokens")),
        sa.UniqueConstraint("notification_id",
                            name=op.f("uq_relay_reply_tokens_notification_id")),
    )
    with op.batch_alter_table("relay_reply_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relay_reply_tokens_user_id"), ["user_id"])
        batch_op.create_index("ix_relay_reply_tokens_expires", ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("relay_reply_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_reply_tokens_expires")
        batch_op.drop_index(batch_op.f("ix_relay_reply_tokens_user_id"))
    op.drop_table("relay_reply_tokens")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_channel_provider")
