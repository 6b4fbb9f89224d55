"""Confirming chat and SMS recipients: nothing is sent to one that has not been confirmed.

* **Telegram**: the user asks for a one-time code (``POST /v1/channels/{id}/link``) and sends
  ``/start CODE`` to the operator's bot (the ``t.me`` link does it in one tap). Telegram calls
  ``POST /v1/telegram/webhook`` with the update; the call is accepted only with the bot's
  ``X-Telegram-Bot-Api-Secret-Token`` (compared in constant time), and the channel records the
  chat id and the Telegram user id of the sender. The chat id is never taken from the user.
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

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api import jsonguard
from claude_notify.cloud.server.api.deps import ChannelWriter, RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

router = APIRouter(tags=["channels"])

LINK_TTL_S = 900.0
"""A Telegram link code is good for fifteen minutes."""
SMS_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: easy to read off a phone."""
_START = re.compile(r"^/start(?:@\w+)?\s+([A-Za-z0-9_-]{16,64})\s*$")

Queue = Callable[[Session, Channel, str, dict[str, Any]], uuid.UUID]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start(session: Session, runtime: Runtime, channel: Channel, *, queue: Queue) -> None:
    """Begin confirming a new or changed Telegram or SMS recipient."""
    channel.verified_at = None
    if channel.type == "sms":
        code = "".join(secrets.choice(SMS_ALPHABET) for _ in range(8))
        channel.verify_hash = _hash(code)
        ttl = timedelta(seconds=runtime.settings.verification_ttl_s)
        channel.verify_expires_at = utcnow() + ttl
        text = f"claude-notify code: {code}. Enter it to get task alerts on this number."
        queue(session, channel, "verify", render_simple("claude-notify code", text))
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


_LINKABLE = {"telegram": ("telegram_bot_token", "Telegram is not configured on this server"),
             "discord": ("discord_public_key", "Discord replies are not enabled on this server"),
             "feishu": ("feishu_verification_token",
                        "Feishu replies are not enabled on this server")}
"""Channel type → the setting that must be present, and the answer when it is not."""


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
        raise ApiError(409, missing)
    code = secrets.token_urlsafe(24)
    channel.verify_hash = _hash(code)
    channel.verify_expires_at = utcnow() + timedelta(seconds=LINK_TTL_S)
    session.commit()
    bot = runtime.settings.telegram_bot_username if channel.type == "telegram" else None
    command = {"telegram": f"/start {code}", "discord": f"/link code:{code}"}
    return LinkCode(
        code=code,
        command=command.get(channel.type, f"/link {code}"),
        url=f"https://t.me/{bot}?start={code}" if bot else None,
        expires_at=channel.verify_expires_at,
    )


def claim(session: Session, kind: str, code: str) -> Channel | None:
    """The ``kind`` channel a live link code was issued for, the code used up; else ``None``."""
    channel = session.scalar(
        select(Channel).where(Channel.type == kind, Channel.verify_hash == _hash(code))
    )
    expires = channel.verify_expires_at if channel is not None else None
    if channel is None or expires is None or expires <= utcnow():
        return None
    channel.verify_hash = None
    channel.verify_expires_at = None
    return channel


@router.post("/v1/telegram/webhook", include_in_schema=False)
async def telegram_webhook(
    request: Request,
    runtime: RuntimeDep,
    secret: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token")] = None,
) -> dict[str, bool]:
    """Updates from Telegram. Answers 2xx for anything it accepted, so Telegram never retries
    an update we chose to ignore."""
    expected = runtime.settings.telegram_webhook_secret
    if not expected:
        raise ApiError(404, "the Telegram webhook is not enabled on this server")
    if secret is None or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise ApiError(403, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
    try:
        update = jsonguard.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, f"the update: {exc}") from None
    found = _start_command(update)
    if found is not None:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(_link, runtime, *found)
    else:  # replies and /run: the command relay
        from claude_notify.cloud.server.relay.telegram import on_update

        await on_update(request.app.state, runtime, update)
    return {"ok": True}


def _start_command(update: Any) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """``(code, chat, sender)`` of a ``/start CODE`` message, else ``None``."""
    message = update.get("message") if isinstance(update, dict) else None
    if not isinstance(message, dict):
        return None
    match = _START.match(str(message.get("text") or ""))
    chat, sender = message.get("chat"), message.get("from")
    if match is None or not isinstance(chat, dict) or not isinstance(sender, dict):
        return None
    if not isinstance(chat.get("id"), int) or not isinstance(sender.get("id"), int):
        return None
    return match.group(1), chat, sender


def _link(runtime: Runtime, code: str, chat: dict[str, Any], sender: dict[str, Any]) -> None:
    with runtime.sessions.begin() as session:
        channel = session.scalar(
            select(Channel).where(Channel.type == "telegram", Channel.verify_hash == _hash(code))
        )
        expires = channel.verify_expires_at if channel is not None else None
        if channel is None or expires is None or expires <= utcnow():
            return
        title = chat.get("title") or chat.get("username") or chat.get("first_name") or ""
        channel.config = {
            **{k: v for k, v in channel.config.items() if k == "template"},
            "chat_id": chat["id"],
            "chat_type": str(chat.get("type") or "")[:32],  # Telegram's word: private or not
            "tg_user_id": sender["id"],
            "chat_title": str(title)[:100],
        }
        channel.verified_at = utcnow()
        channel.verify_hash = None
        channel.verify_expires_at = None
        channel.enabled = True
        channel.disabled_reason = None
        from claude_notify.cloud.server.api.routes.channels import _queue

        text = "This chat is now linked: claude-notify will post your task notifications here."
        _queue(session, channel, "test", render_simple("claude-notify linked", text))
    runtime.waker.wake()
