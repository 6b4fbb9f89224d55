"""Slack incoming-webhook stand-in: ``POST /services/{T}/{B}/{secret}``.

It checks a body the way Slack does — JSON, ``text`` or ``blocks`` present, at most 50 blocks,
each block's documented limits (a section's text ≤ 3,000 characters, a header's plain text
≤ 150, a button's label ≤ 75 and URL ≤ 3,000, a context's ≤ 10 elements) — and answers as
Slack does: ``200 ok``, ``400 invalid_payload`` / ``invalid_blocks``, ``404 no_service`` for an
unknown webhook, ``410 channel_is_archived``. It records what would notify someone: ``mrkdwn``
text containing ``<!channel>``, ``<!here>``, ``<!everyone>`` or ``<@U…>``. A button's ``value``
may be 2,000 characters and its ``action_id`` 255.

A press's ``response_url`` (``POST /actions/{T}/{id}/{token}``, handed out by
:meth:`SlackStandIn.response_url`) takes a JSON message: ``text`` (≤ 3,000 characters here, a
section's limit) or blocks, ``response_type`` ``ephemeral`` or ``in_channel``, optional
``replace_original``; an unknown one is 404 ``expired_url``.
"""

from __future__ import annotations

import re
from typing import Any

from standins import Answer, Request, StandIn, json_body

_PATH = re.compile(r"^/services/([A-Z0-9]+)/([A-Z0-9]+)/([A-Za-z0-9]+)$")
_PING = re.compile(r"<!(channel|here|everyone)(\|[^>]*)?>|<@[UW][A-Z0-9]+>")
_LINK = re.compile(r"<(https?://|mailto:)[^>]*>")


def block_errors(body: dict[str, Any]) -> list[str]:
    """What Slack would refuse in ``body``, one reason each."""
    errors: list[str] = []
    blocks = body.get("blocks")
    if not body.get("text") and not blocks:
        errors.append("no_text")
    if blocks is None:
        return errors
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*errors, "invalid_blocks: at most 50 blocks"]
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        text = (block.get("text") or {}) if isinstance(block, dict) else {}
        if kind == "section" and not 1 <= len(str(text.get("text", ""))) <= 3000:
            errors.append(f"invalid_blocks: blocks[{i}].text must be 1-3000 characters")
        elif kind == "header" and (text.get("type") != "plain_text"
                                   or not 1 <= len(str(text.get("text", ""))) <= 150):
            errors.append(f"invalid_blocks: blocks[{i}] header text: plain_text, 1-150")
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10:
                errors.append(f"invalid_blocks: blocks[{i}] context: 1-10 elements")
            errors += [f"invalid_blocks: blocks[{i}].elements[{j}] over 2000 characters"
                       for j, e in enumerate(elements) if len(str(e.get("text", ""))) > 2000]
        elif kind == "actions":
            for j, e in enumerate(block.get("elements") or []):
                label = str((e.get("text") or {}).get("text", ""))
                if e.get("type") != "button" or not 1 <= len(label) <= 75:
                    errors.append(f"invalid_blocks: blocks[{i}].elements[{j}] button label")
                if len(str(e.get("url", ""))) > 3000:
                    errors.append(f"invalid_blocks: blocks[{i}].elements[{j}] url too long")
                if len(str(e.get("value", ""))) > 2000 or len(str(e.get("action_id", ""))) > 255:
                    errors.append(f"invalid_blocks: blocks[{i}].elements[{j}] value/action_id")
        elif kind not in ("section", "header", "context", "actions", "divider"):
            errors.append(f"invalid_blocks: blocks[{i}] unknown type {kind!r}")
    return errors


def mrkdwn_texts(body: dict[str, Any]) -> list[str]:
    texts = [str(body.get("text", ""))]
    for block in body.get("blocks") or []:
        text = block.get("text") or {}
        if text.get("type") == "mrkdwn":
            texts.append(str(text.get("text", "")))
        texts += [str(e.get("text", "")) for e in block.get("elements") or []
                  if e.get("type") == "mrkdwn"]
    return texts


class SlackStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.webhooks = {"T0001/B0001": "Xsecret42"}
        self.archived: set[str] = set()
        self.responses: set[str] = set()
        """The ``/actions/…`` paths of the presses' response URLs handed out."""

    def response_url(self, team: str = "T0001") -> str:
        """A press's fresh ``response_url`` (on hooks.slack.com, like the webhooks)."""
        path = f"/actions/{team}/{len(self.responses) + 1000}/R{len(self.responses)}token"
        self.responses.add(path)
        return f"https://hooks.slack.com{path}"

    def answers(self) -> list[dict[str, Any]]:
        """What was posted to response URLs, in order."""
        return [r.displayed["response"] for r in self.accepted()
                if r.path.startswith("/actions/")]

    def _response_url(self, request: Request) -> Answer:
        if request.path not in self.responses:
            answer: Answer = (404, b"expired_url", {})
        else:
            body, bad = json_body(request, lambda why: (400, b"invalid_payload", {}))
            text = body.get("text", "") if isinstance(body, dict) else None
            if bad is not None:
                answer = bad
            elif not isinstance(body, dict) or body.get("response_type", "ephemeral") not in (
                    "ephemeral", "in_channel") or not isinstance(text, str) or not (
                    1 <= len(text) <= 3000) or not isinstance(
                    body.get("replace_original", False), bool):
                answer = (400, b"invalid_payload", {})
            else:
                request.displayed = {"response": body}
                answer = (200, b"ok", {})
        return answer

    def url(self, hook: str = "T0001/B0001") -> str:
        """The user-facing URL (on hooks.slack.com; the adapter sends its path here)."""
        return f"https://hooks.slack.com/services/{hook}/{self.webhooks[hook]}"

    def handle(self, request: Request) -> Answer:
        if request.path.startswith("/actions/"):
            return self._response_url(request)
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return 404, b"no_service", {}
        team, bot, secret = match.groups()
        hook = f"{team}/{bot}"
        if self.webhooks.get(hook) != secret:
            return 404, b"no_service", {}
        if hook in self.archived:
            return 410, b"channel_is_archived", {}
        body, bad = json_body(request, lambda why: (400, b"invalid_payload", {}))
        if bad is not None:
            return bad
        if errors := block_errors(body):
            return 400, errors[0].encode(), {}
        texts = mrkdwn_texts(body)
        request.displayed = {"body": body,
                             "pings": [m.group(0) for t in texts for m in _PING.finditer(t)],
                             "links": [m.group(0) for t in texts for m in _LINK.finditer(t)]}
        return 200, b"ok", {}
