"""Feishu / Lark custom bots: an interactive card, signed when the bot has a secret.

The card has a header coloured by outcome, a ``lark_md`` summary, the tail as ``plain_text``
(shown literally, never parsed) and a button to the task. Feishu answers HTTP 200 for most
errors, so the body's ``code`` decides: 11232 (frequency limited) is retried, the rest are final.
``<at …>`` in user text is neutralised everywhere, so a log line cannot ping a whole group.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
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
from claude_notify.cloud.server.channels.text import clean, trim_top
from claude_notify.cloud.server.settings import Settings

_PATH = re.compile(r"^/open-apis/bot/v2/hook/[\w-]+$")
BODY_LIMIT = 19_000
"""Bytes of JSON; Feishu refuses bodies over about 20 KB."""
RETRYABLE_CODES = frozenset({11232})
GONE_CODES = frozenset({19001})
"""The webhook token is invalid: the bot was removed from the group."""
COLOURS = {"success": "green", "failure": "red", "interrupted": "orange",
           "needs_input": "blue", "running": "blue"}  # fmt: skip

FEISHU_TEMPLATE = """\
**{{ outcome | capitalize }}**{% if exit_code != "" %} · exit {{ exit_code }}{% endif %}\
{% if duration %} · {{ duration }}{% endif %}{% if host %} · {{ host }}{% endif %}
{% if cwd %}{{ cwd }}
{% endif %}{% if message %}{{ message }}
{% endif %}{% if match %}Matched: {{ match }}{% endif %}"""
"""The card's summary; the tail gets its own plain-text element."""

_AT = re.compile(r"<(\s*/?\s*at\b)", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Text that cannot form an ``<at …>`` tag (a zero-width space after the ``<``)."""
    return _AT.sub("<\u200b\\1", text)


def sign(timestamp: int, secret: str) -> str:
    """Feishu's signature: HMAC-SHA256 keyed with ``timestamp + "\\n" + secret`` over nothing."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def hook_url(url: str, settings: Settings) -> str | None:
    """The operator's base for the user's host (Feishu or Lark) plus the user's hook path."""
    parts = urlsplit(url)
    if not _PATH.match(parts.path):
        return None
    host = (parts.hostname or "").lower()
    base = settings.lark_api_base if host.endswith("larksuite.com") else settings.feishu_api_base
    return base.rstrip("/") + parts.path


def build_card(message: Message, *, app_url: str | None) -> dict[str, Any]:
    """The interactive card; the whole request stays under :data:`BODY_LIMIT` bytes."""
    template, fields = templates.body_fields(message, app_url=app_url, default=FEISHU_TEMPLATE)
    separate_tail = message.event is not None and not _uses_tail(message)
    tail = str(fields["tail"]) if separate_tail else ""
    summary_fields = {**fields, "tail": ""} if separate_tail else fields
    summary = template.render_fitted(summary_fields, "lark_md", limit=4000)
    elements: list[dict[str, Any]] = [
        {"tag": "div", "text": {"tag": "lark_md", "content": neutralise(summary) or " "}}
    ]
    tail_text: dict[str, Any] = {"tag": "plain_text", "content": ""}
    if tail:
        elements += [{"tag": "hr"}, {"tag": "div", "text": tail_text}]
    if link := fields.get("link"):
        button = {"tag": "button", "text": {"tag": "plain_text", "content": "Open task"},
                  "type": "primary", "url": link}  # fmt: skip
        elements.append({"tag": "action", "actions": [button]})
    status = str(message.event.get("status")) if message.event else ""
    card = {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": neutralise(str(fields["headline"]))[:200]},
            "template": COLOURS.get(status, "grey"),
        },
        "elements": elements,
    }
    if tail:
        room = BODY_LIMIT - len(encode(card)) - 200
        tail_text["content"] = neutralise(_fit_bytes(tail, room))
    return card


def encode(body: dict[str, Any]) -> bytes:
    """The request body exactly as sent (UTF-8, not ASCII-escaped: sizes are measured on it)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _uses_tail(message: Message) -> bool:
    """A custom template that places the tail itself gets no separate tail element."""
    return "tail" in str(message.config.get("template") or "")


def _fit_bytes(text: str, room: int) -> str:
    """The tail trimmed from the top until its JSON-escaped form fits ``room`` bytes."""
    keep = len(text)
    while keep > 0 and len(encode({"t": trim_top(text, keep)})) > room:
        keep = keep * 3 // 4 - 1
    return trim_top(text, keep) if keep > 0 else ""


def build_body(message: Message, *, app_url: str | None, now: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"msg_type": "interactive", "card": build_card(message, app_url=app_url)}
    secret = message.config.get("secret")
    if secret:
        stamp = int(time.time()) if now is None else now
        body = {"timestamp": str(stamp), "sign": sign(stamp, str(secret)), **body}
    return body


class FeishuChannel(HttpChannel):
    type: ClassVar[str] = "feishu"

    async def request(self, message: Message) -> Post | SendResult:
        url = hook_url(str(message.config.get("webhook_url", "")), self.settings)
        if url is None:
            return SendResult(ok=False, detail="not a Feishu/Lark bot webhook URL")
        return Post(url, {
            "content": encode(build_body(message, app_url=self.settings.dashboard_url)),
            "headers": {"content-type": "application/json; charset=utf-8"},
            "timeout": self.settings.provider_timeout_s,
            "follow_redirects": False,
        })

    def classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        if status == 429 or status >= 500:
            return SendResult(ok=False, retryable=True, detail=f"Feishu HTTP {status}")
        code = body.get("code", body.get("StatusCode"))
        if status == 200 and code == 0:
            return SendResult(ok=True, detail="Feishu: success")
        reason = clean(str(body.get("msg") or body.get("StatusMessage") or "no reason"))
        detail = f"Feishu {code if code is not None else 'HTTP ' + str(status)}: {reason[:200]}"
        if code in RETRYABLE_CODES:
            return SendResult(ok=False, retryable=True, detail=detail)
        return SendResult(ok=False, detail=detail, disable_channel=code in GONE_CODES)
