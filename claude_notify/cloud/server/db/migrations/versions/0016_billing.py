"""Self-serve billing: each account's Stripe customer and derived plan, the ledger of Stripe
events (each id once) and the audit of plan changes.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "billing_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("current_period_end", _WHEN, nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("grace_until", _WHEN, nullable=True),
        sa.Column("pro_until", _WHEN, nullable=True),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("synced_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_billing_accounts")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_billing_accounts_customer_id")),
    )
    op.create_index(op.f("ix_billing_accounts_pro_until"), "billing_accounts", ["pro_until"],
                    unique=False)
    op.create_table(
        "billing_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=True),
        sa.Column("received_at", _WHEN, nullable=False),
        sa.Column("processed_at", _WHEN, nullable=True),
        sa.Column("claimed_until", _WHEN, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_billing_events")),
    )
    op.create_index(op.f("ix_billing_events_processed_at"), "billing_events", ["processed_at"],
                    unique=False)
    op.create_table(
        "billing_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("cause", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_changes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_changes")),
    )
    op.create_index(op.f("ix_billing_changes_user_id"), "billing_changes", ["user_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_billing_changes_user_id"), table_name="billing_changes")
    op.drop_table("billing_changes")
    op.drop_index(op.f("ix_billing_events_processed_at"), table_name="billing_events")
    op.drop_table("billing_events")
    op.drop_index(op.f("ix_billing_accounts_pro_until"), table_name="billing_accounts")
    op.drop_table("billing_accounts")
