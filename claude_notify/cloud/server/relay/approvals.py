"""Claude Code's permission requests, answered from the owner's phone (``approvals``).

The agent files an approval over its tunnel (:data:`~claude_notify.agent.wire.APPROVAL`); the
server keeps one row, shows it as a card with Allow / Deny / "Always in this session" buttons in
each of the owner's Telegram chats that take answers, and hands the answer back over the tunnel
(:data:`~claude_notify.agent.wire.DECISION`). The terminal's dialog stays usable the whole time:
when the session moves on there, the agent withdraws the approval and the cards say so. (The
owner's browsers and linked Slack, Discord and Feishu accounts are asked too:
:mod:`.push_approvals` and the modules it names.)

Rules kept here:

* A state leaves ``pending`` once, by one conditional ``UPDATE … WHERE state = 'pending'`` (and,
  for an answer, ``expires_at`` still ahead): of a press, the terminal and the expiry the first
  wins; the others are told "already answered" and change nothing.
* A press counts only on one of the approval's own cards (its chat and message), from the
  Telegram account that linked that chat (``tg_user_id``), in a private chat or a group whose
  owner switched group replies on: never "anyone in the chat". The button carries an opaque id
  (``ap:<hex>:<a|d|s|n|o0…o3>``, at most 38 bytes), never what runs.
* Every step is in the relay's audit log.
* The card shows what the call does literally (the command; the file and a diff summary; a
  plan; Claude's questions and their options), as the agent built it from the tool's input,
  never the model's description of it; it is escaped for Telegram's HTML like every other
  message. What each kind of request says and offers is in :mod:`.approval_kinds`.
* "Deny with note…" asks for a reply (ForceReply); only the owner's reply to that very prompt
  becomes the note Claude reads with the denial (:func:`note`); a plain Deny stays one press.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from claude_notify.agent import wire
from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import Channel, User
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import push_approvals
from claude_notify.cloud.server.relay.models import Approval, RelayAudit
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams.access import private_to
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.relay")

PREFIX: Final = "ap"
ALLOW, DENY, SESSION = "a", "d", "s"
ACTIONS: Final = {ALLOW: "allowed", DENY: "denied", SESSION: "allowed"}
NOTE, OPTION = "n", "o"
"""Telegram's "deny with a note…" (asks for a reply) and a question's option (``o0``…``o3``)."""
PROMPTS_PER_APPROVAL: Final = 5
"""Note prompts one approval may have asked for (each press of "with a note…" sends one)."""
DISPLAY_CHARS: Final = 2000
SUGGESTIONS: Final = 4
PENDING_PER_MACHINE: Final = 20
"""Cards one machine may have waiting at once: a runaway loop of requests fills nobody's chat."""
TIMEOUT_S: Final = (5.0, 3600.0)
"""The shortest and longest wait an agent may ask for."""
FINAL: Final = frozenset({"allowed", "denied", "expired", "withdrawn"})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SHOWN: Final = {
    "allowed": "✅ Allowed", "denied": "⛔ Denied",
    "expired": "⌛ Expired — answer in the terminal", "withdrawn": "↩️ Answered in the terminal",
}


class Unavailable(Exception):
    """Nobody can be asked (free plan, no channel that takes answers): the hook falls back to
    the terminal's dialog at once instead of waiting out its timeout."""


# --------------------------------------------------------------------------- filing


