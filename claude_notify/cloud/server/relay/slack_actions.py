"""Presses on a Slack notification's buttons ("Run again", "Show log"), from the operator's
Slack app: ``POST /v1/slack/interactions``, its Interactivity request URL.

The request is signed like a slash command (``v0`` HMAC, five-minute window: checked by the
endpoint with :func:`claude_notify.cloud.server.relay.slack.verified` before anything is read);
its body is ``payload=<JSON>``. A button's value is an opaque handle (``run:`` or ``log:`` and the
notification's id, :mod:`.actions`), looked up again here: a press can only ever mean "that
task's command, for that task's run". Only the Slack account linked to the notification's own
channel (``team:user``, as ``/claude-notify link`` recorded it) counts: anyone else's press, in
a shared channel or from another workspace with the same user id, queues nothing and is audited
for the owner. A replayed request (its ``trigger_id`` seen before) does nothing again.

Slack wants a 200 within three seconds and reads no answer from it: the reply goes to the
press's ``response_url``, ephemeral (only the presser sees it). That URL is Slack's to give, in
a signed body; still, only its path is used, joined to the operator's ``slack_api_base``, so it
can never send anywhere but Slack.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.channels.slack import LOG_ACTION, RUN_ACTION, escape
from claude_notify.cloud.server.db.models import Channel, Delivery, Event, Task, User
from claude_notify.cloud.server.relay import actions, approvals, queue, slack_approvals
from claude_notify.cloud.server.relay.chat import KEYS
from claude_notify.cloud.server.relay.slack import message
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

log = logging.getLogger("claude_notify.server.relay")

_RESPONSE_PATH: Final = re.compile(r"^/actions/[A-Z0-9]+/\d+/[A-Za-z0-9]+$")
LOG_CHARS: Final = 2800
"""Characters of log shown: in a code block, within a Slack message's 3,000."""


@dataclass(frozen=True, slots=True)
class Press:
    sender: str
    """``team_id:user_id``: the account as linking recorded it."""
    value: str
    trigger_id: str
    response_url: str


@dataclass(frozen=True, slots=True)
class Answered:
    text: str
    """One line (or a log) for the presser only."""
    woken: tuple[uuid.UUID, str] | None = None
    code: bool = False
    """Show ``text`` in a code block (a log)."""
    edited: uuid.UUID | None = None
    """An approval answered by the press: its Telegram cards are to be edited."""


def parse(body: bytes) -> Press | None:
    """The button press in a ``block_actions`` payload, else ``None``."""
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    try:
        payload = json.loads(fields.get("payload", [""])[0])
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    team, user = payload.get("team"), payload.get("user")
    pressed = payload.get("actions")
    if not (isinstance(team, dict) and isinstance(user, dict) and isinstance(pressed, list)
            and pressed and isinstance(pressed[0], dict)):
        return None
    team_id, user_id = str(team.get("id") or ""), str(user.get("id") or "")
    action_id = str(pressed[0].get("action_id") or "")
    if not team_id or not user_id or not (action_id in (RUN_ACTION, LOG_ACTION)
                                          or action_id.startswith("cn_ap_")):
        return None  # Slack reports link buttons ("Open task") too: nothing to answer
    return Press(sender=f"{team_id}:{user_id}", value=str(pressed[0].get("value") or "")[:256],
                 trigger_id=str(payload.get("trigger_id") or "")[:128],
                 response_url=str(payload.get("response_url") or ""))


def response_target(settings: Settings, response_url: str) -> str | None:
    """Where to post the answer: the URL's ``/actions/…`` path on ``slack_api_base``."""
    parts = urlsplit(response_url)
    if parts.hostname != "hooks.slack.com" or not _RESPONSE_PATH.match(parts.path):
        return None
    return settings.slack_api_base.rstrip("/") + parts.path


def response(answered: Answered) -> dict[str, Any]:
    """The ephemeral reply, shown as text (a log inside a code block it cannot leave)."""
    if not answered.code:
        return {**message(answered.text), "replace_original": False}
    body = escape(answered.text).replace("```", "`\u200b``")[-LOG_CHARS:]
    return {"response_type": "ephemeral", "replace_original": False,
            "text": f"```\n{body}\n```"}


