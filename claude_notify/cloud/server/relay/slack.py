"""Slack slash commands from the operator's Slack app: ``/claude-notify link CODE`` and
``/claude-notify run <cmd>`` (the command's name is the operator's choice; its text is read).

Slack signs each request with the app's signing secret: ``X-Slack-Signature`` is ``v0=`` and the
HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}``. A request whose signature is wrong
or whose timestamp is more than :data:`MAX_SKEW_S` away is refused before its body is read; a
replayed ``trigger_id`` runs nothing again. The sender is the Slack user in its workspace
(``team_id:user_id``): only the account that sent ``link`` with its channel's code can ``run``
(:mod:`.chat`), and in a shared channel only when the owner turned on group replies. The answer
is ephemeral (only the sender sees it), mentions cannot form in it, and it comes within Slack's
three seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Final
from urllib.parse import parse_qs

from claude_notify.cloud.server.channels.slack import escape
from claude_notify.cloud.server.relay import chat
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime

MAX_SKEW_S: Final = 300.0
TEXT_LIMIT: Final = 3000


def verified(secret: str, signature: str | None, timestamp: str | None, body: bytes,
             *, now: float | None = None) -> bool:
    """Whether Slack signed ``body`` at ``timestamp`` with the app's secret, recently."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW_S:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def form(body: bytes) -> dict[str, str]:
    """The slash command's fields (the first value of each)."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def message(text: str) -> dict[str, Any]:
    """An ephemeral answer shown as text: nothing in it can mention or link."""
    shown = escape(text)
    if len(shown) > TEXT_LIMIT:
        shown = shown[: TEXT_LIMIT - 1] + "…"
    return {"response_type": "ephemeral", "text": shown}


def answer(runtime: Runtime, relay: Relay, fields: dict[str, str]) -> dict[str, Any]:
    """The response to one verified slash command (blocking: call it off the event loop)."""
    team, user = fields.get("team_id", ""), fields.get("user_id", "")
    if not team or not user:
        return message("This request names no Slack user.")
    sender = f"{team}:{user}"
    verb, _, rest = fields.get("text", "").strip().partition(" ")
    rest = rest.strip()
    if verb == "link" and rest:
        return message(chat.link(runtime, "slack", sender, rest).text)
    if verb == "run" and rest:
        group = not fields.get("channel_id", "").startswith("D")  # D…: the direct chat
        said = chat.Said(source="slack", sender=sender, command=rest, group=group)
        return message(chat.run(runtime, relay, said).text)
    name = fields.get("command") or "/claude-notify"
    return message(f"Use {name} link CODE or {name} run COMMAND.")
