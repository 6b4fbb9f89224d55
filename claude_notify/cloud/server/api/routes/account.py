"""``/v1/account``: who the token belongs to, and the time zone that decides the quota day."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from claude_notify.cloud.server.api.deps import ChannelWriter, SessionDep, TaskReader
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.db.models import Role, User, Workspace, WorkspaceMember

router = APIRouter(tags=["account"])


class AccountOut(BaseModel):
    email: str
    plan: str
    """The workspace's."""
    timezone: str
    """The zone whose midnight resets the workspace's daily quota."""
    workspace_id: uuid.UUID
    role: str
    """The caller's role in the workspace their token acts in."""
    scopes: list[str]
    """What the calling token may do."""


class AccountPatch(StrictBody):
    timezone: str = Field(
        min_length=1, max_length=64, description="An IANA zone, e.g. Asia/Shanghai"
    )


@router.get("/v1/account", summary="The account behind this token")
def get_account(caller: TaskReader) -> AccountOut:
    return AccountOut(
        email=caller.email, plan=caller.plan, timezone=caller.timezone,
        workspace_id=caller.workspace_id, role=caller.role, scopes=sorted(caller.scopes)
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
    owned = select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == user.id,
                                                        WorkspaceMember.role == Role.OWNER)
    # The quota day of what they own follows its owner's clock.
    session.execute(update(Workspace).where(Workspace.id.in_(owned))
                    .values(timezone=body.timezone))
    session.commit()
    return AccountOut(
        email=user.email, plan=caller.plan, timezone=user.timezone,
        workspace_id=caller.workspace_id, role=caller.role, scopes=sorted(caller.scopes)
    )
