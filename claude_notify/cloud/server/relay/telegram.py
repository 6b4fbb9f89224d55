"""Commands from Telegram: a reply to a task's notification, or ``/run <cmd>`` in the bot chat.

Only updates that passed the webhook's secret-header check get here. The chat must be a linked
Telegram channel, the sender must be the Telegram account that linked it (``tg_user_id``), and
the chat must be private: in a group anyone could reply. The command goes to the session of the
task the replied-to notification was about (for ``/run`` without a reply: the chat's latest task
notification). Every attempt is audited; the owner gets a one-line answer in the chat, and
strangers get none.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel, Event, Notification, Task, User
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime

_RUN: Final = re.compile(r"^/run(?:@\w+)?\s+(.+)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Reply:
    chat_id: int
    chat_type: str
    sender_id: int
    text: str
    reply_to: int | None
    run: bool = False
    """``/run <cmd>``: always a command line, even in reply to a Claude notification."""


def parse(update: Any) -> Reply | None:
    """The reply or ``/run`` in an update, else ``None`` (``/start`` and others are not ours)."""
    message = update.get("message") if isinstance(update, dict) else None
    if not isinstance(message, dict):
        return None
    chat, sender, text = message.get("chat"), message.get("from"), message.get("text")
    if not (isinstance(chat, dict) and isinstance(sender, dict) and isinstance(text, str)):
        return None
    if not (isinstance(chat.get("id"), int) and isinstance(sender.get("id"), int)):
        return None
    replied = message.get("reply_to_message")
    reply_to = replied.get("message_id") if isinstance(replied, dict) else None
    run = bool(match := _RUN.match(text.strip()))
    if match:
        text = match.group(1).strip()
    elif reply_to is None or text.startswith("/"):
        return None
    return Reply(chat_id=chat["id"], chat_type=str(chat.get("type") or ""),
                 sender_id=sender["id"], text=text,
                 reply_to=reply_to if isinstance(reply_to, int) else None, run=run)


def handle(runtime: Runtime, relay: Relay, reply: Reply) -> tuple[uuid.UUID, str] | None:
    """Queue (or refuse, audited) the reply's command; the (user, machine) to wake, if queued."""
    with runtime.sessions.begin() as session:
        channels = session.scalars(select(Channel).where(
            Channel.type == "telegram", Channel.verified_at.is_not(None))).all()
        mine = [c for c in channels if c.config.get("chat_id") == reply.chat_id]
        woken = None
        for channel in mine:
            woken = _one(session, relay, channel, reply) or woken
    if mine:
        runtime.waker.wake()  # the answers in the chat
    return woken


def _one(session: Session, relay: Relay, channel: Channel,
         reply: Reply) -> tuple[uuid.UUID, str] | None:
    user = session.get(User, channel.user_id)
    if user is None:
        return None
    origin = queue.Origin(user_id=user.id, plan=user.plan, source="telegram",
                          actor=f"telegram:{reply.sender_id}")

    def refuse(reason: str, *, answer: bool) -> None:
        queue.audit(session, origin, command=reply.text, outcome="refused", reason=reason)
        if answer:
            _answer(session, channel, f"Not run: {reason}.")

    if reply.sender_id != channel.config.get("tg_user_id"):
        refuse("not the Telegram account that linked this chat", answer=False)
        return None
    if reply.chat_type != "private":
        refuse("commands are taken only in the private chat with the bot", answer=False)
        return None
    session_id, kind = _session_of(session, channel, reply.reply_to)
    kind = "shell" if reply.run else kind
    if session_id is None:
        refuse("not a reply to a task notification of a session", answer=True)
        return None
    try:
        row = queue.enqueue(session, origin, session_id=session_id, command=reply.text,
                            policy=relay.policy, kind=kind)
    except queue.Refused as refused:
        _answer(session, channel, f"Not run: {refused.message}.")
        return None
    what = "Sent to Claude" if kind == "claude" else "Queued"
    _answer(session, channel, f"{what} on {row.machine_id[:12]}: {reply.text[:200]}")
    return user.id, row.machine_id


def _session_of(session: Session, channel: Channel,
                reply_to: int | None) -> tuple[str | None, str]:
    """The session a reply is for, and ``claude`` when its task is a Claude Code session.

    ``/run`` is always a command line; a plain reply to a "Claude finished" notification is the
    next prompt of that conversation.
    """
    stmt = (select(Task.id, Task.session_id).join(Notification, Notification.task_id == Task.id)
            .where(Notification.channel_id == channel.id, Notification.status == "sent",
                   Task.session_id.is_not(None)))
    if reply_to is not None:
        stmt = stmt.where(Notification.provider_id == str(reply_to))
    found = session.execute(stmt.order_by(Notification.created_at.desc()).limit(1)).first()
    if found is None:
        return None, "shell"
    task_id, session_id = found
    payload = session.scalar(select(Event.payload).where(Event.task_id == task_id)
                             .order_by(Event.received_at.desc()).limit(1))
    source = payload.get("source") if isinstance(payload, dict) else None
    return session_id, "claude" if source == "claude-code" and reply_to is not None else "shell"


def _answer(session: Session, channel: Channel, text: str) -> None:
    from claude_notify.cloud.server.api.routes.channels import _queue

    _queue(session, channel, "test", render_simple("claude-notify relay", text))


async def on_update(state: Any, runtime: Runtime, update: Any) -> None:
    """The webhook's hook for everything that is not ``/start CODE``."""
    reply = parse(update)
    if reply is None:
        return
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.relay.state import relay_of

    relay = relay_of(state)
    woken = await run_in_threadpool(handle, runtime, relay, reply)
    if woken is not None:
        relay.hub.wake(woken)
