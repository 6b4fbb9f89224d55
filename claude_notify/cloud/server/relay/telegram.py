"""Commands from Telegram: a reply to a task's notification, ``/run <cmd>`` in the bot chat, and
the notification's buttons ("Run again", "Show log").

Only updates that passed the webhook's secret-header check get here. The chat must be a linked
Telegram channel and the sender must be the Telegram account that linked it (``tg_user_id``).
The chat must be private unless the owner turned on ``allow_group_replies`` for the channel: in
a group anyone can reply or press a button, so even then only the owner's count. A reply goes to
the session, machine and directory of the task run the replied-to notification was about (for
``/run`` without a reply: the chat's latest task notification), whatever events the session had
since; "Run again" queues that task's own command for the same run, through the same queue as a
reply (rate limit, banlist, audit). Every attempt is audited; the
owner gets a one-line answer in the chat, strangers get none (a button press is always answered
with ``answerCallbackQuery``, for strangers with no text). Telegram sends an update again when
our answer was late: its ``update_id`` is recorded (``relay_inbound_seen``, shared by all
replicas) before anything is queued, so a repeat does nothing.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, logs, outbox
from claude_notify.cloud.server.channels.render import one_line, render_simple
from claude_notify.cloud.server.channels.telegram import TEXT_LIMIT, visible_length
from claude_notify.cloud.server.db.models import Channel, Delivery, Event, Task, User
from claude_notify.cloud.server.logcrypt import LogCipher, LogKeyError
from claude_notify.cloud.server.relay import actions, approvals, queue
from claude_notify.cloud.server.relay.models import Approval
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
    message_id: int | None = None


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
    message_id = message.get("message_id")
    return Reply(chat_id=chat["id"], chat_type=str(chat.get("type") or ""),
                 sender_id=sender["id"], text=text,
                 reply_to=reply_to if isinstance(reply_to, int) else None, run=run,
                 message_id=message_id if isinstance(message_id, int) else None)


def handle(runtime: Runtime, relay: Relay, reply: Reply) -> tuple[uuid.UUID, str] | None:
    """Queue (or refuse, audited) the reply's command; the (user, machine) to wake, if queued."""
    with runtime.sessions.begin() as session:
        mine = _chat_channels(session, reply.chat_id)
        woken = None
        for channel in mine:
            woken = _one(session, relay, channel, reply) or woken
    if mine:
        runtime.waker.wake()  # the answers in the chat
    return woken


def _chat_channels(session: Session, chat_id: int) -> list[Channel]:
    """The linked Telegram channels of a chat (several users may have linked the same group).

    The index finds the candidates by the id's text; the config decides (an id saved as text
    never matched the number Telegram sends)."""
    found = session.scalars(select(Channel).where(
        Channel.type == "telegram", Channel.inbound_key == str(chat_id),
        Channel.verified_at.is_not(None)))
    return [c for c in found if c.config.get("chat_id") == chat_id]


def _one(session: Session, relay: Relay, channel: Channel,
         reply: Reply) -> tuple[uuid.UUID, str] | None:
    user = session.get(User, channel.user_id)
    if user is None:
        return None
    origin = queue.Origin(user_id=user.id, plan=auth.person_plan(session, user.id),
                          source="telegram",
                          actor=f"telegram:{reply.sender_id}")

    def refuse(reason: str, *, answer: bool) -> None:
        queue.audit(session, origin, command=reply.text, outcome="refused", reason=reason)
        if answer:
            _answer(session, channel, f"Not run: {reason}.")

    if (reason := not_heard(channel, reply.sender_id, reply.chat_type)) is not None:
        refuse(reason, answer=False)
        return None
    target = _target_of(session, channel, reply.reply_to)
    if target is None:
        refuse("not a reply to a task notification of a session", answer=True)
        return None
    # A plain reply to a "Claude finished" notification is the next prompt of that
    # conversation; /run is always a command line.
    claude = target.source == "claude-code" and reply.reply_to is not None and not reply.run
    kind = "claude" if claude else "shell"
    try:
        row = queue.enqueue(session, origin, to=target, command=reply.text,
                            policy=relay.policy, kind=kind)
    except queue.CommandRefused as refused:
        _answer(session, channel, f"Not run: {refused.message}.")
        return None
    what = "Sent to Claude" if kind == "claude" else "Queued"
    _answer(session, channel, f"{what} on {row.machine_id[:12]}: {reply.text[:200]}")
    return user.id, row.machine_id