def handle(runtime: Runtime, relay: Relay, press: Press) -> Answered:
    """Run again or show the log (or refuse, audited) for a press on one of our messages; a
    press on a permission request's card answers it (:mod:`.slack_approvals`)."""
    if press.value.startswith(f"{approvals.PREFIX}:"):
        with runtime.sessions.begin() as session:
            pressed = slack_approvals.press(session, sender=press.sender, value=press.value)
        return Answered(pressed.text, woken=pressed.wake, edited=pressed.edit)
    parsed = actions.parse(press.value)
    with runtime.sessions.begin() as session:
        row = session.get(Delivery, parsed[1]) if parsed else None
        channel = session.get(Channel, row.channel_id) if row and row.channel_id else None
        if row is None or channel is None or channel.type != "slack":
            return Answered("Not run: this is not a button of a task notification.")
        user = session.get(User, channel.user_id)
        if user is None:
            return Answered("Not run: this is not a button of a task notification.")
        task = session.get(Task, row.task_id) if row.task_id else None
        action = parsed[0] if parsed else "?"
        origin = queue.Origin(user_id=user.id, plan=auth.person_plan(session, user.id),
                              source="slack",
                              actor=f"slack:{press.sender}")
        what = (f"show log: {task.cmd}" if action == actions.LOG else task.cmd) if task else (
            f"button {press.value[:64]!r}")

        def refuse(reason: str) -> Answered:
            queue.audit(session, origin, command=what, outcome="refused", reason=reason,
                        machine_id=task.machine_id if task else None,
                        session_id=task.session_id if task else None)
            return Answered(f"Not run: {reason}.")

        if channel.config.get(KEYS["slack"]) != press.sender:
            return refuse("only the Slack account linked to this channel can press its buttons")
        if task is None:
            return refuse("the task of this notification is gone")
        if action == actions.LOG:
            if (limited := queue.over_limit(session, origin, relay.policy)) is not None:
                return refuse(limited)
            queue.audit(session, origin, command=what, outcome="shown",
                        machine_id=task.machine_id, session_id=task.session_id)
            return Answered(_tail(session, task), code=True)
        return _run_again(session, relay, origin, task, queue.target_of(session, row), refuse)


def _run_again(session: Session, relay: Relay, origin: queue.Origin, task: Task,
               target: queue.Target | None, refuse: Any) -> Answered:
    payload = session.scalar(select(Event.payload).where(Event.task_id == task.id)
                             .order_by(Event.received_at.desc()).limit(1))
    claude = isinstance(payload, dict) and payload.get("source") == "claude-code"
    if claude or target is None or not task.cmd.strip():
        answered: Answered = refuse("a Claude Code session is continued by a reply, not run "
                                    "again" if claude else "this task cannot be run again from "
                                    "here")
        return answered
    try:
        row = queue.enqueue(session, origin, to=target, command=task.cmd, policy=relay.policy)
    except queue.CommandRefused as refused:
        return Answered(f"Not run: {refused.message}.")
    return Answered(f"Queued on {row.machine_id[:12]}: {task.cmd[:200]}",
                    woken=(origin.user_id, row.machine_id))


def _tail(session: Session, task: Task) -> str:
    """The task's last reported output (its event's tail)."""
    payload = session.scalar(select(Event.payload).where(Event.task_id == task.id)
                             .order_by(Event.received_at.desc()).limit(1))
    tail = str(payload.get("tail") or "") if isinstance(payload, dict) else ""
    return tail[-LOG_CHARS:] if tail.strip() else "(no output was reported for this task)"


async def respond(settings: Settings, press: Press, answered: Answered) -> None:
    """Post the answer to the press's ``response_url`` (after the 200: Slack's three seconds
    are for the acknowledgement). A failure is logged, never retried: Slack's URL lives 30
    minutes and the presser can press again."""
    import httpx

    target = response_target(settings, press.response_url)
    if target is None:
        log.warning("slack: a press with no usable response_url; answer not sent")
        return
    try:
        async with httpx.AsyncClient(timeout=settings.provider_timeout_s) as http:
            sent = await http.post(target, json=response(answered), follow_redirects=False)
    except httpx.HTTPError as exc:
        log.warning("slack: answering a press failed: %s", type(exc).__name__)
        return
    if sent.status_code >= 300:
        log.warning("slack: answering a press: HTTP %s", sent.status_code)
