"""``/v1/account``: who the token belongs to, and the time zone that decides the quota day."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from pydantic import BaseModel, Field

from claude_notify.cloud.server.api.deps import ChannelWriter, SessionDep, TaskReader
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.db.models import User

router = APIRouter(tags=["account"])


class AccountOut(BaseModel):
    email: str
    plan: str
    timezone: str
    scopes: list[str]
    """What the calling token may do."""


class AccountPatch(StrictBody):
    timezone: str = Field(
        min_length=1, max_length=64, description="An IANA zone, e.g. Asia/Shanghai"
    )


@router.get("/v1/account", summary="The account behind this token")
def get_account(caller: TaskReader) -> AccountOut:
    return AccountOut(
        email=caller.email, plan=caller.plan, timezone=caller.timezone, scopes=sorted(caller.scopes)
    )


@router.patch("/v1/account", summary="Set the time zone whose midnight resets the daily quota")
def update_account(body: AccountPatch, caller: ChannelWriter, session: SessionDep) -> AccountOut:
    try:
        ZoneInfo(body.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(422, f"unknown time zone {body.timezone!r}") from None
    user = session.get(User, caller.user_id)
    if user is None:
        raise ApiError(401, "invalid, expired or revoked token")
    user.timezone = body.timezone
    session.commit()
    return AccountOut(
        email=user.email, plan=user.plan, timezone=user.timezone, scopes=sorted(caller.scopes)
    )
