"""Discord webhooks: one embed (title, colour by outcome, exit and duration fields, the tail in a
code block, the host in the footer), mentions disabled, ``?wait=true`` for the message id.

The user's URL is pinned to Discord's hosts when saved; only its path is used, joined to the
operator's ``discord_api_base``, so a stored URL can never send anywhere else.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import (
    HttpChannel,
    Message,
    Post,
    SendResult,
    json_object,
)
from claude_notify.cloud.server.channels.markdown import discord_escape
from claude_notify.cloud.server.channels.text import clean, utf16_len

_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d+)/([\w-]+)/?$")
LIMITS = {"content": 2000, "title": 256, "description": 4096, "field_value": 1024,
          "footer": 2048, "total": 6000, "username": 80}  # fmt: skip
COLOURS = {"success": 0x2ECC71, "failure": 0xE74C3C, "interrupted": 0xE67E22,
           "needs_input": 0x3498DB, "running": 0x3498DB}  # fmt: skip
GREY = 0x95A5A6
MAX_RETRY_AFTER_S = 3600.0

DISCORD_TEMPLATE = """\
{% if message %}{{ message }}
{% endif %}{% if match %}Matched: `{{ match }}`
{% endif %}{% if tail %}```
{{ tail }}
```{% endif %}"""
"""The embed description by default: the title, fields and footer carry the rest."""
NOTICE_TEMPLATE = "{{ message }}"
"""Test and verification messages: their subject is already the embed's title."""


def webhook_path(url: str) -> str | None:
    """``/api/webhooks/{id}/{token}`` from a Discord webhook URL, or ``None`` if it is not one."""
    path = urlsplit(url).path
    return path.rstrip("/") if _PATH.match(path) else None


def _clip(text: str, limit: int) -> str:
    return text if utf16_len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def build_payload(message: Message, *, app_url: str | None) -> dict[str, Any]:
    """The execute-webhook body, every embed limit respected."""
    template, fields = templates.body_fields(message, app_url=app_url, default=DISCORD_TEMPLATE)
    if message.event is None:  # a test or notice: the subject is the title, the text alone below
        template = templates.cached(NOTICE_TEMPLATE)
    title = _clip(str(fields["headline"] or "claude-notify"), LIMITS["title"])
    embed: dict[str, Any] = {
        "title": title,
        "color": COLOURS.get(str(message.event.get("status")), GREY) if message.event else GREY,
    }
    facts = []
    if message.event is not None:
        if fields["exit_code"] != "":
            facts.append({"name": "Exit code", "value": str(fields["exit_code"]), "inline": True})
        if fields["duration"]:
            facts.append({"name": "Duration", "value": str(fields["duration"]), "inline": True})
        if fields["cwd"]:
            value = _clip(discord_escape(str(fields["cwd"])), LIMITS["field_value"])
            facts.append({"name": "Directory", "value": value, "inline": False})
    if facts:
        embed["fields"] = facts
    if fields["host"]:
        embed["footer"] = {"text": _clip(str(fields["host"]), 256)}
    if fields.get("link"):
        embed["url"] = fields["link"]
    if message.event and message.event.get("ended_at"):
        embed["timestamp"] = message.event["ended_at"]
    used = embed_size(embed)
    room = min(LIMITS["description"], LIMITS["total"] - used)
    if description := template.render_fitted(fields, "discord", limit=room):
        embed["description"] = description
    return {
        "username": "claude-notify",
        "content": _clip(discord_escape(title), LIMITS["content"]),
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    }


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6,000 of all embeds in a message."""
    parts = [embed.get("title", ""), embed.get("description", "")]
    parts += [f["name"] + f["value"] for f in embed.get("fields", [])]
    parts.append(embed.get("footer", {}).get("text", ""))
    return sum(utf16_len(p) for p in parts)


def retry_after(response: httpx.Response, body: dict[str, Any]) -> float | None:
    """Seconds to wait: the ``Retry-After`` header first (the body's value has been seen in
    milliseconds on webhooks, discord-api-docs #4722), clamped to an hour."""
    for raw in (response.headers.get("retry-after"), body.get("retry_after")):
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        return min(max(value, 0.0), MAX_RETRY_AFTER_S)
    return None


class DiscordChannel(HttpChannel):
    type: ClassVar[str] = "discord"

    async def request(self, message: Message) -> Post | SendResult:
        path = webhook_path(str(message.config.get("webhook_url", "")))
        if path is None:
            return SendResult(ok=False, detail="not a Discord webhook URL")
        return Post(self.settings.discord_api_base.rstrip("/") + path, {
            "params": {"wait": "true"},
            "json": build_payload(message, app_url=self.settings.dashboard_url),
            "timeout": self.settings.provider_timeout_s,
            "follow_redirects": False,
        })

    def classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        if status == 204 or (200 <= status < 300 and not body):
            return SendResult(ok=True, detail=f"HTTP {status}")
        if 200 <= status < 300:
            message_id = str(body.get("id")) if body.get("id") is not None else None
            return SendResult(ok=True, detail=f"message {message_id}", provider_id=message_id)
        reason = clean(str(body.get("message") or response.reason_phrase or ""))[:200]
        if body.get("errors"):  # 400: which embed field broke which limit
            reason += " " + clean(str(body["errors"]))[:200]
        detail = f"Discord {status}: {reason}".rstrip(": ")
        if status == 429 or status >= 500:
            return SendResult(
                ok=False, retryable=True, detail=detail, retry_after=retry_after(response, body)
            )
        gone = status in (401, 404) or body.get("code") in (10015, 50027)
        return SendResult(ok=False, detail=detail, disable_channel=gone)
