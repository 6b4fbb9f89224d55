"""Channels: add, list, read, update, delete, send a test, and verify a recipient. The rules
are in :mod:`claude_notify.cloud.server.channels.manage`, shared with the web app."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from claude_notify.cloud.server.api.deps import (
    ChannelWriter,
    RuntimeDep,
    SessionDep,
    TaskReader,
)
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels import catalog, manage
from claude_notify.cloud.server.db.models import Channel

router = APIRouter(tags=["channels"])


class Rules(StrictBody):
    """When the channel fires; see ``claude_notify.cloud.server.channels.catalog.TRIGGERS``."""

    on: list[str] = Field(default_factory=lambda: ["finished"], min_length=1, max_length=5)
    regex: str | None = Field(default=None, max_length=catalog.MAX_REGEX_CHARS)

    @model_validator(mode="after")
    def _valid(self) -> Rules:
        checked = catalog.validate_rules(self.model_dump())
        self.on, self.regex = checked["on"], checked["regex"]
        return self


class ChannelIn(StrictBody):
    type: str = Field(max_length=16, description="email, webhook, telegram (tg), discord, …")
    name: str = Field(default="", max_length=100)
    config: dict[str, Any]
    rules: Rules = Field(default_factory=Rules)
    personal: bool | None = Field(
        default=None, description="Only yours (default for a member) rather than the workspace's "
                                  "(default for its owner and admins)")

    @model_validator(mode="after")
    def _alias(self) -> ChannelIn:
        # Whether the type exists is the server's to say (its plugins): manage.create checks.
        self.type = catalog.ALIASES.get(self.type.lower(), self.type.lower())
        return self


class ChannelPatch(StrictBody):
    name: str | None = Field(default=None, max_length=100)
    config: dict[str, Any] | None = None
    rules: Rules | None = None
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: uuid.UUID
    type: str
    name: str
    config: dict[str, Any]
    rules: dict[str, Any]
    enabled: bool
    disabled_reason: str | None
    verified: bool
    personal: bool
    created_at: datetime

    @classmethod
    def of(cls, channel: Channel, *, reveal: bool = False) -> ChannelOut:
        """The channel as the API shows it; its signing secret only when ``reveal`` (at creation
        and rotation: a secret shown on every read is one any token holder can copy)."""
        config = channel.config if reveal else catalog.shown(channel.type, channel.config)
        return cls(
            id=channel.id,
            type=channel.type,
            name=channel.name,
            config=config,
            rules=channel.rules,
            enabled=channel.enabled,
            disabled_reason=channel.disabled_reason,
            verified=manage.is_verified(channel),
            personal=channel.personal,
            created_at=channel.created_at,
        )


class Queued(BaseModel):
    notification_id: uuid.UUID


class VerifyIn(StrictBody):
    code: str = Field(min_length=1, max_length=200)


@router.post("/v1/channels", status_code=201, summary="Add a channel")
def create_channel(
    body: ChannelIn, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> ChannelOut:
    channel = manage.create(session, runtime, who=caller, kind=body.type, name=body.name,
                            config=body.config, rules_=body.rules.model_dump(),
                            personal=body.personal)
    return ChannelOut.of(channel, reveal=True)


@router.get("/v1/channels", summary="List channels")
def list_channels(caller: TaskReader, session: SessionDep) -> list[ChannelOut]:
    rows = session.scalars(
        select(Channel)
        .where(manage.visible(caller))
        .order_by(Channel.created_at, Channel.id)
    )
    return [ChannelOut.of(c) for c in rows]


@router.get("/v1/channels/{channel_id}", summary="One channel")
def get_channel(channel_id: uuid.UUID, caller: TaskReader, session: SessionDep) -> ChannelOut:
    return ChannelOut.of(manage.owned(session, caller, channel_id, change=False))


@router.patch("/v1/channels/{channel_id}", summary="Update a channel")
def update_channel(
    channel_id: uuid.UUID,
    body: ChannelPatch,
    caller: ChannelWriter,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ChannelOut:
    channel = manage.owned(session, caller, channel_id)
    manage.update(session, runtime, channel, name=body.name, config=body.config,
                  rules_=body.rules.model_dump() if body.rules else None, enabled=body.enabled,
                  who=caller)
    return ChannelOut.of(channel)


@router.delete("/v1/channels/{channel_id}", status_code=204, summary="Delete a channel")
def delete_channel(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> Response:
    manage.delete(session, caller, manage.owned(session, caller, channel_id))
    return Response(status_code=204)


@router.post("/v1/channels/{channel_id}/rotate-secret", summary="Replace a webhook's secret")
def rotate_secret(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> ChannelOut:
    """A new Standard Webhooks secret, shown in this answer only; the old one stops at once."""
    channel = manage.rotate_secret(session, manage.owned(session, caller, channel_id))
    return ChannelOut.of(channel, reveal=True)


@router.post("/v1/channels/{channel_id}/test", status_code=202, summary="Send a test message")
def test_channel(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> Queued:
    channel = manage.owned(session, caller, channel_id)
    return Queued(notification_id=manage.send_test(session, runtime, caller.plan, channel))


@router.post(
    "/v1/channels/{channel_id}/verification", status_code=202, summary="Re-send the confirmation"
)
def resend_verification(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> Response:
    manage.resend_verification(session, runtime,
                               manage.owned(session, caller, channel_id))
    return Response(status_code=202)


@router.post("/v1/channels/{channel_id}/verify", summary="Confirm a recipient with its code")
def verify_with_code(
    channel_id: uuid.UUID, body: VerifyIn, caller: ChannelWriter, session: SessionDep
) -> ChannelOut:
    channel = manage.owned(session, caller, channel_id)
    if not manage.consume(channel, body.code):
        raise ApiError(422, "the code is wrong or has expired", code="invalid_code")
    session.commit()
    return ChannelOut.of(channel)


@router.get("/v1/verify", summary="Confirm a recipient from an e-mailed link (no token needed)")
def verify_with_link(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: SessionDep
) -> dict[str, Any]:
    """Links mailed before the web app open ``/app/verify``; this stays for API clients."""
    channel = manage.by_link_secret(session, token)
    if channel is None or not manage.consume(channel, token):
        raise ApiError(404, "this link is unknown, used or expired", code="not_found")
    session.commit()
    return {"verified": True, "channel_id": str(channel.id)}