def not_heard(channel: Channel, sender_id: int, chat_type: str) -> str | None:
    """Why a message or press in this chat is not the owner's command, else ``None``."""
    if sender_id != channel.config.get("tg_user_id"):
        return "not the Telegram account that linked this chat"
    if chat_type != "private" and channel.config.get("allow_group_replies") is not True:
        return "commands are taken only in the private chat with the bot"
    return None


def replied_task(channel_id: uuid.UUID,
                 reply_to: int | None) -> Select[uuid.UUID, str | None, uuid.UUID]:
    """The (task, session, notification) a reply in a channel's chat is about: the notification
    with that Telegram message id, or the chat's latest one that reached it.

    Both are searches of ``ix_notifications_channel_provider``: a notification has a provider id
    only once sent, so that stands for ``status = 'sent'`` (which SQLite's planner would otherwise
    answer from the delivery queue's index, scanning everyone's sent notifications)."""
    stmt = (select(Task.id, Task.session_id, Delivery.id)
            .join(Delivery, Delivery.task_id == Task.id)
            .where(Delivery.channel_id == channel_id, Task.session_id.is_not(None)))
    if reply_to is not None:
        stmt = stmt.where(Delivery.provider_id == str(reply_to))
    else:
        stmt = stmt.where(Delivery.provider_id.is_not(None))
    return stmt.order_by(Delivery.created_at.desc()).limit(1)


def _target_of(session: Session, channel: Channel, reply_to: int | None) -> queue.Target | None:
    """Where a reply goes: the run its notification was about (see :class:`queue.Target`)."""
    found = session.execute(replied_task(channel.id, reply_to)).first()
    notification = session.get(Delivery, found[2]) if found is not None else None
    return queue.target_of(session, notification) if notification is not None else None


def _answer(session: Session, channel: Channel, text: str) -> None:
    outbox.queue(session, channel, outbox.RELAY, render_simple("claude-notify relay", text))


# --------------------------------------------------------------------------- buttons


@dataclass(frozen=True, slots=True)
class Press:
    """A press on one of our inline buttons (a ``callback_query`` update)."""

    query_id: str
    chat_id: int
    chat_type: str
    sender_id: int
    message_id: int
    data: str


@dataclass(frozen=True, slots=True)
class Answered:
    """What to tell Telegram about a press: the callback's answer, maybe a log message."""

    text: str | None = None
    alert: bool = False
    log_html: str | None = None
    woken: tuple[uuid.UUID, str] | None = None


def parse_press(update: Any) -> Press | None:
    """The button press in an update, else ``None``."""
    query = update.get("callback_query") if isinstance(update, dict) else None
    if not isinstance(query, dict) or not isinstance(query.get("id"), str):
        return None
    sender, message = query.get("from"), query.get("message")
    if not (isinstance(sender, dict) and isinstance(message, dict)):
        return None
    chat = message.get("chat")
    if not (isinstance(chat, dict) and isinstance(chat.get("id"), int)
            and isinstance(sender.get("id"), int)
            and isinstance(message.get("message_id"), int)):
        return None
    return Press(query_id=query["id"], chat_id=chat["id"], chat_type=str(chat.get("type") or ""),
                 sender_id=sender["id"], message_id=message["message_id"],
                 data=str(query.get("data") or "")[:256])


