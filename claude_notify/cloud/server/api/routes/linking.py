"""Confirming chat and SMS recipients: nothing is sent to one that has not been confirmed.

* **Telegram**: the user asks for a one-time code (``POST /v1/channels/{id}/link``) and sends
  ``/start CODE`` to the operator's bot (the ``t.me`` link does it in one tap). Telegram calls
  ``POST /v1/telegram/webhook`` (:mod:`~claude_notify.cloud.server.api.routes.inbound`) with
  the update, and the channel records the chat id and the Telegram user id of the sender
  (:mod:`claude_notify.cloud.server.relay.link`). The chat id is never taken from the user.
* **SMS**: a short code is texted to the number; the owner enters it with
  ``POST /v1/channels/{id}/verify`` like an e-mail code.

* **Discord and Feishu replies**: their webhook URLs need no confirmation (they are secrets the
  owner got from the group itself, pinned to the providers' hosts), but taking commands from a
  chat does: the same ``POST /v1/channels/{id}/link`` code, sent as ``/link code:CODE`` to the
  operator's Discord application or ``/link CODE`` to its Feishu app bot, records the Discord
  user id or Feishu ``open_id`` of the sender (see :mod:`claude_notify.cloud.server.relay.chat`).

Only hashes of codes are stored.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import outbox
from claude_notify.cloud.server.api.deps import ChannelWriter, RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.relay.link import code_hash
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

router = APIRouter(tags=["channels"])

SMS_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: easy to read off a phone."""


def start(session: Session, runtime: Runtime, channel: Channel) -> None:
    """Begin confirming a new or changed Telegram or SMS recipient."""
    channel.verified_at = None
    if channel.type == "sms":
        code = "".join(secrets.choice(SMS_ALPHABET) for _ in range(8))
        channel.verify_hash = code_hash(code)
        ttl = timedelta(seconds=runtime.settings.verification_ttl_s)
        channel.verify_expires_at = utcnow() + ttl
        text = f"claude-notify code: {code}. Enter it to get task alerts on this number."
        outbox.queue(session, channel, outbox.VERIFY, render_simple("claude-notify code", text))
    else:  # Telegram: the owner asks for a code with POST /v1/channels/{id}/link
        channel.verify_hash = None
        channel.verify_expires_at = None


class LinkCode(BaseModel):
    code: str
    command: str
    """What to send to the bot."""
    url: str | None
    """``https://t.me/<bot>?start=CODE``, when the operator named the bot."""
    expires_at: datetime


_LINKABLE = {"telegram": ("telegram_bot_token", "this server has no Telegram bot"),
             "discord": ("discord_public_key", "Discord replies are not enabled on this server"),
             "feishu": ("feishu_verification_token",
                        "Feishu replies are not enabled on this server")}
"""Channel type → the setting that must be present, and the answer when it is not (which names
the setting: the operator can act on it)."""


@router.post(
    "/v1/channels/{channel_id}/link", status_code=201,
    summary="A code to link a Telegram chat, or the Discord or Feishu account allowed to reply",
)
def link_telegram(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> LinkCode:
    channel = session.scalar(
        select(Channel).where(Channel.id == channel_id, Channel.user_id == caller.user_id)
    )
    if channel is None:
        raise not_found("channel")
    if channel.type not in _LINKABLE:
        raise ApiError(409, "only Telegram, Discord and Feishu channels are linked with a code")
    setting, missing = _LINKABLE[channel.type]
    if not getattr(runtime.settings, setting):
        raise ApiError(422, f"{missing}: its operator has not set CLAUDE_NOTIFY_SERVER_"
                            f"{setting.upper()}", code="not_configured")
    code = secrets.token_urlsafe(24)
    channel.verify_hash = code_hash(code)
    channel.verify_expires_at = utcnow() + timedelta(seconds=runtime.settings.link_ttl_s)
    session.commit()
    bot = runtime.settings.telegram_bot_username if channel.type == "telegram" else None
    command = {"telegram": f"/start {code}", "discord": f"/link code:{code}"}
    return LinkCode(
        code=code,
        command=command.get(channel.type, f"/link {code}"),
        url=f"https://t.me/{bot}?start={code}" if bot else None,
        expires_at=channel.verify_expires_at,
    )

