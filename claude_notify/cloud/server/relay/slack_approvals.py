"""Permission requests as Slack cards, answered with their buttons (the operator's Slack app).

When an approval is filed, each of the owner's Slack channels whose Slack account is linked
(``/claude-notify link``) gets a card through its incoming webhook: the tool, the project and
machine, the call literally in a code block, and **Allow**, **Deny** and, where Claude offered
one, **Always in this session**. A button's value is the opaque handle the Telegram cards use
(``ap:<id>:<a|d|s>``). A press arrives at ``POST /v1/slack/interactions`` (signature and replay
checked there) and counts only from the Slack account linked on one of the owner's Slack
channels; the answer is one conditional update (first wins, a late press is told so), audited,
the agent is woken and the Telegram cards are edited. The card itself stays (an incoming
webhook's message cannot be edited): a later press is answered "already answered".

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
from claude_notify.cloud.server.relay import approvals, queue
from claude_notify.cloud.server.relay.chat import KEYS
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime

log = logging.getLogger("claude_notify.server.relay")

ACTION_IDS: Final = {approvals.ALLOW: "cn_ap_allow", approvals.DENY: "cn_ap_deny",
                     approvals.SESSION: "cn_ap_session"}
_SAID: Final = {"allowed": "✅ Allowed", "denied": "⛔ Denied"}


def linked_channels(session: Session, user_id: uuid.UUID) -> list[Channel]:
    """The owner's enabled Slack channels whose Slack account is linked (who may press)."""
    found = session.scalars(select(Channel).where(
        Channel.user_id == user_id, Channel.type == "slack", Channel.enabled.is_(True)))
    return [c for c in found if c.config.get(KEYS["slack"])]


def card(row: Approval) -> dict[str, Any]:
    """The incoming-webhook body: text only, Block Kit's limits kept."""
    title = clean(f"Claude wants to use {row.tool_name}")[:LIMITS["header"]]
    where = " · ".join(x for x in (PurePath(row.cwd).name if row.cwd else "",
                                   row.machine_id[:12]) if x)
    ident = row.id.hex
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": "Allow"},
                "style": "primary", "value": f"{approvals.PREFIX}:{ident}:{approvals.ALLOW}",
                "action_id": ACTION_IDS[approvals.ALLOW]},
               {"type": "button", "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger", "value": f"{approvals.PREFIX}:{ident}:{approvals.DENY}",
                "action_id": ACTION_IDS[approvals.DENY]}]
    if row.suggestions:
        buttons.append({"type": "button",
                        "text": {"type": "plain_text", "text": "Always in this session"},
                        "value": f"{approvals.PREFIX}:{ident}:{approvals.SESSION}",
                        "action_id": ACTION_IDS[approvals.SESSION]})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]
    if where:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": escape(where)[:LIMITS["context"]]}]})
    blocks += [{"type": "section", "text": {"type": "mrkdwn",
                                            "text": _code(row.display, LIMITS["section"])}},
               {"type": "actions", "elements": buttons}]
    return {"text": escape(title), "blocks": blocks}


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
            return card(row), paths

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
    parsed = approvals.parse(value)
    row = session.get(Approval, parsed[0]) if parsed else None
    if parsed is None or row is None:
        return Pressed("Not answered: this is not a permission request.")
    mine = [c for c in linked_channels(session, row.user_id)
            if c.config.get(KEYS["slack"]) == sender]
    if not mine:
        origin = queue.Origin(user_id=row.user_id, plan="", source="approval",
                              actor=f"slack:{sender}")
        queue.audit(session, origin, command=f"{row.tool_name}: {row.display}",
                    outcome="refused", reason="a press by a Slack account not linked by the "
                    "owner", machine_id=row.machine_id, session_id=row.session_id)
        return Pressed("Not answered: only the Slack account linked to the owner's channel "
                       "can answer.")
    state = approvals.ACTIONS[parsed[1]]
    suggestion = 0 if parsed[1] == approvals.SESSION and row.suggestions else None
    if parsed[1] == approvals.SESSION and not row.suggestions:
        return Pressed("Not answered: this request offers no answer for the session.")
    if approvals.decide(session, row.id, state=state, by=f"slack:{sender}",
                        suggestion=suggestion):
        said = _SAID[state] + (" for this session" if suggestion is not None else "")
        return Pressed(said, wake=(row.user_id, row.machine_id), edit=row.id)
    if approvals.expire(session, row):
        return Pressed("Expired: answer in the terminal.", wake=(row.user_id, row.machine_id),
                       edit=row.id)
    return Pressed("Already answered.")