def handle_press(runtime: Runtime, relay: Relay, press: Press) -> Answered:
    """Run again or show the log (or refuse, audited) for a press in a linked chat."""
    parsed = actions.parse(press.data)
    with runtime.sessions.begin() as session:
        row = session.get(Delivery, parsed[1]) if parsed else None
        channel = session.get(Channel, row.channel_id) if row and row.channel_id else None
        if not (channel is not None and channel.type == "telegram"
                and channel.verified_at is not None
                and channel.config.get("chat_id") == press.chat_id):
            # Not a button of ours in this chat (forged or stale): audited for the chat's owner.
            channel = next(iter(_chat_channels(session, press.chat_id)), None)
            if channel is None:
                return Answered()  # not a chat of ours: nobody to tell
            row = None
        task = session.get(Task, row.task_id) if row and row.task_id else None
        target = queue.target_of(session, row) if row is not None else None
        return _press(session, runtime, relay, channel, press, parsed, task, target)


def _press(session: Session, runtime: Runtime, relay: Relay, channel: Channel, press: Press,
           parsed: tuple[str, uuid.UUID] | None, task: Task | None,
           target: queue.Target | None) -> Answered:
    user = session.get(User, channel.user_id)
    if user is None:
        return Answered()
    action = parsed[0] if parsed else "?"
    origin = queue.Origin(user_id=user.id, plan=auth.person_plan(session, user.id),
                          source="telegram",
                          actor=f"telegram:{press.sender_id}")
    what = (task.cmd if action == actions.RUN else f"show log: {task.cmd}") if task else (
        f"button {press.data[:64]!r}")

    def refuse(reason: str) -> str:
        queue.audit(session, origin, command=what, outcome="refused", reason=reason,
                    machine_id=task.machine_id if task else None,
                    session_id=task.session_id if task else None)
        return reason

    if (reason := not_heard(channel, press.sender_id, press.chat_type)) is not None:
        refuse(reason)
        return Answered()  # strangers: the spinner stops, nothing else
    if task is None:
        return Answered(f"Not run: {refuse('not a button of a task notification here')}.",
                        alert=True)
    if action == actions.LOG:
        if (limited := queue.over_limit(session, origin, relay.policy)) is not None:
            return Answered(f"Not shown: {refuse(limited)}.", alert=True)
        queue.audit(session, origin, command=what, outcome="shown",
                    machine_id=task.machine_id, session_id=task.session_id)
        return Answered(log_html=_log_message(session, runtime, task))
    return _run_again(session, relay, origin, task, target, refuse)


def _run_again(session: Session, relay: Relay, origin: queue.Origin, task: Task,
               target: queue.Target | None, refuse: Callable[[str], str]) -> Answered:
    """A "Run again" press: the task's command queued for its run's machine and directory,
    unless it is a Claude Code session's or cannot be run from here (``refuse`` audits why)."""
    claude = _source(session, task) == "claude-code"
    if claude or target is None or not task.cmd.strip():
        reason = ("a Claude Code session is continued by replying to its notification"
                  if claude else "this task cannot be run again from here")
        return Answered(f"Not run: {refuse(reason)}.", alert=True)
    try:
        row = queue.enqueue(session, origin, to=target, command=task.cmd,
                            policy=relay.policy)
    except queue.CommandRefused as refused:
        return Answered(f"Not run: {refused.message}."[:200], alert=True)
    return Answered(f"Queued on {row.machine_id[:12]}: {task.cmd}"[:200],
                    woken=(origin.user_id, row.machine_id))


def _source(session: Session, task: Task) -> str | None:
    payload = session.scalar(select(Event.payload).where(Event.task_id == task.id)
                             .order_by(Event.received_at.desc()).limit(1))
    source = payload.get("source") if isinstance(payload, dict) else None
    return source if isinstance(source, str) else None


LOG_CHARS: Final = 3500
"""Characters of log tail shown: with the heading, safely within Telegram's 4,096."""


