"""From what Stripe says about a customer's subscriptions to the plan: a pure function.

Never from an event's payload: events arrive late, twice and out of order (an ``updated`` before
its ``created``), so the caller re-reads the subscriptions and hands them here. The rules:

* ``active`` or ``trialing``: pro (ending at the period's end if cancellation is scheduled);
* ``past_due`` (a renewal failed): pro for the grace period from the first failure, then free;
* ``canceled``: pro until the end of the period already paid for, then free (never past a
  running grace);
* ``unpaid``: pro only while a grace from ``past_due`` runs;
* anything else (``incomplete``, ``incomplete_expired``, ``paused``, none): free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

_PAID = ("active", "trialing")


@dataclass(frozen=True, slots=True)
class Subscription:
    """The fields of a Stripe subscription the plan depends on."""

    id: str
    status: str
    created: int
    current_period_end: datetime | None
    cancel_at_period_end: bool

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> Subscription:
        """Read a subscription object; since API version 2025-03-31 the period lives on its
        items, before it on the subscription itself."""
        end = data.get("current_period_end")
        items = (data.get("items") or {}).get("data") or []
        ends = [i.get("current_period_end") for i in items if i.get("current_period_end")]
        if ends:
            end = max(ends)
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or ""),
            created=int(data.get("created") or 0),
            current_period_end=_at(end),
            cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        )


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What an account is owed now, and what the billing page says about it."""

    plan: str
    subscription: Subscription | None
    grace_until: datetime | None
    pro_until: datetime | None
    """When pro ends unless Stripe says otherwise; ``None``: it renews (or the plan is free)."""


def derive(subscriptions: Iterable[Subscription], *, now: datetime, grace: timedelta,
           grace_until: datetime | None) -> Entitlement:
    """The plan for these subscriptions at ``now``; ``grace_until`` is the grace already
    running (kept, so a second failed retry does not extend it)."""
    chosen = max(subscriptions, key=lambda s: (_rank(s, now), s.created), default=None)
    if chosen is None:
        return Entitlement("free", None, None, None)
    status, end = chosen.status, chosen.current_period_end
    if status in _PAID:
        until = end if chosen.cancel_at_period_end else None
        return Entitlement("pro" if until is None or until > now else "free", chosen, None, until)
    if status == "past_due":
        grace_until = grace_until or now + grace
        return Entitlement("pro" if now < grace_until else "free", chosen, grace_until,
                           grace_until)
    if status == "canceled":
        until = min((t for t in (end, grace_until) if t is not None), default=None)
    elif status == "unpaid":
        until = grace_until
    else:
        until = None
    pro = until is not None and until > now
    return Entitlement("pro" if pro else "free", chosen, grace_until, until if pro else None)


def _rank(sub: Subscription, now: datetime) -> int:
    """Prefer the subscription that entitles the most: a customer may hold several (two
    Checkouts paid in two tabs), and an old canceled one must not hide a live one."""
    if sub.status in _PAID:
        return 3
    if sub.status == "past_due":
        return 2
    end = sub.current_period_end
    return 1 if sub.status == "canceled" and end is not None and end > now else 0


def _at(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc)
