"""Generic webhooks signed per the Standard Webhooks spec; the payload is the task event.

``webhook-id`` is the notification id and stays the same across retries, so receivers can
de-duplicate; redirects are not followed (a 3xx is a failure); 410 disables the channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

import httpx

from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.urlguard import (
    Unresolvable,
    UnsafeURL,
    check_resolved,
    check_url,
)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` under the ``whsec_`` key."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(message: Message) -> dict[str, Any]:
    """What the receiver gets: the event for event messages, the text for tests."""
    if message.event is not None:
        return {"type": f"task.{message.event.get('type', 'event')}", "data": message.event}
    return {"type": f"notification.{message.kind}", "data": {"subject": message.subject}}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when given as a number (the date form is rare for APIs)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookChannel(HttpChannel):
    type: ClassVar[str] = "webhook"

    async def request(self, message: Message) -> Post | SendResult:
        url = str(message.config["url"])
        allow = self.settings.webhook_allow_private
        try:
            check_url(url, allow_private=allow)
            target = await check_resolved(url, allow_private=allow)
        except Unresolvable as exc:
            return SendResult(ok=False, retryable=True, detail=str(exc))
        except UnsafeURL as exc:
            return SendResult(ok=False, detail=f"refused: {exc}")
        body = json.dumps(payload(message), separators=(",", ":")).encode()
        msg_id = f"msg_{message.id}"
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "claude-notify-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(str(message.config["secret"]), msg_id, stamp, body),
            "host": target.host,
        }
        return Post(target.url, {
            "content": body,
            "headers": headers,
            "timeout": self.settings.webhook_timeout_s,
            "follow_redirects": False,
            "extensions": {"sni_hostname": target.sni},
        })

    def classify(self, response: httpx.Response) -> SendResult:
        """2xx is delivered; 410 is gone for good; 429/5xx/timeouts retry; other answers are
        final."""
        code = response.status_code
        detail = f"HTTP {code}"
        if 200 <= code < 300:
            return SendResult(ok=True, detail=detail)
        if code == 410:
            return SendResult(ok=False, detail="HTTP 410: endpoint gone", disable_channel=True)
        if code in RETRYABLE_STATUS or 300 <= code < 400:
            return SendResult(
                ok=False, retryable=True, detail=detail, retry_after=retry_after(response)
            )
        return SendResult(ok=False, detail=detail)
