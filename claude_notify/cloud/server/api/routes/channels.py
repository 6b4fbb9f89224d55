"""Channels: add, list, read, update, delete, send a test, and verify a recipient.

An e-mail channel receives nothing until its owner opens the one-time link (or posts the code)
sent to the address: the service cannot be used to mail strangers. The verification message
goes through the outbox like any other, so it is retried too.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import limits, outbox, quota
from claude_notify.cloud.server.api.deps import (
    ChannelWriter,
    Principal,
    RuntimeDep,
    SessionDep,
    TaskReader,
)
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.routes import linking
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels import catalog
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel, Delivery, User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

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

    @model_validator(mode="after")
    def _known_type(self) -> ChannelIn:
        self.type = catalog.normalise_type(self.type)
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
    created_at: datetime

    @classmethod
    def of(cls, channel: Channel, *, reveal: bool = False) -> ChannelOut:
        """The channel as the API shows it; its signing secret only when ``reveal`` (at creation
        and rotation: a secret shown on every read is one any token holder can copy)."""
        config = channel.config if reveal else {
            k: v for k, v in channel.config.items() if k not in catalog.SECRET_KEYS}
        return cls(
            id=channel.id,
            type=channel.type,
            name=channel.name,
            config=config,
            rules=channel.rules,
            enabled=channel.enabled,
            disabled_reason=channel.disabled_reason,
            verified=channel.verified_at is not None
            or channel.type not in catalog.NEEDS_VERIFICATION,
            created_at=channel.created_at,
        )


class Queued(BaseModel):
    notification_id: uuid.UUID


class VerifyIn(StrictBody):
    code: str = Field(min_length=1, max_length=200)


def _config(runtime: Runtime, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return catalog.validate_config(
            kind, config, allow_private=runtime.settings.webhook_allow_private
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _owned(session: Session, caller: Principal, channel_id: uuid.UUID) -> Channel:
    channel = session.scalar(
        select(Channel).where(Channel.id == channel_id, Channel.user_id == caller.user_id)
    )
    if channel is None:
        raise not_found("channel")
    return channel


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _start_verification(session: Session, runtime: Runtime, channel: Channel) -> None:
    """Queue the one-time link; only its hash is stored."""
    if limits.reached(session, runtime.settings.verifications_per_hour, 3600.0,
                      Delivery.created_at, Delivery.user_id == channel.user_id,
                      Delivery.kind == outbox.VERIFY):
        raise ApiError(
            429, "too many confirmation messages this hour", headers={"Retry-After": "3600"}
        )
    if channel.type != "email":  # a code by SMS, or a Telegram /start code
        linking.start(session, runtime, channel)
        return
    secret = secrets.token_urlsafe(24)
    channel.verified_at = None
    channel.verify_hash = _hash(secret)
    channel.verify_expires_at = utcnow() + timedelta(seconds=runtime.settings.verification_ttl_s)
    link = f"{runtime.settings.public_url.rstrip('/')}/v1/verify?token={secret}"
    text = (
        "Someone asked claude-notify to send task notifications to this address.\n\n"
        f"If it was you, confirm by opening {link} or by entering the code {secret}.\n\n"
        "If not, ignore this message: nothing will be sent."
    )
    outbox.queue(session, channel, outbox.VERIFY,
                 render_simple("Confirm your claude-notify address", text, link))


def _check_plan(runtime: Runtime, caller: Principal, kind: str) -> None:
    """403 with the reason a real event would be refused with ("the free plan sends e-mail
    only; webhook needs pro")."""
    refused = quota.limits(caller.plan, kind, runtime.settings)
    if isinstance(refused, str):
        raise ApiError(403, refused, code="plan_refused")


def _check_usable(runtime: Runtime, caller: Principal, kind: str) -> None:
    """Refuse a channel this account's plan, or this server, cannot send through: made anyway,
    it would only collect refusals (the plan's reason is the one real events get)."""
    _check_plan(runtime, caller, kind)
    if kind == "telegram" and not runtime.settings.telegram_bot_token:
        raise ApiError(422, "this server has no Telegram bot: its operator has not set "
                            "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN", code="not_configured")


def _check_room(session: Session, user_id: uuid.UUID, limit: int) -> None:
    """Refuse a channel past the account's limit; the user's row is locked first, so two
    concurrent requests cannot both take the last place."""
    session.get(User, user_id, with_for_update=True)
    count = session.scalar(select(func.count()).where(Channel.user_id == user_id))
    if (count or 0) >= limit:
        raise ApiError(403, f"an account has at most {limit} channels; delete one first")


@router.post("/v1/channels", status_code=201, summary="Add a channel")
def create_channel(
    body: ChannelIn, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> ChannelOut:
    _check_usable(runtime, caller, body.type)
    _check_room(session, caller.user_id, runtime.settings.max_channels_per_user)
    channel = Channel(
        id=uuid.uuid4(),
        user_id=caller.user_id,
        type=body.type,
        name=body.name,
        config=_config(runtime, body.type, body.config),
        rules=body.rules.model_dump(),
        enabled=True,
    )
    session.add(channel)
    session.flush()
    if channel.type in catalog.NEEDS_VERIFICATION:
        _start_verification(session, runtime, channel)
    session.commit()
    runtime.waker.wake()
    return ChannelOut.of(channel, reveal=True)


@router.get("/v1/channels", summary="List channels")
def list_channels(caller: TaskReader, session: SessionDep) -> list[ChannelOut]:
    rows = session.scalars(
        select(Channel)
        .where(Channel.user_id == caller.user_id)
        .order_by(Channel.created_at, Channel.id)
    )
    return [ChannelOut.of(c) for c in rows]


@router.get("/v1/channels/{channel_id}", summary="One channel")
def get_channel(channel_id: uuid.UUID, caller: TaskReader, session: SessionDep) -> ChannelOut:
    return ChannelOut.of(_owned(session, caller, channel_id))


@router.patch("/v1/channels/{channel_id}", summary="Update a channel")
def update_channel(
    channel_id: uuid.UUID,
    body: ChannelPatch,
    caller: ChannelWriter,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ChannelOut:
    channel = _owned(session, caller, channel_id)
    if body.name is not None:
        channel.name = body.name
    if body.rules is not None:
        channel.rules = body.rules.model_dump()
    if body.enabled is not None:
        channel.enabled = body.enabled
        channel.disabled_reason = None if body.enabled else "by its owner"
    if body.config is not None:
        # A secret left out is kept: reads never show it, so it cannot be sent back.
        asked = catalog.keep_secret(channel.config, body.config)
        config = catalog.carry_over(channel.config, _config(runtime, channel.type, asked))
        changed = catalog.recipient(config) != catalog.recipient(channel.config)
        channel.config = config
        if changed and channel.type in catalog.NEEDS_VERIFICATION:
            _start_verification(session, runtime, channel)
    session.commit()
    runtime.waker.wake()
    return ChannelOut.of(channel)


@router.delete("/v1/channels/{channel_id}", status_code=204, summary="Delete a channel")
def delete_channel(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> Response:
    session.delete(_owned(session, caller, channel_id))
    session.commit()
    return Response(status_code=204)


@router.post("/v1/channels/{channel_id}/rotate-secret", summary="Replace a webhook's secret")
def rotate_secret(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> ChannelOut:
    """A new Standard Webhooks secret, shown in this answer only; the old one stops at once."""
    channel = _owned(session, caller, channel_id)
    if channel.type != "webhook":
        raise ApiError(409, f"only a webhook channel has a signing secret made here; this is "
                            f"a {channel.type} channel")
    channel.config = {**channel.config, "secret": catalog.new_webhook_secret()}
    session.commit()
    return ChannelOut.of(channel, reveal=True)


@router.post("/v1/channels/{channel_id}/test", status_code=202, summary="Send a test message")
def test_channel(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> Queued:
    channel = _owned(session, caller, channel_id)
    if channel.type in catalog.NEEDS_VERIFICATION and channel.verified_at is None:
        raise ApiError(409, "recipient not verified yet: open the link sent to it first")
    _check_plan(runtime, caller, channel.type)  # as for an event: no way around the plan
    text = "This is a test message from claude-notify: this channel works."
    queued = outbox.queue(session, channel, outbox.TEST,
                          render_simple("claude-notify test message", text))
    session.commit()
    runtime.waker.wake()
    return Queued(notification_id=queued)


@router.post(
    "/v1/channels/{channel_id}/verification", status_code=202, summary="Re-send the confirmation"
)
def resend_verification(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> Response:
    channel = _owned(session, caller, channel_id)
    if channel.type not in catalog.NEEDS_VERIFICATION or channel.verified_at is not None:
        raise ApiError(409, "this channel needs no verification")
    _start_verification(session, runtime, channel)
    session.commit()
    runtime.waker.wake()
    return Response(status_code=202)


@router.post("/v1/channels/{channel_id}/verify", summary="Confirm a recipient with its code")
def verify_with_code(
    channel_id: uuid.UUID, body: VerifyIn, caller: ChannelWriter, session: SessionDep
) -> ChannelOut:
    channel = _owned(session, caller, channel_id)
    if not _consume(channel, body.code):
        raise ApiError(422, "the code is wrong or has expired", code="invalid_code")
    session.commit()
    return ChannelOut.of(channel)


@router.get("/v1/verify", summary="Confirm a recipient from the e-mailed link (no token needed)")
def verify_with_link(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: SessionDep
) -> dict[str, Any]:
    channel = session.scalar(select(Channel).where(Channel.verify_hash == _hash(token)))
    if channel is None or not _consume(channel, token):
        raise ApiError(404, "this link is unknown, used or expired", code="not_found")
    session.commit()
    return {"verified": True, "channel_id": str(channel.id)}


def _consume(channel: Channel, secret: str) -> bool:
    """Mark verified if ``secret`` is the channel's live one-time secret; it works once."""
    expires = channel.verify_expires_at
    if channel.verify_hash is None or expires is None or expires <= utcnow():
        return False
    if not secrets.compare_digest(channel.verify_hash, _hash(secret)):
        return False
    channel.verified_at = utcnow()
    channel.verify_hash = None
    channel.verify_expires_at = None
    return True
