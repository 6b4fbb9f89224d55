"""Approval links: the hashed single-use key of a permission request's e-mailed link.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approval_links",
        sa.Column("approval_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("used_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["approval_id"], ["approvals.id"], ondelete="CASCADE",
                                name=op.f("fk_approval_links_approval_id_approvals")),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_approval_links")),
    )


def downgrade() -> None:
    op.drop_table("approval_links")
