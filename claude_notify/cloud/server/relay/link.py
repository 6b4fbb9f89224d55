"""Link codes redeemed from a chat: who may take a channel's notifications or give it commands.

``POST /v1/channels/{id}/link`` issues a code (only its hash is stored, :func:`code_hash`); the
owner sends it to the operator's bot or app. Telegram's ``/start CODE`` records the chat and
the Telegram user id of the sender (:func:`link_telegram`); Discord's ``/link code:CODE`` and
Feishu's ``/link CODE`` record the sender's id (:func:`claim`, used by
:mod:`~claude_notify.cloud.server.relay.chat`). The ids are the provider's word: the endpoints
checked that the provider sent the request. The chat id is never taken from the user.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import outbox
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

_START: Final = re.compile(r"^/start(?:@\w+)?\s+([A-Za-z0-9_-]{16,64})\s*$")


def code_hash(code: str) -> str:
    """The stored form of a link code."""
    return hashlib.sha256(code.encode()).hexdigest()


def claim(session: Session, kind: str, code: str) -> Channel | None:
    """The ``kind`` channel a live link code was issued for, the code used up; else ``None``."""
    channel = session.scalar(
        select(Channel).where(Channel.type == kind, Channel.verify_hash == code_hash(code))
    )
    expires = channel.verify_expires_at if channel is not None else None
    if channel is None or expires is None or expires <= utcnow():
        return None
    channel.verify_hash = None
    channel.verify_expires_at = None
    return channel


def start_command(update: Any) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """``(code, chat, sender)`` of a Telegram ``/start CODE`` message, else ``None``."""
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


def link_telegram(runtime: Runtime, code: str, chat: dict[str, Any],
                  sender: dict[str, Any]) -> None:
    """Point the code's Telegram channel at ``chat``, verified, and say so in the chat."""
    with runtime.sessions.begin() as session:
        channel = claim(session, "telegram", code)
        if channel is None:
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
        channel.enabled = True
        channel.disabled_reason = None
        text = "This chat is now linked: claude-notify will post your task notifications here."
        outbox.queue(session, channel, outbox.LINKED, render_simple("claude-notify linked", text))
    runtime.waker.wake()
