"""Spec §9, exactly: free is e-mail only, three a day; pro is unlimited but for 30 SMS a day.

A notification takes its slot when it is queued, in the event's transaction, with a conditional
``UPDATE … SET count = count + 1 WHERE count < limit``: the database serialises concurrent events
on the counter row, so a hundred simultaneous finishes of a free user yield exactly three e-mails.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server.db.models import Delivery, DeliveryStatus, UsageCounter
from claude_notify.cloud.server.db.ops import insert_ignore
from claude_notify.cloud.server.settings import Settings


def _zone(tz_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quota_day(now: datetime, tz_name: str) -> date:
    """The user's calendar day: quotas reset at midnight in their zone (UTC by default)."""
    return now.astimezone(_zone(tz_name)).date()


def limits(plan: str, channel_type: str, settings: Settings) -> dict[str, int | None] | str:
    """The counters a notification consumes, with their limits, or the reason it is refused."""
    if plan != "pro" and channel_type != "email":
        return f"the free plan sends e-mail only; {channel_type} needs pro"
    caps = {"all": settings.free_daily_notifications, "sms": settings.pro_daily_sms}
    return {kind: caps[kind] for kind in counters(plan, channel_type)}


def counters(plan: str, channel_type: str) -> tuple[str, ...]:
    """The counter rows a notification takes a slot in."""
    if plan != "pro":
        return ("all",) if channel_type == "email" else ()
    # Unlimited kinds take no counter: a per-user counter row every event must lock would
    # serialise a pro user's whole stream. What was sent is counted from the rows instead.
    return ("sms",) if channel_type == "sms" else ()


def take(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    plan: str,
    channel_type: str,
    day: date,
    settings: Settings,
) -> str | None:
    """Consume one notification of the workspace's quota; ``None`` if allowed, else the reason."""
    wanted = limits(plan, channel_type, settings)
    if isinstance(wanted, str):
        return wanted
    for kind, limit in wanted.items():
        if not _increment(session, workspace_id=workspace_id, day=day, kind=kind, limit=limit):
            what = "SMS fair-use limit" if kind == "sms" else "daily notification quota"
            return f"{what} of {limit} reached for {day.isoformat()}"
    return None


def _increment(
    session: Session, *, workspace_id: uuid.UUID, day: date, kind: str, limit: int | None
) -> bool:
    # UPDATE first: the row exists for all but the day's first notification, and an
    # INSERT … ON CONFLICT would queue behind every transaction holding the row's lock.
    if _bump(session, workspace_id=workspace_id, day=day, kind=kind, limit=limit):
        return True
    key = {"workspace_id": workspace_id, "day": day, "kind": kind}
    insert_ignore(session, UsageCounter, {**key, "count": 0}, ["workspace_id", "day", "kind"])
    return _bump(session, workspace_id=workspace_id, day=day, kind=kind, limit=limit)


def _bump(session: Session, *, workspace_id: uuid.UUID, day: date, kind: str,
          limit: int | None) -> bool:
    """``count += 1`` where still under ``limit``; ``False`` if at the limit or no row yet."""
    stmt = (
        update(UsageCounter)
        .where(UsageCounter.workspace_id == workspace_id, UsageCounter.day == day,
               UsageCounter.kind == kind)
        .values(count=UsageCounter.count + 1)
        .returning(UsageCounter.count)
    )
    if limit is not None:
        stmt = stmt.where(UsageCounter.count < limit)
    return session.execute(stmt).first() is not None


def refund(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    plan: str,
    channel_type: str,
    queued_at: datetime,
    tz_name: str,
) -> None:
    """Give back the slot of a notification that was never sent (it became a dead letter).

    The quota counts notifications sent: a bounced e-mail must not cost the day's third one.
    """
    wanted = counters(plan, channel_type)
    if not wanted:
        return
    day = quota_day(queued_at, tz_name)
    session.execute(
        update(UsageCounter)
        .where(UsageCounter.workspace_id == workspace_id, UsageCounter.day == day,
               UsageCounter.kind.in_(list(wanted)), UsageCounter.count > 0)
        .values(count=UsageCounter.count - 1)
    )


def usage(session: Session, *, workspace_id: uuid.UUID, day: date, tz_name: str) -> dict[str, int]:
    """Notifications queued or sent on the workspace's ``day`` (neither refused nor dead)."""
    zone = _zone(tz_name)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    rows = session.execute(
        select(Delivery.channel_type, func.count())
        .where(
            Delivery.workspace_id == workspace_id,
            Delivery.kind == "event",
            # neither was sent
            Delivery.status.not_in((DeliveryStatus.REJECTED, DeliveryStatus.DEAD)),
            Delivery.created_at >= start,
            Delivery.created_at < end,
        )
        .group_by(Delivery.channel_type)
    )
    by_type = dict(rows.all())
    return {"all": sum(by_type.values()), "sms": by_type.get("sms", 0)}
