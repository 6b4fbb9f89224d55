"""Microsoft Teams through a Workflows webhook (Power Automate's "When a Teams webhook request
is received"): one Adaptive Card — the outcome, the facts, the last lines in monospace, a
button to the task.

Everything a task sent goes into ``RichTextBlock`` text runs, which Teams shows as plain text:
unlike ``TextBlock`` and ``FactSet`` it reads no Markdown, so output cannot make a link or
format the card. The card stays under Teams' 28 KB message size. The user's URL (its query
holds the workflow's signature: a secret, never shown again) is pinned to Microsoft's hosts
when saved.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.channels.webhook import RETRYABLE_STATUS, retry_after

MAX_BYTES: Final = 27_000
"""Teams refuses a message over 28 KB; the card with its envelope stays under this."""
CARD_VERSION: Final = "1.4"


def _runs(*texts: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A ``RichTextBlock`` of text runs: plain text, whatever characters it holds."""
    return {"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": clean(text), **style} for text, style in texts if text]}


def _card(body: list[dict[str, Any]], link: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open task", "url": link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}


def build_payload(message: Message, *, app_url: str | None) -> dict[str, Any]:
    """The workflow's request body: the card, within Teams' size."""
    bold = {"weight": "Bolder", "size": "Medium"}
    if message.event is None:
        return _card([_runs((message.subject, bold)), _runs((message.text, {}))], None)
    _template, fields = templates.body_fields(message, app_url=app_url)
    facts = "   ".join(f"{name}: {value}" for name, value in (
        ("Exit code", fields["exit_code"]), ("Took", fields["duration"]),
        ("Host", fields["host"]), ("Directory", fields["cwd"])) if value not in ("", None))
    head = [_runs((str(fields["headline"] or "claude-notify"), bold)),
            _runs((facts, {"isSubtle": True}))]
    if fields["message"]:
        head.append(_runs((str(fields["message"])[:2000], {})))
    link = str(fields.get("link") or "") or None
    tail = str(fields["tail"] or "")
    payload = _card([*head, _runs((tail, {"fontType": "Monospace"}))], link)
    while tail and len(json.dumps(payload).encode()) > MAX_BYTES:  # keep the tail's end
        tail = "…" + tail[len(tail) // 4:]
        payload = _card([*head, _runs((tail, {"fontType": "Monospace"}))], link)
    return payload


class TeamsChannel(HttpChannel):
    type: ClassVar[str] = "teams"

    async def request(self, message: Message) -> Post | SendResult:
        url = str(message.config.get("webhook_url", ""))
        base = self.settings.teams_api_base
        if base:  # tests: the same path and query, sent to a stand-in
            parts, to = urlsplit(url), urlsplit(base)
            url = urlunsplit((to.scheme, to.netloc, parts.path, parts.query, ""))
        return Post(url, {
            "json": build_payload(message, app_url=self.settings.dashboard_url),
            "timeout": self.settings.provider_timeout_s,
            "follow_redirects": False,
        })

    def classify(self, response: httpx.Response) -> SendResult:
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(ok=True, detail=f"HTTP {code}")
        try:
            error = response.json().get("error") or {}
            reason = clean(str(error.get("code") or error.get("message") or ""))[:200]
        except (ValueError, AttributeError):
            reason = ""
        detail = f"Teams {code}: {reason}".rstrip(": ")
        if code in RETRYABLE_STATUS:
            return SendResult(ok=False, retryable=True, detail=detail,
                              retry_after=retry_after(response))
        return SendResult(ok=False, detail=detail, disable_channel=code in (404, 410))
