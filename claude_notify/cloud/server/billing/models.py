"""Billing's tables: an account's Stripe customer and derived plan, the ledger of Stripe
events, and the audit of every plan change.

Imported by :mod:`claude_notify.cloud.server.db.models`, so they are part of ``Base.metadata``
wherever the other tables are. The server keeps no account-level audit log of its own, so plan
changes are recorded here, in ``billing_changes``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from claude_notify.cloud.server.db.models import Base
from claude_notify.events import utcnow


class BillingAccount(Base):
    """One workspace's Stripe customer and what was last derived from its subscriptions."""

    __tablename__ = "billing_accounts"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    """Made once per account, before its first Checkout, so every event maps by ``customer``."""
    subscription_id: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    """The chosen subscription's Stripe status; ``None`` before any."""
    current_period_end: Mapped[datetime | None] = mapped_column(default=None)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_until: Mapped[datetime | None] = mapped_column(default=None)
    """Set when a renewal first fails (``past_due``): Pro is kept until then."""
    pro_until: Mapped[datetime | None] = mapped_column(default=None, index=True)
    """When the Pro plan ends unless Stripe says otherwise (grace, or a canceled period's end):
    the hourly sweep moves accounts past it to free."""
    requested: Mapped[int] = mapped_column(Integer, default=0)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    """Re-reads started and the newest one applied: a re-read applies only if it started after
    the one already applied, so a slow, stale read cannot overwrite a newer one."""
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BillingEvent(Base):
    """The ledger: each Stripe event id once, and whether it was handled."""

    __tablename__ = "billing_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    customer_id: Mapped[str | None] = mapped_column(String(255), default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    """``None`` until handled; the sweep and ``billing-sync`` retry what stays ``None``."""
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    """A handler owns the event until then; a duplicate delivery meanwhile does nothing."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    """Why the last attempt failed, or why the event was ignored (redacted)."""


class BillingChange(Base):
    """The audit of plan and payment changes: what changed, when and because of what."""

    __tablename__ = "billing_changes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    change: Mapped[str] = mapped_column(String(32))
    """``pro``, ``free``, ``payment_failed``, ``payment_recovered``, ``cancel_scheduled``,
    ``cancel_withdrawn``."""
    plan: Mapped[str] = mapped_column(String(16))
    """The plan after the change."""
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    cause: Mapped[str] = mapped_column(String(255))
    """The Stripe event id, ``checkout-return``, ``billing-sync`` or ``clock``."""
