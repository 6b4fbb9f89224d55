"""Web Push (RFC 8030) to a browser that tapped "Enable notifications" in the web app: the phone
gets task notifications without a chat app, through the web app's service worker.

The channel holds the browser's subscription (its push service URL and the keys to encrypt
to). A push is a small JSON document (title, body, the task's key, whether "Run again" is
offered), encrypted to the subscription (``aes128gcm``, RFC 8291) and signed with the server's
VAPID key (RFC 8292). The service worker (``web/static/sw.js``) turns it into a notification
with its actions and builds every link itself from the task's key, on its own origin: nothing
in a payload can point a click elsewhere, and the text in it is shown as text.

``pywebpush`` encrypts and signs; the request itself goes through the delivery client, to the
address :mod:`~claude_notify.cloud.server.urlguard` checked (the URL is the browser's to give,
so it gets a webhook's checks). A subscription the push service answers 404 or 410 for is gone
for good: the channel is removed.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.channels.vapid import b64url
from claude_notify.cloud.server.channels.webhook import RETRYABLE_STATUS, retry_after
from claude_notify.cloud.server.urlguard import (
    Unresolvable,
    UnsafeURL,
    check_resolved,
    check_url,
)

SCHEMA: Final = 1
"""The payload's version, for the service worker (``v``)."""
MAX_PAYLOAD: Final = 3000
"""Bytes of JSON before encryption: push services take 4,096 bytes of body, and encryption adds
103 (RFC 8291's header, padding delimiter and tag); the rest is headroom."""
TITLE_CHARS: Final = 120
BODY_CHARS: Final = 600
BODY_LINES: Final = 8
"""A lock screen shows a few lines: the end of the output, where the result is."""
TTL_S: Final = 86_400
"""How long the push service keeps a push for a phone that is off: a day-old task alert is
still worth seeing, a week-old one is noise."""
URGENT: Final = frozenset({"failure", "interrupted", "needs_input"})
JWT_LIFETIME_S: Final = 12 * 3600
"""Push services refuse a VAPID token valid for more than 24 hours."""


def _tail_end(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()][-BODY_LINES:]
    joined = "\n".join(lines)
    return joined if len(joined) <= BODY_CHARS else "…" + joined[-(BODY_CHARS - 1):]


def payload(message: Message, *, app_url: str | None) -> dict[str, Any]:
    """What the service worker receives (as JSON): text only, and the task's key."""
    out: dict[str, Any] = {"v": SCHEMA, "id": message.id,
                           "title": clean(message.subject)[:TITLE_CHARS] or "claude-notify"}
    if message.event is None:
        out["body"] = _tail_end(clean(message.text))
        return out
    _template, fields = templates.body_fields(message, app_url=app_url)
    parts = [str(fields[name]) for name in ("message", "match", "tail") if fields[name]]
    out["body"] = _tail_end("\n".join(parts))
    status = str(message.event.get("status") or "")
    out["status"] = status
    if task := message.event.get("task_id"):
        out["task"] = str(task)
    out["run"] = bool(message.actions and message.actions.run_again)
    return out


def encoded(message: Message, *, app_url: str | None) -> bytes:
    """The payload as UTF-8 JSON within :data:`MAX_PAYLOAD`, the body shortened to fit."""
    body = payload(message, app_url=app_url)
    while True:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) <= MAX_PAYLOAD or not body.get("body"):
            return data[:MAX_PAYLOAD] if len(data) > MAX_PAYLOAD else data
        body["body"] = "…" + str(body["body"])[len(data) - MAX_PAYLOAD + 8:]


def origin(url: str) -> str:
    """The VAPID ``aud`` claim: the push service's origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def topic(message: Message) -> str | None:
    """A ``Topic`` per task: a push still waiting for an offline phone is replaced by the same
    task's newer one rather than queued beside it (RFC 8030 §5.4)."""
    task = (message.event or {}).get("task_id")
    if not task:
        return None
    return b64url(hashlib.sha256(str(task).encode()).digest())[:32]


class WebPushChannel(HttpChannel):
    type: ClassVar[str] = "webpush"

    async def request(self, message: Message) -> Post | SendResult:
        urgent = (message.event or {}).get("status") in URGENT
        data = encoded(message, app_url=self.settings.dashboard_url)
        return await self.sealed(message.config, data, urgent=urgent, topic=topic(message))

    async def sealed(self, config: dict[str, Any], data: bytes, *, urgent: bool,
                     topic: str | None = None) -> Post | SendResult:
        """The call that pushes ``data`` (JSON within :data:`MAX_PAYLOAD`) to the subscription
        ``config`` holds, or why none is made; approvals are pushed through here too."""
        s = self.settings
        if not s.vapid_private_key or s.push_subject is None:
            return SendResult(ok=False, detail="Web Push is not configured on this server")
        endpoint = str(config["endpoint"])
        allow = s.webhook_allow_private
        try:
            check_url(endpoint, allow_private=allow)
            if urlsplit(endpoint).scheme != "https" and not allow:
                raise UnsafeURL("a push service URL must use https://")
            target = await check_resolved(endpoint, allow_private=allow)
        except Unresolvable as exc:
            return SendResult(ok=False, retryable=True, detail=str(exc))
        except UnsafeURL as exc:
            return SendResult(ok=False, detail=f"refused: {exc}")
        try:
            body, authorization = self._seal(config, endpoint, data)
        except Exception as exc:  # the push library's errors share no base class
            return SendResult(ok=False, detail=f"cannot seal the push: {type(exc).__name__}")
        headers = {"content-type": "application/octet-stream", "content-encoding": "aes128gcm",
                   "ttl": str(TTL_S), "authorization": authorization, "host": target.host,
                   "urgency": "high" if urgent else "normal"}
        if topic:
            headers["topic"] = topic
        return Post(target.url, {
            "content": body,
            "headers": headers,
            "timeout": s.provider_timeout_s,
            "follow_redirects": False,
            "extensions": {"sni_hostname": target.sni},
        })

    def _seal(self, config: dict[str, Any], endpoint: str, data: bytes) -> tuple[bytes, str]:
        """The encrypted body and the VAPID ``Authorization`` header. The push library is
        imported here, on a server that sends pushes, and nowhere else."""
        from pywebpush import Vapid, WebPusher  # type: ignore[import-untyped]  # no stubs

        subscription = {"endpoint": endpoint,
                        "keys": {"p256dh": config["p256dh"], "auth": config["auth"]}}
        body = WebPusher(subscription).encode(data, "aes128gcm")["body"]
        claims = {"aud": origin(endpoint), "sub": self.settings.push_subject,
                  "exp": int(time.time()) + JWT_LIFETIME_S}
        vapid = Vapid.from_raw(str(self.settings.vapid_private_key).encode())
        return bytes(body), str(vapid.sign(claims)["Authorization"])

    def classify(self, response: httpx.Response) -> SendResult:
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(ok=True, detail=f"HTTP {code}")
        if code in (404, 410):
            return SendResult(ok=False, remove_channel=True,
                              detail=f"HTTP {code}: the browser's subscription is gone (it "
                                     "was turned off or expired); channel removed")
        if code == 403:
            return SendResult(ok=False, detail="HTTP 403: the push service refused this "
                                               "server's VAPID signature (was its key changed?)")
        if code == 413:
            return SendResult(ok=False, detail="HTTP 413: the push service refused the size")
        if code in RETRYABLE_STATUS:
            return SendResult(ok=False, retryable=True, detail=f"HTTP {code}",
                              retry_after=retry_after(response))
        return SendResult(ok=False, detail=f"HTTP {code}")
