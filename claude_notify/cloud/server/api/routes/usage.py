"""``GET /v1/usage``: today's counters against the plan's limits."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel

from claude_notify.cloud.server import quota
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep, TaskReader
from claude_notify.events import utcnow

router = APIRouter(tags=["usage"])


class UsageOut(BaseModel):
    email: str
    """The account's address (a machine logged in with an operator's token learns it here)."""
    plan: str
    day: date
    timezone: str
    notifications_sent: int
    notifications_limit: int | None
    sms_sent: int
    sms_limit: int | None
    channels_allowed: list[str]


def allowed_channels(plan: str) -> list[str]:
    """The channel types the plan sends through (spec §9: free is e-mail only)."""
    from claude_notify.cloud.server.channels.catalog import CHANNEL_TYPES

    return list(CHANNEL_TYPES) if plan == "pro" else ["email"]


@router.get("/v1/usage", summary="Today's usage and quota")
def get_usage(caller: TaskReader, session: SessionDep, runtime: RuntimeDep) -> UsageOut:
    s = runtime.settings
    day = quota.quota_day(utcnow(), caller.timezone)
    counts = quota.usage(session, workspace_id=caller.workspace_id, day=day,
                         tz_name=caller.timezone)
    pro = caller.plan == "pro"
    return UsageOut(
        email=caller.email,
        plan=caller.plan,
        day=day,
        timezone=caller.timezone,
        notifications_sent=counts.get("all", 0),
        notifications_limit=None if pro else s.free_daily_notifications,
        sms_sent=counts.get("sms", 0),
        sms_limit=s.pro_daily_sms if pro else 0,
        channels_allowed=allowed_channels(caller.plan),
    )