def file(session: Session, user_id: uuid.UUID, machine_id: str,
         message: dict[str, Any], *, slack: bool = False, email: bool = False,
         discord: bool = False, feishu: bool = False) -> Approval:
    """The approval ``message`` asks for, filed now or found again (a re-send after a reconnect).
    ``slack``: the server takes Slack presses (its Slack app's signing secret is set), so a
    linked Slack account can answer too. ``email``: the server mails cards with a link
    (:mod:`.email_approvals`), so the owner's own confirmed address can answer too.
    ``discord``, ``feishu``: likewise a linked Discord or Feishu account
    (:mod:`.discord_approvals`, :mod:`.feishu_approvals`).

    Raises :class:`Unavailable` when nobody can answer it, ``ValueError`` for a malformed one.
    """
    approval_id = uuid.UUID(str(message.get("id")))
    found = session.get(Approval, approval_id)
    if found is not None:
        if (found.user_id, found.machine_id) != (user_id, machine_id):
            raise ValueError("not this agent's approval")
        return found
    digest = str(message.get("digest") or "")
    session_id = _bounded(message.get("session_id"), 256)
    tool_name = _bounded(message.get("tool_name"), 128)
    if not (_DIGEST.match(digest) and session_id and tool_name):
        raise ValueError("an approval needs a digest, a session and a tool")
    user = session.get(User, user_id)
    if user is None or auth.person_plan(session, user.id) != "pro":
        raise Unavailable("answering from the phone needs the pro plan")
    if not (answering_channels(session, user_id) or push_approvals.subscribed(session, user_id)
            or (slack and _slack_linked(session, user_id))
            or (email and _mailable(session, user_id))
            or (discord and _chat_linked(session, user_id, "discord"))
            or (feishu and _chat_linked(session, user_id, "feishu"))):
        raise Unavailable("no linked Telegram chat, Slack, Discord or Feishu account or "
                          "browser with notifications on takes answers")
    waiting = session.scalar(select(func.count()).select_from(Approval).where(
        Approval.user_id == user_id, Approval.machine_id == machine_id,
        Approval.state == "pending", Approval.expires_at > utcnow()))
    if (waiting or 0) >= PENDING_PER_MACHINE:
        raise Unavailable(f"{PENDING_PER_MACHINE} requests of this machine are waiting already")
    raw = message.get("suggestions")
    labels: list[Any] = [_bounded(s, 200) for s in raw if isinstance(s, str)] if isinstance(
        raw, list) else []
    if tool_name in (kinds.PLAN_TOOL, kinds.QUESTION_TOOL):
        # Neither offers "always"; a question keeps its shape there (see approval_kinds).
        labels = (kinds.shape(message.get("questions")) or []) if (
            tool_name == kinds.QUESTION_TOOL) else []
    timeout = message.get("timeout_s")
    wait = float(timeout) if isinstance(timeout, int | float) else 600.0
    wait = min(max(wait, TIMEOUT_S[0]), TIMEOUT_S[1])
    row = Approval(id=approval_id, user_id=user_id, machine_id=machine_id, session_id=session_id,
                   tool_use_id=_bounded(message.get("tool_use_id"), 128) or None,
                   tool_name=tool_name, digest=digest,
                   display=_bounded(message.get("display"), DISPLAY_CHARS) or tool_name,
                   cwd=_bounded(message.get("cwd"), 4096) or None,
                   suggestions=labels[:SUGGESTIONS] or None, state="pending",
                   expires_at=utcnow() + timedelta(seconds=wait))
    session.add(row)
    _audit(session, row, actor="agent", outcome="asked")
    return row


def answering_channels(session: Session, user_id: uuid.UUID) -> list[Channel]:
    """The owner's chats a card goes to: linked Telegram chats, private, or a group whose owner
    switched group replies on (a press there still counts only from the owner)."""
    found = session.scalars(select(Channel).where(
        private_to(user_id), Channel.type == "telegram", Channel.enabled.is_(True),
        Channel.verified_at.is_not(None)))
    return [c for c in found if isinstance(c.config.get("chat_id"), int)
            and isinstance(c.config.get("tg_user_id"), int)
            and (c.config["chat_id"] > 0 or c.config.get("allow_group_replies") is True)]


def _slack_linked(session: Session, user_id: uuid.UUID) -> bool:
    from claude_notify.cloud.server.relay.slack_approvals import linked_channels  # imports us

    return bool(linked_channels(session, user_id))


def _mailable(session: Session, user_id: uuid.UUID) -> bool:
    from claude_notify.cloud.server.relay.email_approvals import recipients  # imports us

    return bool(recipients(session, user_id))


