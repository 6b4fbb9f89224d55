"""What the Discord and Feishu approval cards share (:mod:`.discord_approvals`,
:mod:`.feishu_approvals`): who can be asked there, the rules a press passes, the answer.

Both providers' cards go to the account the owner linked with ``/link`` (its id in the
channel's config, :data:`~claude_notify.cloud.server.relay.chat.KEYS`), in the direct chat with
the operator's bot. Each card sent is remembered in ``Approval.cards`` with its ``kind``, the
account it went to (``user``), its chat and its message. A press counts only when all hold:

* it is on one of the approval's own cards of that provider (its chat and message);
* it comes from the account that card went to, still linked on one of the owner's enabled
  channels of that provider (never "anyone in the chat");
* in a group, only if that channel has group replies on (and still only the owner).

Anything else is refused, audited for the owner, and changes nothing. An accepted press is one
conditional update (:func:`~claude_notify.cloud.server.relay.approvals.decide`): the first
answer wins, a later press is told "already answered".
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import approvals
from claude_notify.cloud.server.relay.chat import KEYS
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams.access import private_to

log = logging.getLogger("claude_notify.server.relay")

NOT_OURS: Final = "Not answered: this is not a permission request."
STRANGER: Final = "Not answered: only the account the owner linked can answer."
ELSEWHERE: Final = ("Not answered: answer on the request's own card, in the direct chat with "
                    "the bot.")


def linked(session: Session, user_id: uuid.UUID, kind: str) -> list[Channel]:
    """The owner's enabled ``kind`` (``discord``, ``feishu``) channels with a linked account."""
    found = session.scalars(select(Channel).where(
        private_to(user_id), Channel.type == kind, Channel.enabled.is_(True)))
    return [c for c in found if isinstance(c.config.get(KEYS[kind]), str)
            and c.config[KEYS[kind]]]


def accounts(session: Session, user_id: uuid.UUID, kind: str) -> list[str]:
    """The linked accounts a card goes to, each once (one account may be linked on several
    channels)."""
    return list(dict.fromkeys(str(c.config[KEYS[kind]]) for c in linked(session, user_id, kind)))


def where(row: Approval) -> str:
    """``project · machine``, as plain text."""
    project = PurePath(row.cwd).name if row.cwd else ""
    return clean(" · ".join(x for x in (project, row.machine_id[:12]) if x))


def minutes(row: Approval) -> int:
    return max(1, round((row.expires_at - row.created_at).total_seconds() / 60))


@dataclass(frozen=True, slots=True)
class Pressed:
    """What a press did: one line for the presser, and what to do after answering it."""

    text: str
    row: Approval | None = None
    """The approval pressed, when the press was the owner's (to show its card again)."""
    changed: bool = False
    """This press closed the approval (answered, or found it expired)."""
    wake: tuple[uuid.UUID, str] | None = None
    """The agent to hand the answer to."""
    edit: uuid.UUID | None = None
    """The approval whose other cards to edit."""


