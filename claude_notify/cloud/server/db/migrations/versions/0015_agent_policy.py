"""``relay_agents.policy``: what an agent said it may run when it last connected (its
allow-list, deny-list, directories and whether Claude replies are on), for its owner to read on
the web app. Only shown: the agent enforces it on the machine.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("relay_agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("relay_agents", schema=None) as batch_op:
        batch_op.drop_column("policy")