def _chat_linked(session: Session, user_id: uuid.UUID, kind: str) -> bool:
    from claude_notify.cloud.server.relay.chat_approvals import linked  # imports us

    return bool(linked(session, user_id, kind))


def _bounded(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _audit(session: Session, row: Approval, *, actor: str, outcome: str,
           reason: str | None = None) -> None:
    """One row of the relay's audit log; its ``command_id`` is the approval's id."""
    session.add(RelayAudit(user_id=row.user_id, command_id=row.id, actor=actor[:128],
                           source="approval", machine_id=row.machine_id,
                           session_id=row.session_id,
                           command=f"{row.tool_name}: {row.display}"[:8192], outcome=outcome,
                           reason=reason))
    session.flush()


# --------------------------------------------------------------------------- answers


def decide(session: Session, approval_id: uuid.UUID, *, state: str, by: str,
           suggestion: int | None = None, note: str | None = None,
           answers: list[list[int]] | None = None) -> bool:
    """Answer a pending approval that has not expired; ``False`` if it was answered already or
    its time is up (:func:`expire` marks it so), or if the answer does not fit its kind: a
    question is allowed only with ``answers`` (per question, the options chosen) that answer it,
    and a plan or a question never "always" (callers check first, to say why)."""
    found = session.get(Approval, approval_id)
    if found is None:
        return False
    if kinds.kind(found) != kinds.TOOL and state == "allowed":
        if kinds.kind(found) == kinds.PLAN and (suggestion is not None or answers is not None):
            return False
        if kinds.kind(found) == kinds.QUESTION:
            suggestion = kinds.mask(found, answers) if answers is not None else None
            if suggestion is None:
                log.info("approval %s: a question is answered by choosing its options",
                         approval_id)
                return False
    now = utcnow()
    done = session.execute(
        update(Approval)
        .where(Approval.id == approval_id, Approval.state == "pending", Approval.expires_at > now)
        .values(state=state, decided_by=by[:128], decided_at=now, suggestion=suggestion,
                note=note)
        .execution_options(synchronize_session=False))
    changed = getattr(done, "rowcount", 0) == 1
    row = session.get(Approval, approval_id, populate_existing=True)
    if row is None:
        return False
    if changed:
        said = f"answered: {kinds.answered(row)}" if kinds.kind(row) == kinds.QUESTION and (
            state == "allowed") else note
        _audit(session, row, actor=by, outcome=state, reason=said)
    return changed


def expire(session: Session, row: Approval) -> bool:
    """Mark a pending approval whose time is up as ``expired`` (once)."""
    if row.state != "pending" or row.expires_at > utcnow():
        return False
    return _close(session, [row.id], state="expired", actor="server") == [row.id]


def withdraw(session: Session, user_id: uuid.UUID, machine_id: str,
             message: dict[str, Any]) -> list[uuid.UUID]:
    """The agent's :data:`~claude_notify.agent.wire.WITHDRAW`: the ids it closed."""
    state = "expired" if message.get("reason") == "expired" else "withdrawn"
    stmt = select(Approval.id).where(Approval.user_id == user_id,
                                     Approval.machine_id == machine_id,
                                     Approval.state == "pending")
    if isinstance(message.get("id"), str):
        try:
            stmt = stmt.where(Approval.id == uuid.UUID(message["id"]))
        except ValueError:
            return []
    elif isinstance(message.get("session_id"), str):
        stmt = stmt.where(Approval.session_id == message["session_id"][:256])
        if isinstance(message.get("digest"), str):
            stmt = stmt.where(Approval.digest == message["digest"][:64])
        elif isinstance(message.get("tool_name"), str):  # a plan's or a question's call
            stmt = stmt.where(Approval.tool_name == message["tool_name"][:128])
    else:
        return []
    return _close(session, list(session.scalars(stmt.limit(100))), state=state, actor="agent")


def expire_orphans(session: Session, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Expire those of ``ids`` still pending: their agent went away and did not come back."""
    return _close(session, ids, state="expired", actor="server")


def _close(session: Session, ids: list[uuid.UUID], *, state: str, actor: str) -> list[uuid.UUID]:
    closed = []
    for approval_id in ids:
        done = session.execute(
            update(Approval).where(Approval.id == approval_id, Approval.state == "pending")
            .values(state=state, decided_by=actor, decided_at=utcnow())
            .execution_options(synchronize_session=False))
        row = session.get(Approval, approval_id, populate_existing=True)
        if getattr(done, "rowcount", 0) == 1 and row is not None:
            closed.append(approval_id)
            _audit(session, row, actor=actor, outcome=state)
    return closed


_BY: Final = {"telegram": "Telegram", "web": "the web app", "email": "an e-mail link",
              "slack": "Slack", "discord": "Discord", "feishu": "Feishu"}
"""Where an answer came from, as the refusal Claude reads says it ("Denied from Telegram …")."""


def decision_of(row: Approval) -> wire.Decision:
    by = (row.decided_by or "").partition(":")[0] or None
    question = kinds.kind(row) == kinds.QUESTION  # its "suggestion" is the options chosen
    return wire.decision(id=str(row.id), state=row.state, digest=row.digest,
                         suggestion=None if question else row.suggestion, note=row.note,
                         by=_BY.get(by, by) if by else None,
                         answers=kinds.chosen(row) if question else None)


def unreported(session: Session, user_id: uuid.UUID, machine_id: str,
               ids: set[uuid.UUID]) -> list[wire.Decision]:
    """The answers to hand to the agent now (of those it waits on), marked as handed over."""
    rows = list(session.scalars(select(Approval).where(
        Approval.id.in_(ids), Approval.user_id == user_id, Approval.machine_id == machine_id,
        Approval.state != "pending", Approval.reported_at.is_(None))))
    now = utcnow()
    for row in rows:
        row.reported_at = now
    return [decision_of(row) for row in rows]


# --------------------------------------------------------------------------- Telegram cards


def parse(data: object) -> tuple[uuid.UUID, str] | None:
    """``(approval id, action)`` of a card's button, else ``None``."""
    if not isinstance(data, str) or len(data) > 64:
        return None
    prefix, ident, action = [*data.split(":"), "", ""][:3]
    if prefix != PREFIX or action not in ACTIONS or len(ident) != 32 or data.count(":") != 2:
        return None
    try:
        return uuid.UUID(hex=ident), action
    except ValueError:
        return None


_PRESS = re.compile(rf"{PREFIX}:([0-9a-f]{{32}}):({ALLOW}|{DENY}|{SESSION}|{NOTE}|{OPTION}[0-3])")


def parse_press(data: object) -> tuple[uuid.UUID, str] | None:
    """Like :func:`parse`, for the buttons only this module's cards (Telegram's) and Slack's
    have: a question's options (``o0``…``o3``) and "with a note…" (``n``)."""
    if not isinstance(data, str) or len(data) > 64 or not (match := _PRESS.fullmatch(data)):
        return None
    return uuid.UUID(hex=match.group(1)), match.group(2)


def outcome(row: Approval, *, mark: bool = True) -> str:
    """How it ended, as the cards say it (unescaped; ``mark``: with its ✅ or ⛔)."""
    said = kinds.words(row)
    if row.state not in ("allowed", "denied"):
        return _SHOWN.get(row.state, row.state)
    shown = said.allowed if row.state == "allowed" else said.denied
    if row.state == "allowed" and kinds.kind(row) == kinds.QUESTION:
        shown += f": {kinds.answered(row)}"
    if row.suggestion is not None and kinds.kind(row) == kinds.TOOL:
        shown += " for this session"
    return (("✅ " if row.state == "allowed" else "⛔ ") + shown) if mark else shown


def card_html(row: Approval) -> str:
    """The card: what runs, literally (a plan: the plan; a question: its questions and options),
    where, and until when; its outcome once there is one."""
    project = PurePath(row.cwd).name if row.cwd else ""
    where = " · ".join(html.escape(x) for x in (project, row.machine_id[:12]) if x)
    minutes = max(1, round((row.expires_at - row.created_at).total_seconds() / 60))
    shown = html.escape(row.display)
    body = {kinds.TOOL: f"<pre>{shown}</pre>", kinds.PLAN: f"<blockquote expandable>{shown}"
            "</blockquote>", kinds.QUESTION: shown}[kinds.kind(row)]
    text = f"🔐 <b>{html.escape(kinds.words(row).title)}</b>\n{where}\n{body}\n"
    if row.state == "pending":
        if (always := kinds.always_label(row)) is not None:
            text += f"Always in this session: {html.escape(always)}\n"
        if kinds.kind(row) == kinds.QUESTION and not kinds.buttons_answer(row):
            text += "Answer on the web page (Open), or in the terminal.\n"
        return text + f"<i>Answer within {minutes} min, or in the terminal.</i>"
    return text + f"<b>{html.escape(outcome(row))}</b>"


def buttons(row: Approval, app_url: str | None = None) -> dict[str, Any]:
    """Allow / Deny (a plan: Approve plan / Keep planning; one question: a button per option,
    and Don't answer), "Always in this session" where Claude offered it, "… with a note…", and
    the approval's page when the server knows its web app's address."""
    ident, said = row.id.hex, kinds.words(row)
    deny = {"text": said.deny, "callback_data": f"{PREFIX}:{ident}:{DENY}"}
    rows: list[list[dict[str, str]]]
    if kinds.kind(row) == kinds.QUESTION:
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        rows = [[{"text": label, "callback_data": f"{PREFIX}:{ident}:{OPTION}{i}"}]
                for i, label in enumerate(options)] + [[deny]]
    else:
        rows = [[{"text": said.allow, "callback_data": f"{PREFIX}:{ident}:{ALLOW}"}, deny]]
    if kinds.always_label(row) is not None:
        rows.append([{"text": "Always in this session",
                      "callback_data": f"{PREFIX}:{ident}:{SESSION}"}])
    rows.append([{"text": said.note, "callback_data": f"{PREFIX}:{ident}:{NOTE}"}])
    if app_url:
        rows.append([{"text": "Open", "url": f"{app_url.rstrip('/')}/approvals/{row.id}"}])
    return {"inline_keyboard": rows}


def client() -> Any:
    """An ``httpx.AsyncClient`` for the Bot API that does not build a TLS context each time:
    that costs tens of milliseconds of CPU on the event loop, which the agent's connection,
    about to hand the answer over, shares."""
    import httpx

    return httpx.AsyncClient(verify=_tls())


@functools.cache
def _tls() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


async def send_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Show a new approval in each chat that takes answers, and remember the messages."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.telegram import TelegramChannel

    def read() -> tuple[str, dict[str, Any], list[tuple[uuid.UUID, int]]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state != "pending":
                return None
            chats = [(c.id, c.config["chat_id"])
                     for c in answering_channels(session, row.user_id)]
            return card_html(row), buttons(row, runtime.settings.dashboard_url), chats

    found = await run_in_threadpool(read)
    if found is None:
        return
    text, markup, chats = found
    cards = []
    async with client() as http:
        bot = TelegramChannel(runtime.settings, http)
        for channel_id, chat_id in chats:
            answer = await bot.call("sendMessage", {
                "chat_id": chat_id, "text": text, "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True}, "reply_markup": markup})
            result = answer.get("result")
            if answer.get("ok") is True and isinstance(result, dict):
                cards.append({"channel": str(channel_id), "chat": chat_id,
                              "message": result.get("message_id")})
            else:
                log.warning("approval card not shown: Telegram %s",
                            str(answer.get("description"))[:200])

    if await run_in_threadpool(add_cards, runtime, approval_id, cards):
        await edit_cards(runtime, approval_id)


def add_cards(runtime: Runtime, approval_id: uuid.UUID, cards: list[dict[str, Any]]) -> bool:
    """Add the cards just sent to those other providers' sends wrote (a locked read and write:
    the sends run side by side), then read the state afresh: ``True`` if it was answered before
    that read (the caller edits the cards); after it, the answer's own edit finds them written.
    A card without a ``kind`` is Telegram's."""
    with runtime.sessions.begin() as session:
        known = session.execute(select(Approval.cards).where(Approval.id == approval_id)
                                .with_for_update()).first()
        if known is not None and cards:
            session.execute(update(Approval).where(Approval.id == approval_id)
                            .values(cards=[*(known[0] or []), *cards])
                            .execution_options(synchronize_session=False))
    with runtime.sessions() as session:
        state = session.scalar(select(Approval.state).where(Approval.id == approval_id))
    return state is not None and state != "pending"


async def edit_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Replace each card's buttons with the approval's outcome (the Discord and Feishu cards
    too, :mod:`.chat_approvals`)."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.telegram import TelegramChannel
    from claude_notify.cloud.server.relay.chat_approvals import edit_cards as elsewhere

    def read() -> tuple[str, list[dict[str, Any]]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state == "pending":
                return None
            # A note prompt (see :func:`ask_note`) is no card: it keeps its words; the Discord and
            # Feishu cards (a ``kind``) are edited by their modules.
            return card_html(row), [c for c in row.cards or []
                                    if not c.get("prompt") and "kind" not in c]

    found = await run_in_threadpool(read)
    if found is None:
        return
    text, cards = found
    async with client() as http:
        bot = TelegramChannel(runtime.settings, http)
        for card in cards:
            await bot.call("editMessageText", {
                "chat_id": card["chat"], "message_id": card["message"], "text": text,
                "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}})
    await elsewhere(runtime, approval_id)  # the Discord and Feishu cards


@dataclass(frozen=True, slots=True)
class Pressed:
    """What a press on a card did: the callback's answer, and what to do after it."""

    text: str | None = None
    wake: tuple[uuid.UUID, str] | None = None
    """The agent to hand the answer to."""
    edit: uuid.UUID | None = None
    """The approval whose cards to edit."""
    prompt: tuple[uuid.UUID, str] | None = None
    """"… with a note…" was pressed: ask for the note (the approval, and the card's channel)."""


def _card(row: Approval, chat_id: int, message_id: int) -> dict[str, Any] | None:
    return next((c for c in row.cards or [] if c.get("chat") == chat_id and "kind" not in c
                 and c.get("message") == message_id and not c.get("prompt")), None)


def press(session: Session, *, chat_id: int, chat_type: str, sender_id: int, message_id: int,
          data: str) -> Pressed:
    """Answer an approval from a press on one of its cards, if the owner pressed it."""
    from claude_notify.cloud.server.relay.telegram import not_heard

    parsed = parse_press(data)
    row = session.get(Approval, parsed[0]) if parsed else None
    card = _card(row, chat_id, message_id) if row is not None else None
    channel = session.get(Channel, uuid.UUID(card["channel"])) if card else None
    if row is None or parsed is None or channel is None or channel.user_id != row.user_id:
        return Pressed()  # not a card of ours in this chat: nobody to tell
    actor = f"telegram:{sender_id}"
    if (reason := not_heard(channel, sender_id, chat_type)) is not None:
        _audit(session, row, actor=actor, outcome="refused", reason=reason)
        return Pressed()  # strangers: the spinner stops, nothing else
    action = parsed[1]
    if action == SESSION and kinds.always_label(row) is None:
        return Pressed("Not offered for this request.")
    answers = None
    if action.startswith(OPTION):
        index = int(action[1:])
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        if not 0 <= index < len(options):
            _audit(session, row, actor=actor, outcome="refused",
                   reason=f"option {index + 1} is not one of this request's")
            return Pressed("Not an option of this question.")
        answers = [[index]]
    elif action in (ALLOW, SESSION) and kinds.kind(row) == kinds.QUESTION:
        return Pressed("Choose one of the options.")
    if action == NOTE:
        if row.state == "pending" and row.expires_at > utcnow() and card is not None:
            return Pressed("Reply to the message below with your note.",
                           prompt=(row.id, card["channel"]))
    elif decide(session, row.id, state="allowed" if answers else ACTIONS[action], by=actor,
                suggestion=0 if action == SESSION else None, answers=answers):
        return Pressed(f"{outcome(row, mark=False)}.", wake=(row.user_id, row.machine_id),
                       edit=row.id)
    if expire(session, row):  # nobody had noticed yet: the agent hears it, the cards show it
        return Pressed("Expired: answer in the terminal.", wake=(row.user_id, row.machine_id),
                       edit=row.id)
    if row.state == "expired":
        return Pressed("Expired: answer in the terminal.")
    return Pressed("Already answered.")


# --------------------------------------------------------------------------- notes from Telegram


def prompt_message(row: Approval) -> str:
    """What the bot asks when "… with a note…" is pressed (a ForceReply, replying to the card)."""
    return (f"✍️ {kinds.words(row).prompt} At most {kinds.NOTE_CHARS} characters; "
            "a plain Deny needs no note.")


def remember_prompt(session: Session, approval_id: uuid.UUID, *, channel: str, chat_id: int,
                    message_id: int) -> bool:
    """Keep the prompt's message with the approval's cards (marked ``prompt``), so a reply to
    it, and only to it, is taken as the note; ``False`` if the approval was answered meanwhile
    or asked for notes too often."""
    row = session.get(Approval, approval_id, with_for_update=True, populate_existing=True)
    if row is None or row.state != "pending":
        return False
    cards = list(row.cards or [])
    if sum(1 for c in cards if c.get("prompt")) >= PROMPTS_PER_APPROVAL:
        return False
    row.cards = [*cards, {"channel": channel, "chat": chat_id, "message": message_id,
                          "prompt": True}]
    return True


def note(session: Session, channels: list[Channel], *, chat_id: int, chat_type: str,
         sender_id: int, reply_to: int | None, text: str) -> Pressed | None:
    """A reply in a linked chat to one of the note prompts: the owner's note, and with it the
    denial (one conditional update, as a press). ``None`` when it is not a reply to a prompt
    (it is then an ordinary reply); a reply by anyone else is refused (audited) and unanswered."""
    from claude_notify.cloud.server.channels.text import clean
    from claude_notify.cloud.server.relay.telegram import not_heard

    if reply_to is None or not channels:
        return None
    since = utcnow() - timedelta(seconds=TIMEOUT_S[1] * 2)
    found = session.scalars(select(Approval).where(
        Approval.user_id.in_({c.user_id for c in channels}), Approval.created_at > since))
    for row in found:
        prompt = next((c for c in row.cards or [] if c.get("prompt") and c.get("chat") == chat_id
                       and c.get("message") == reply_to), None)
        channel = next((c for c in channels if prompt and str(c.id) == prompt.get("channel")),
                       None)
        if prompt is None or channel is None or channel.user_id != row.user_id:
            continue
        actor = f"telegram:{sender_id}"
        if (reason := not_heard(channel, sender_id, chat_type)) is not None:
            _audit(session, row, actor=actor, outcome="refused", reason=reason)
            return Pressed()
        said = clean(text).strip()
        if not said or len(said) > kinds.NOTE_CHARS:
            return Pressed(f"Not sent: a note is 1 to {kinds.NOTE_CHARS} characters. Reply "
                           "again, or press Deny.")
        if decide(session, row.id, state="denied", by=actor, note=said):
            return Pressed(f"{outcome(row, mark=False)}, with your note.",
                           wake=(row.user_id, row.machine_id), edit=row.id)
        if expire(session, row):
            return Pressed("Expired: answer in the terminal.",
                           wake=(row.user_id, row.machine_id), edit=row.id)
        return Pressed("Expired: answer in the terminal." if row.state == "expired"
                       else "Already answered.")
    return None
