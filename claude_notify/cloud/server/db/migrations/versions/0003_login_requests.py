"""Device-code sign-in requests; sign-in e-mails may precede an account.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_requests")),
        sa.UniqueConstraint("device_hash", name=op.f("uq_login_requests_device_hash")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_login_requests_link_hash")),
    )
    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_requests_client_ip"), ["client_ip"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_login_requests_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_login_requests_email"), ["email"], unique=False)

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Uuid(), nullable=False)

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_requests_email"))
        batch_op.drop_index(batch_op.f("ix_login_requests_created_at"))
        batch_op.drop_index(batch_op.f("ix_login_requests_client_ip"))

    op.drop_table("login_requests")
