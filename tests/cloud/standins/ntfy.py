"""ntfy publish stand-in: ``POST /`` with a JSON message (topic, message, title, priority,
tags, click), as ntfy's "publish as JSON" documents it.

It checks the topic's name, a priority of 1–5, tags as a list of strings, an http(s) click URL,
and the message's size (over 4,096 bytes ntfy would turn it into an attachment: recorded);
a protected topic wants ``Authorization: Bearer <token>`` and answers 403 ``forbidden``
otherwise, in ntfy's error shape. It answers with the message object ntfy returns.
"""

from __future__ import annotations

import itertools
import re

from standins import Answer, Request, StandIn, json_body

_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
_FIELDS = {"topic", "message", "title", "priority", "tags", "click", "markdown", "icon",
           "actions", "attach", "filename", "delay", "email", "call"}


def _error(status: int, code: int, error: str) -> Answer:
    return status, {"code": code, "http": status, "error": error}, {}


class NtfyStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.protected: dict[str, str] = {}
        """Topic → the access token it wants."""
        self._ids = itertools.count(1)

    def url(self, topic: str = "builds") -> str:
        return f"{self.base_url}/{topic}"

    def handle(self, request: Request) -> Answer:
        if request.method != "POST" or request.path != "/":
            return _error(404, 40401, "page not found")
        body, bad = json_body(request, lambda why: _error(400, 40024, why))
        if bad is not None:
            return bad
        if not isinstance(body, dict) or set(body) - _FIELDS:
            return _error(400, 40024, "invalid request: unknown JSON field")
        topic = body.get("topic")
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            return _error(400, 40009, "invalid topic")
        wanted = self.protected.get(topic)
        if wanted is not None and request.headers.get("authorization") != f"Bearer {wanted}":
            return _error(403, 40301, "forbidden")
        priority = body.get("priority", 3)
        if not isinstance(priority, int) or not 1 <= priority <= 5:
            return _error(400, 40007, "invalid priority")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return _error(400, 40024, "invalid request: tags")
        click = body.get("click", "")
        if click and not str(click).startswith(("http://", "https://")):
            return _error(400, 40013, "invalid click URL")
        message = str(body.get("message", ""))
        request.displayed = {"body": body,
                             "attachment": len(message.encode()) > 4096}
        return 200, {"id": f"m{next(self._ids)}", "time": 1, "event": "message",
                     "topic": topic, "message": message}, {}
