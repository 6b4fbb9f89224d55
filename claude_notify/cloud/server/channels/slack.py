"""Slack incoming webhooks: a Block Kit message — a header with the outcome, the command's facts,
the last lines in a code block, a button to the task — under a plain-text fallback.

Everything a task sent is escaped for Slack's ``mrkdwn`` (``&``, ``<``, ``>``), so it can neither
mention anyone (``<!channel>``, ``<@U123>``) nor make a link; a code block's fence inside the
output is broken so the output cannot leave its block. The user's URL is pinned to
``hooks.slack.com`` when saved; only its path is used, joined to the operator's
``slack_api_base``, so a stored URL can never send anywhere else.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.channels.text import clean

_PATH = re.compile(r"^/services/[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]+$")
LIMITS: Final = {"section": 3000, "header": 150, "button": 75, "url": 3000, "text": 4000,
                 "context": 2000}  # fmt: skip
"""Block Kit's documented limits (characters): a section's text, a header's, a button's label
and URL, a context element's; the fallback ``text`` is kept under the size Slack shows whole."""
GONE: Final = frozenset({"no_service", "no_team", "team_disabled", "channel_not_found",
                         "channel_is_archived", "invalid_token"})
"""Answers meaning the webhook will never work again: the channel is switched off."""
MAX_RETRY_AFTER_S: Final = 3600.0
RUN_ACTION: Final = "cn_run"
LOG_ACTION: Final = "cn_log"
"""The ``action_id`` of the relay's buttons (Slack sends it back with each press)."""


def webhook_path(url: str) -> str | None:
    """``/services/T…/B…/…`` from a Slack webhook URL, or ``None`` if it is not one."""
    path = urlsplit(url).path
    return path if _PATH.match(path) else None


def escape(text: str) -> str:
    """Text shown as itself in ``mrkdwn``: no mention, link or entity can be formed."""
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _code(text: str, limit: int) -> str:
    """``text`` in a code block within ``limit`` characters, its last lines kept (a tail's end
    matters most) and any fence inside broken."""
    body = escape(text).replace("```", "`\u200b``")
    room = limit - 8
    if len(body) > room:
        body = "…" + body[-(room - 1):]
    return f"```\n{body}\n```"


def _buttons(message: Message, link: str | None) -> list[dict[str, Any]]:
    """The task's link, and the relay's presses (their values are opaque handles: ``run:`` or
    ``log:`` and the notification's id, looked up again when pressed; see
    :mod:`claude_notify.cloud.server.relay.slack_actions`)."""
    elements: list[dict[str, Any]] = []
    if link and len(link) <= LIMITS["url"]:
        elements.append({"type": "button", "text": {"type": "plain_text", "text": "Open task"},
                         "url": link, "action_id": "open_task"})
    pressed = message.actions
    for label, value, action_id in (("Run again", pressed and pressed.run_again, RUN_ACTION),
                                     ("Show log", pressed and pressed.show_log, LOG_ACTION)):
        if value:
            elements.append({"type": "button", "text": {"type": "plain_text", "text": label},
                             "value": value, "action_id": action_id})
    return elements


def build_payload(message: Message, *, app_url: str | None) -> dict[str, Any]:
    """The incoming-webhook body, every Block Kit limit respected. Relay buttons come only with
    :attr:`Message.actions`, which the sender leaves out when the server takes no presses."""
    if message.event is None:  # a test or a notice: its subject and text
        return {"text": _clip(escape(message.subject), LIMITS["text"]), "blocks": [
            {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                        "text": _clip(clean(message.subject), LIMITS["header"])}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": _clip(escape(message.text), LIMITS["section"])}},
        ]}
    _template, fields = templates.body_fields(message, app_url=app_url)
    headline = str(fields["headline"] or "claude-notify")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _clip(clean(headline), LIMITS["header"])}}]
    facts = [f"*{name}:* {escape(str(value))}" for name, value in (
        ("Exit code", fields["exit_code"]), ("Took", fields["duration"]),
        ("Host", fields["host"]), ("Directory", fields["cwd"])) if value not in ("", None)]
    if facts:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _clip(fact, LIMITS["context"])} for fact in facts]})
    if fields["message"]:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": _clip(escape(str(fields["message"])), LIMITS["section"])}})
    if fields["tail"]:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": _code(str(fields["tail"]), LIMITS["section"])}})
    if buttons := _buttons(message, fields.get("link")):
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": _clip(escape(headline), LIMITS["text"]), "blocks": blocks}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


class SlackChannel(HttpChannel):
    type: ClassVar[str] = "slack"

    async def request(self, message: Message) -> Post | SendResult:
        path = webhook_path(str(message.config.get("webhook_url", "")))
        if path is None:
            return SendResult(ok=False, detail="not a Slack incoming-webhook URL")
        if not self.settings.slack_signing_secret:  # no Slack app: a press would reach nobody
            message = dataclasses.replace(message, actions=None)
        return Post(self.settings.slack_api_base.rstrip("/") + path, {
            "json": build_payload(message, app_url=self.settings.dashboard_url),
            "timeout": self.settings.provider_timeout_s,
            "follow_redirects": False,
        })

    def classify(self, response: httpx.Response) -> SendResult:
        """Slack answers a webhook with a status and a short plain-text reason (``ok``,
        ``invalid_payload``, ``channel_is_archived``…)."""
        status = response.status_code
        reason = clean(response.text.strip())[:100]
        if 200 <= status < 300:
            return SendResult(ok=True, detail=f"HTTP {status}")
        detail = f"Slack {status}: {reason}".rstrip(": ")
        if status == 429 or status >= 500:
            return SendResult(ok=False, retryable=True, detail=detail,
                              retry_after=_retry_after(response))
        return SendResult(ok=False, detail=detail,
                          disable_channel=status in (404, 410) or reason in GONE)
