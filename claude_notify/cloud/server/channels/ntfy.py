"""ntfy topics (ntfy.sh or a self-hosted server): one JSON publish to the server's root with
the topic, a title, the message (plain text: ntfy shows it as it is), a priority by outcome,
tags for the icon, and the task link as the click action.

The channel holds the topic's URL (``https://ntfy.sh/my-topic``) and, for a protected topic,
an access token (kept as the channel's ``secret``: never shown again). The address is checked
and pinned like a webhook's, so a topic URL cannot reach the operator's private network.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.channels.webhook import RETRYABLE_STATUS, retry_after
from claude_notify.cloud.server.urlguard import (
    Unresolvable,
    UnsafeURL,
    check_resolved,
    check_url,
)

MESSAGE_BYTES: Final = 4000
"""ntfy turns a longer message into an attachment (its limit is 4,096 bytes)."""
TITLE_CHARS: Final = 250
PRIORITY: Final = {"failure": 4, "interrupted": 4, "needs_input": 4}
"""ntfy's 1–5: failures and questions ring louder than the default 3."""
TAGS: Final = {"success": "white_check_mark", "failure": "x", "interrupted": "warning",
               "needs_input": "question"}  # fmt: skip


def topic_of(url: str) -> tuple[str, str]:
    """The server's root URL and the topic of a topic URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/", parts.path.strip("/")


def _clip_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return "…" + data[-(limit - 3):].decode(errors="ignore")  # the end of a tail matters most


def body(message: Message, *, app_url: str | None, topic: str) -> dict[str, Any]:
    out: dict[str, Any] = {"topic": topic, "title": clean(message.subject)[:TITLE_CHARS]}
    if message.event is None:
        out["message"] = _clip_bytes(clean(message.text), MESSAGE_BYTES)
        return out
    _template, fields = templates.body_fields(message, app_url=app_url)
    status = str(message.event.get("status"))
    lines = [str(fields[name]) for name in ("message", "match", "tail") if fields[name]]
    out["message"] = _clip_bytes("\n".join(lines) or clean(message.subject), MESSAGE_BYTES)
    out["priority"] = PRIORITY.get(status, 3)
    if status in TAGS:
        out["tags"] = [TAGS[status]]
    if fields.get("link"):
        out["click"] = fields["link"]
    return out


class NtfyChannel(HttpChannel):
    type: ClassVar[str] = "ntfy"

    async def request(self, message: Message) -> Post | SendResult:
        url = str(message.config["url"])
        root, topic = topic_of(url)
        allow = self.settings.webhook_allow_private
        try:
            check_url(root, allow_private=allow)
            target = await check_resolved(root, allow_private=allow)
        except Unresolvable as exc:
            return SendResult(ok=False, retryable=True, detail=str(exc))
        except UnsafeURL as exc:
            return SendResult(ok=False, detail=f"refused: {exc}")
        headers = {"content-type": "application/json", "host": target.host}
        if token := message.config.get("secret"):
            headers["authorization"] = f"Bearer {token}"
        payload = body(message, app_url=self.settings.dashboard_url, topic=topic)
        return Post(target.url, {
            "content": json.dumps(payload, ensure_ascii=False).encode(),
            "headers": headers,
            "timeout": self.settings.provider_timeout_s,
            "follow_redirects": False,
            "extensions": {"sni_hostname": target.sni},
        })

    def classify(self, response: httpx.Response) -> SendResult:
        code = response.status_code
        if 200 <= code < 300:
            try:
                message_id = str(response.json().get("id") or "") or None
            except ValueError:
                message_id = None
            return SendResult(ok=True, detail=f"HTTP {code}", provider_id=message_id)
        try:
            reason = clean(str(response.json().get("error") or ""))[:200]
        except ValueError:
            reason = ""
        detail = f"ntfy {code}: {reason}".rstrip(": ")
        if code in RETRYABLE_STATUS:
            return SendResult(ok=False, retryable=True, detail=detail,
                              retry_after=retry_after(response))
        return SendResult(ok=False, detail=detail)
