"""What a sign-in's approval page shows and checks: the requesting machine's name, the code the
CLI printed (as SHA-256) and how many wrong codes were typed for it. And an index on
``api_tokens.revoked_at``: each API replica looks for tokens revoked in the last seconds, to close
their agents' connections.

Requests made before this revision have no code; they cannot be approved and simply expire.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("machine_name", sa.String(length=100), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("user_code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("code_failures", sa.Integer(), nullable=False,
                                      server_default="0"))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_api_tokens_revoked_at", ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_api_tokens_revoked_at")
    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.drop_column("code_failures")
        batch_op.drop_column("user_code_hash")
        batch_op.drop_column("machine_name")
