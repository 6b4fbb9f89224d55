"""Structured logs: one JSON object per line, and nothing secret in them.

Access lines carry the method, the path without its query string (verification and sign-in
links carry one-time secrets there), the status and the duration; tokens, addresses' contents and
channel configs are never logged. Whatever slips through anyway (a third-party error quoting a
URL with the bot token in it) is masked on the way out by :class:`~.redact.RedactingFilter`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import IO, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claude_notify.cloud.server.redact import RedactingFilter

access = logging.getLogger("claude_notify.server.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int = logging.INFO, *, stream: IO[str] | None = None) -> None:
    """Send every log record to stderr as JSON (the server and worker commands call this)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request's URL at INFO, and the Bot API's URLs hold the bot token.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


class AccessLogMiddleware:
    """One structured line per request, with the query string left out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access.info(
                "%s %s %s", scope["method"], scope["path"], status, extra={"fields": fields}
            )
