"""Permission requests as Slack cards, answered with their buttons (the operator's Slack app).

When an approval is filed, each of the owner's Slack channels whose Slack account is linked
(``/claude-notify link``) gets a card through its incoming webhook: the tool, the project and
machine, the call literally in a code block, and **Allow**, **Deny** and, where Claude offered
one, **Always in this session** (a plan: **Approve plan** / **Keep planning**; one question: a
button per option, several: a link to the approval's page; see :mod:`.approval_kinds`). A
button's value is the opaque handle the Telegram cards use (``ap:<id>:<a|d|s|o0…o3>``). A press
arrives at ``POST /v1/slack/interactions`` (signature and replay checked there) and counts only
from the Slack account linked on one of the owner's Slack channels; the answer is one
conditional update (first wins, a late press is told so), audited, the agent is woken and the
Telegram cards are edited. The card itself stays (an incoming webhook's message cannot be
edited): a later press is answered "already answered".

Only with the Slack app's signing secret set: without it a press would reach nobody, and no card
is sent, and a Slack account alone does not make someone who can be asked
(:func:`claude_notify.cloud.server.relay.approvals.file`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.slack import LIMITS, _code, escape, webhook_path
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import approvals, queue
from claude_notify.cloud.server.relay.chat import KEYS
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams.access import private_to

log = logging.getLogger("claude_notify.server.relay")

ACTION_IDS: Final = {approvals.ALLOW: "cn_ap_allow", approvals.DENY: "cn_ap_deny",
                     approvals.SESSION: "cn_ap_session"}
OPTION_ID: Final = "cn_ap_option_{}"


def linked_channels(session: Session, user_id: uuid.UUID) -> list[Channel]:
    """The owner's enabled Slack channels whose Slack account is linked (who may press)."""
    found = session.scalars(select(Channel).where(
        private_to(user_id), Channel.type == "slack", Channel.enabled.is_(True)))
    return [c for c in found if c.config.get(KEYS["slack"])]


def card(row: Approval, app_url: str | None = None) -> dict[str, Any]:
    """The incoming-webhook body: text only, Block Kit's limits kept. A plan or a question is
    shown from its start (a command from its end); several questions, or one that takes several
    answers, link to the approval's page instead of offering buttons."""
    said = kinds.words(row)
    title = clean(said.title)[:LIMITS["header"]]
    where = " · ".join(x for x in (PurePath(row.cwd).name if row.cwd else "",
                                   row.machine_id[:12]) if x)
    ident = row.id.hex

    def button(text: str, action: str, action_id: str, style: str | None = None) -> dict[str, Any]:
        made = {"type": "button", "text": {"type": "plain_text", "text": _clip(text, 75)},
                "value": f"{approvals.PREFIX}:{ident}:{action}", "action_id": action_id}
        return made | ({"style": style} if style else {})

    deny = button(said.deny, approvals.DENY, ACTION_IDS[approvals.DENY], "danger")
    if kinds.kind(row) == kinds.QUESTION:
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        buttons = [button(label, f"{approvals.OPTION}{i}", OPTION_ID.format(i))
                   for i, label in enumerate(options)] + [deny]
    else:
        buttons = [button(said.allow, approvals.ALLOW, ACTION_IDS[approvals.ALLOW], "primary"),
                   deny]
    if kinds.always_label(row) is not None:
        buttons.append(button("Always in this session", approvals.SESSION,
                              ACTION_IDS[approvals.SESSION]))
    if app_url and kinds.kind(row) == kinds.QUESTION and not kinds.buttons_answer(row):
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Answer"},
                        "url": f"{app_url.rstrip('/')}/approvals/{row.id}",
                        "action_id": "open_approval"})  # a link: Slack reports it, we ignore it
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]
    if where:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": escape(where)[:LIMITS["context"]]}]})
    shown = _code(row.display, LIMITS["section"]) if kinds.kind(row) == kinds.TOOL else (
        _head_code(row.display, LIMITS["section"]))
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": shown}},
               {"type": "actions", "elements": buttons}]
    return {"text": escape(title), "blocks": blocks}


