"""A server channel: each notification is POSTed as JSON to the channel's URL. The server's
operator enables it with ``CLAUDE_NOTIFY_SERVER_CHANNEL_PLUGINS=example-hook``; a user adds one
with ``claude-notify channels add example-hook --set url=https://…`` or on the web app's
Channels page."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.settings import Settings


class JsonHookChannel:
    type: ClassVar[str] = "example-hook"
    plugin_api: ClassVar[int] = 1
    verification: ClassVar[str | None] = None  # the URL is the owner's own: nothing to confirm
    accepts_replies: ClassVar[bool] = False
    form_field: ClassVar[str] = "url"  # the one value the web app's add form asks for

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.http = http  # the server's client: its address checks and timeouts apply

    @staticmethod
    def validate_config(config: dict[str, Any]) -> dict[str, Any]:
        """What a channel of this type holds; a ValueError's message is the user's answer."""
        if set(config) != {"url"}:
            raise ValueError("config takes exactly one key, url")
        url = config["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("config.url must be an http(s):// URL")
        return {"url": url}

    async def send(self, message: Message) -> SendResult:
        """Classify the answer; never raise for a failed delivery."""
        body = {"id": message.id, "kind": message.kind, "subject": message.subject,
                "text": message.text}
        try:
            answer = await self.http.post(message.config["url"], json=body)
        except httpx.HTTPError as exc:
            return SendResult(ok=False, retryable=True, detail=f"unreachable: {exc}")
        if answer.status_code >= 500 or answer.status_code == 429:
            return SendResult(ok=False, retryable=True, detail=f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            return SendResult(ok=False, detail=f"HTTP {answer.status_code}")
        return SendResult(ok=True)