def _log_message(session: Session, runtime: Runtime, task: Task) -> str:
    """The task's stored log tail (else its last event's tail) as Telegram HTML, escaped."""
    tail = ""
    try:
        stored = logs.read_tail(session, task=task, max_bytes=4 * LOG_CHARS,
                                cipher=LogCipher(runtime.settings.log_keys))
        tail = stored.decode("utf-8", errors="replace")
    except LogKeyError:  # no key configured, or a chunk that fails authentication
        pass
    if not tail.strip():
        payload = session.scalar(select(Event.payload).where(Event.task_id == task.id)
                                 .order_by(Event.received_at.desc()).limit(1))
        tail = str(payload.get("tail") or "") if isinstance(payload, dict) else ""
    head = f"<b>Log of {html.escape(one_line(task.cmd or task.key, 200))}</b>\n"
    if not tail.strip():
        return head + "<i>No output was stored for this task.</i>"
    tail = tail[-LOG_CHARS:]
    while visible_length(text := f"{head}<pre>{html.escape(tail)}</pre>") > TEXT_LIMIT:
        tail = tail[len(tail) // 10 + 1:]  # astral characters count twice: trim and re-measure
    return text


async def _answer_press(runtime: Runtime, press: Press, answered: Answered) -> None:
    """Post the log (when asked for) and always answer the callback query."""
    from claude_notify.cloud.server.channels.telegram import TelegramChannel

    async with approvals.client() as http:
        bot = TelegramChannel(runtime.settings, http)
        if answered.log_html is not None:
            await bot.call("sendMessage", {
                "chat_id": press.chat_id, "text": answered.log_html, "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True},
                "reply_parameters": {"message_id": press.message_id,
                                     "allow_sending_without_reply": True}})
        answer: dict[str, Any] = {"callback_query_id": press.query_id}
        if answered.text:
            answer.update(text=answered.text[:200], show_alert=answered.alert)
        await bot.call("answerCallbackQuery", answer)


async def _approval_press(state: Any, runtime: Runtime, press: Press) -> None:
    """A press on an approval card: the decision first (the agent is woken before Telegram is
    answered, since the terminal waits on it), then the callback's answer, then the cards."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.relay.state import relay_of

    def decide() -> approvals.Pressed:
        with runtime.sessions.begin() as session:
            return approvals.press(session, chat_id=press.chat_id, chat_type=press.chat_type,
                                   sender_id=press.sender_id, message_id=press.message_id,
                                   data=press.data)

    pressed = approvals.Pressed()
    try:
        pressed = await run_in_threadpool(decide)
        if pressed.wake is not None:
            relay_of(state).hub.wake(pressed.wake)
    finally:
        await _answer_press(runtime, press, Answered(pressed.text))
    if pressed.edit is not None:
        await approvals.edit_cards(runtime, pressed.edit)
    if pressed.prompt is not None:
        await _ask_note(runtime, press, *pressed.prompt)


async def _ask_note(runtime: Runtime, press: Press, approval_id: uuid.UUID,
                    channel: str) -> None:
    """"… with a note…": ask for the note as a reply to a message of its own (ForceReply),
    and remember that message, the only one a reply to which is the note."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.telegram import TelegramChannel

    def text() -> str | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            return approvals.prompt_message(row) if row is not None else None

    asked = await run_in_threadpool(text)
    if asked is None:
        return
    body = {"chat_id": press.chat_id, "text": asked,
            "reply_parameters": {"message_id": press.message_id,
                                 "allow_sending_without_reply": True},
            "reply_markup": {"force_reply": True, "input_field_placeholder": "Your note"}}
    async with approvals.client() as http:
        sent = await _send_soon(TelegramChannel(runtime.settings, http), body)
    result = sent.get("result")
    if sent.get("ok") is not True or not isinstance(result, dict) or not isinstance(
            result.get("message_id"), int):
        return

    def remember() -> None:
        with runtime.sessions.begin() as session:
            approvals.remember_prompt(session, approval_id, channel=channel,
                                      chat_id=press.chat_id, message_id=result["message_id"])

    await run_in_threadpool(remember)


async def _send_soon(bot: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``sendMessage``, once more after a short ``retry_after`` (the card went to the same chat
    a moment ago: Telegram keeps a chat to about one message a second)."""
    import asyncio

    sent: dict[str, Any] = await bot.call("sendMessage", body)
    wait = (sent.get("parameters") or {}).get("retry_after") if isinstance(
        sent.get("parameters"), dict) else None
    if sent.get("error_code") == 429 and isinstance(wait, int) and 0 < wait <= 5:
        await asyncio.sleep(wait)
        sent = await bot.call("sendMessage", body)
    return sent


async def _note(state: Any, runtime: Runtime, reply: Reply) -> bool:
    """A reply to a note prompt (see :func:`_ask_note`): the denial with the owner's note.
    ``False`` when the reply is not to a prompt (an ordinary reply, handled as before)."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.telegram import TelegramChannel
    from claude_notify.cloud.server.relay.state import relay_of

    if reply.reply_to is None or reply.run:
        return False

    def decide() -> approvals.Pressed | None:
        with runtime.sessions.begin() as session:
            return approvals.note(session, _chat_channels(session, reply.chat_id),
                                  chat_id=reply.chat_id, chat_type=reply.chat_type,
                                  sender_id=reply.sender_id, reply_to=reply.reply_to,
                                  text=reply.text)

    noted = await run_in_threadpool(decide)
    if noted is None:
        return False
    if noted.wake is not None:
        relay_of(state).hub.wake(noted.wake)
    if noted.text:  # the owner's: a stranger's reply gets no answer
        async with approvals.client() as http:
            body: dict[str, Any] = {"chat_id": reply.chat_id, "text": noted.text}
            if reply.message_id is not None:
                body["reply_parameters"] = {"message_id": reply.message_id,
                                            "allow_sending_without_reply": True}
            await _send_soon(TelegramChannel(runtime.settings, http), body)
    if noted.edit is not None:
        await approvals.edit_cards(runtime, noted.edit)
    return True


def _first_delivery(runtime: Runtime, update: Any) -> bool:
    """True the first time this ``update_id`` arrives, on any replica (see
    :func:`~claude_notify.cloud.server.relay.chat.first_delivery`)."""
    from claude_notify.cloud.server.relay.chat import first_delivery

    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return True  # Telegram always numbers its updates; nothing to key on otherwise
    return first_delivery(runtime.sessions, "telegram", str(update_id))


async def on_update(state: Any, runtime: Runtime, update: Any) -> None:
    """The webhook's hook for everything that is not ``/start CODE``."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.relay.state import relay_of

    press = parse_press(update)
    reply = parse(update) if press is None else None
    if (press is not None or reply is not None) and not await run_in_threadpool(
            _first_delivery, runtime, update):
        return  # Telegram sent it again (our answer was late): it was handled once already
    if press is not None and press.data.startswith(approvals.PREFIX + ":"):
        await _approval_press(state, runtime, press)
        return
    if press is not None:
        relay = relay_of(state)
        answered = Answered()
        try:
            answered = await run_in_threadpool(handle_press, runtime, relay, press)
        finally:  # a press is always answered, or the user's button keeps spinning
            await _answer_press(runtime, press, answered)
        if answered.woken is not None:
            relay.hub.wake(answered.woken)
        return
    query = update.get("callback_query") if isinstance(update, dict) else None
    if isinstance(query, dict) and isinstance(query.get("id"), str):
        # A press we cannot place (no message: an inline-mode one): answered, nothing else.
        stray = Press(query_id=query["id"], chat_id=0, chat_type="", sender_id=0, message_id=0,
                      data="")
        await _answer_press(runtime, stray, Answered())
        return
    if reply is None or await _note(state, runtime, reply):
        return
    relay = relay_of(state)
    woken = await run_in_threadpool(handle, runtime, relay, reply)
    if woken is not None:
        relay.hub.wake(woken)