def _clip(text: str, limit: int) -> str:
    text = clean(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _head_code(text: str, limit: int) -> str:
    """``text`` in a code block within ``limit`` characters, its first lines kept (a plan, a
    question read from their start), any fence inside broken, nothing formed (escaped)."""
    body = escape(text).replace("```", "`\u200b``")
    room = limit - 8
    if len(body) > room:
        cut = body[:room - 1]
        cut = cut[:cut.rfind("&")] if cut.rfind("&") > cut.rfind(";") else cut  # no half entity
        body = cut + "…"
    return f"```\n{body}\n```"


async def post_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Send a pending approval's card to each linked Slack channel of its owner."""
    import httpx
    from starlette.concurrency import run_in_threadpool

    settings = runtime.settings
    if not settings.slack_signing_secret:
        return

    def read() -> tuple[dict[str, Any], list[str]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state != "pending":
                return None
            paths = [path for c in linked_channels(session, row.user_id)
                     if (path := webhook_path(str(c.config.get("webhook_url", ""))))]
            return card(row, settings.dashboard_url), paths

    found = await run_in_threadpool(read)
    if found is None:
        return
    body, paths = found
    async with httpx.AsyncClient(timeout=settings.provider_timeout_s) as http:
        for path in paths:
            try:
                sent = await http.post(settings.slack_api_base.rstrip("/") + path, json=body,
                                       follow_redirects=False)
            except httpx.HTTPError as exc:
                log.warning("approval card not sent to Slack: %s", type(exc).__name__)
                continue
            if sent.status_code >= 300:
                log.warning("approval card not sent to Slack: HTTP %s", sent.status_code)


@dataclass(frozen=True, slots=True)
class Pressed:
    text: str
    wake: tuple[uuid.UUID, str] | None = None
    edit: uuid.UUID | None = None
    """The approval whose Telegram cards now need editing."""


def press(session: Session, *, sender: str, value: str) -> Pressed:
    """Answer an approval for a press on its Slack card (or refuse, audited for the owner)."""
    parsed = approvals.parse_press(value)
    row = session.get(Approval, parsed[0]) if parsed else None
    if parsed is None or row is None or parsed[1] == approvals.NOTE:
        return Pressed("Not answered: this is not a permission request.")
    actor = f"slack:{sender}"
    mine = [c for c in linked_channels(session, row.user_id)
            if c.config.get(KEYS["slack"]) == sender]
    if not mine:
        _refuse(session, row, actor, "a press by a Slack account not linked by the owner")
        return Pressed("Not answered: only the Slack account linked to the owner's channel "
                       "can answer.")
    action, answers = parsed[1], None
    if action == approvals.SESSION and kinds.always_label(row) is None:
        return Pressed("Not answered: this request offers no answer for the session.")
    if action.startswith(approvals.OPTION):
        index = int(action[1:])
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        if not 0 <= index < len(options):
            _refuse(session, row, actor, f"option {index + 1} is not one of this request's")
            return Pressed("Not answered: not an option of this question.")
        answers = [[index]]
    elif action == approvals.ALLOW and kinds.kind(row) == kinds.QUESTION:
        return Pressed("Not answered: choose one of the options.")
    state = "allowed" if answers else approvals.ACTIONS[action]
    suggestion = 0 if action == approvals.SESSION else None
    if approvals.decide(session, row.id, state=state, by=actor, suggestion=suggestion,
                        answers=answers):
        return Pressed(approvals.outcome(row), wake=(row.user_id, row.machine_id), edit=row.id)
    if approvals.expire(session, row):
        return Pressed("Expired: answer in the terminal.", wake=(row.user_id, row.machine_id),
                       edit=row.id)
    return Pressed("Already answered.")


def _refuse(session: Session, row: Approval, actor: str, reason: str) -> None:
    origin = queue.Origin(user_id=row.user_id, plan="", source="approval", actor=actor)
    queue.audit(session, origin, command=f"{row.tool_name}: {row.display}", outcome="refused",
                reason=reason, machine_id=row.machine_id, session_id=row.session_id)