def press(session: Session, *, kind: str, data: object, sender: str, chat: str, message: str,
          group: bool) -> Pressed:
    """Answer an approval for a press on one of its ``kind`` cards, or refuse it (audited)."""
    parsed = approvals.parse_press(data)
    row = session.get(Approval, parsed[0]) if parsed else None
    if parsed is None or row is None or parsed[1] == approvals.NOTE:  # no note buttons here
        return Pressed(NOT_OURS)
    mine = [c for c in linked(session, row.user_id, kind) if c.config[KEYS[kind]] == sender]
    card = next((c for c in row.cards or [] if c.get("kind") == kind and c.get("user") == sender
                 and c.get("chat") == chat and c.get("message") == message), None)
    actor = f"{kind}:{sender}"[:128]
    if not mine:
        return _refuse(session, row, actor, STRANGER, f"a press by a {kind.title()} account the "
                       "owner did not link")
    if card is None:
        return _refuse(session, row, actor, ELSEWHERE, "a press outside the request's own cards")
    if group and not any(c.config.get("allow_group_replies") is True for c in mine):
        return _refuse(session, row, actor, ELSEWHERE,
                       "answers are taken only in the direct chat with the bot")
    action, answers = parsed[1], None
    if action == approvals.SESSION and kinds.always_label(row) is None:
        return Pressed("Not offered for this request.", row)
    if action.startswith(approvals.OPTION):  # one question's option (see approval_kinds)
        index = int(action[1:])
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        if not 0 <= index < len(options):
            return _refuse(session, row, actor, "Not answered: not an option of this question.",
                           f"option {index + 1} is not one of this request's")
        answers = [[index]]
    elif action == approvals.ALLOW and kinds.kind(row) == kinds.QUESTION:
        return Pressed("Not answered: choose one of the options.", row)
    state = "allowed" if answers else approvals.ACTIONS[action]
    if approvals.decide(session, row.id, state=state, by=actor, answers=answers,
                        suggestion=0 if action == approvals.SESSION else None):
        return Pressed(f"{approvals.outcome(row, mark=False)}.", row, changed=True,
                       wake=(row.user_id, row.machine_id), edit=row.id)
    if approvals.expire(session, row):  # nobody had noticed: the agent hears it, cards show it
        return Pressed("Expired: answer in the terminal.", row, changed=True,
                       wake=(row.user_id, row.machine_id), edit=row.id)
    if row.state == "expired":
        return Pressed("Expired: answer in the terminal.", row)
    return Pressed("Already answered.", row)


def _refuse(session: Session, row: Approval, actor: str, text: str, reason: str) -> Pressed:
    approvals._audit(session, row, actor=actor, outcome="refused", reason=reason)
    return Pressed(text)


async def edit_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Show an answered approval's outcome on its Discord and Feishu cards."""
    from claude_notify.cloud.server.relay import discord_approvals, feishu_approvals

    done = await asyncio.gather(discord_approvals.edit_cards(runtime, approval_id),
                                feishu_approvals.edit_cards(runtime, approval_id),
                                return_exceptions=True)
    for failed in done:
        if isinstance(failed, Exception):
            log.warning("approval cards not edited: %s: %s", type(failed).__name__, failed)


async def to_send(runtime: Runtime, approval_id: uuid.UUID, kind: str,
                  card: Callable[[Approval], dict[str, Any]]) -> tuple[dict[str, Any],
                                                                       list[str]] | None:
    """A pending approval's ``kind`` card and the accounts of that kind its owner linked;
    ``None`` when there is nothing to send."""
    from starlette.concurrency import run_in_threadpool

    def read() -> tuple[dict[str, Any], list[str]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state != "pending":
                return None
            return card(row), accounts(session, row.user_id, kind)

    found = await run_in_threadpool(read)
    return found if found is not None and found[1] else None


async def sent(runtime: Runtime, approval_id: uuid.UUID, cards: list[dict[str, Any]],
               edit: Callable[[Runtime, uuid.UUID], Any]) -> None:
    """Keep the cards just sent with the approval, and ``edit`` them at once if it was
    answered while they were on their way."""
    from starlette.concurrency import run_in_threadpool

    if not cards:
        return
    answered: bool = await run_in_threadpool(approvals.add_cards, runtime, approval_id, cards)
    if answered:
        await edit(runtime, approval_id)


async def to_edit(runtime: Runtime, approval_id: uuid.UUID, kind: str,
                  card: Callable[[Approval], dict[str, Any]]) -> tuple[dict[str, Any],
                                                                       list[dict[str, Any]]] | None:
    """An answered approval's ``kind`` card (showing the outcome) and the cards of that kind
    to edit; ``None`` while it is pending or when it has none."""
    from starlette.concurrency import run_in_threadpool

    def read() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state == "pending":
                return None
            return card(row), [c for c in row.cards or [] if c.get("kind") == kind]

    found = await run_in_threadpool(read)
    return found if found is not None and found[1] else None
