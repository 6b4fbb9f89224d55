"""A channel found by the id its inbound messages carry.

A Telegram reply names its chat; a Discord or Feishu slash command names the linked sender.
``channels.inbound_key`` holds that value from the channel's config, indexed with the type, so
an inbound message no longer reads every channel of its type to find its own.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEYS = {"telegram": "chat_id", "discord": "discord_user_id", "feishu": "feishu_open_id"}
"""As ``models.INBOUND_KEYS`` was when this revision was written."""


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbound_key", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_channels_inbound", ["type", "inbound_key"])
    channels = sa.table(
        "channels",
        sa.column("id", sa.Uuid()),
        sa.column("type", sa.String()),
        sa.column("config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.column("inbound_key", sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(channels.c.id, channels.c.type, channels.c.config)
                        .where(channels.c.type.in_(_KEYS))).all()
    keyed = []
    for row_id, kind, config in rows:
        value = (config or {}).get(_KEYS[kind])
        if value is not None and not isinstance(value, bool):
            keyed.append({"b_id": row_id, "b_key": str(value)[:128]})
    if keyed:
        bind.execute(channels.update().where(channels.c.id == sa.bindparam("b_id"))
                     .values(inbound_key=sa.bindparam("b_key")), keyed)


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index("ix_channels_inbound")
        batch_op.drop_column("inbound_key")
