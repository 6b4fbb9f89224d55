"""GitHub sign-in for the web app: the flows it started and the accounts it links.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_oauth_states",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_oauth_states")),
        sa.UniqueConstraint("browser_hash", name=op.f("uq_web_oauth_states_browser_hash")),
    )
    for column in ("client_ip", "created_at"):
        op.create_index(op.f(f"ix_web_oauth_states_{column}"), "web_oauth_states", [column],
                        unique=False)
    op.create_table(
        "web_identities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_web_identities_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_identities")),
        sa.UniqueConstraint("provider", "subject",
                            name=op.f("uq_web_identities_provider_subject")),
    )
    op.create_index(op.f("ix_web_identities_user_id"), "web_identities", ["user_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_identities_user_id"), table_name="web_identities")
    op.drop_table("web_identities")
    for column in ("client_ip", "created_at"):
        op.drop_index(op.f(f"ix_web_oauth_states_{column}"), table_name="web_oauth_states")
    op.drop_table("web_oauth_states")
