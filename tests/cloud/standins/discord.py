"""Discord execute-webhook stand-in: ``POST /api/webhooks/{id}/{token}[?wait=true]``.

Every documented limit is checked and broken ones answer 400 ``Invalid Form Body`` (code 50035)
with the offending field, as Discord does; an unknown webhook is 404 code 10015; ``wait=true``
returns the message object, otherwise 204. It records whether the message would have pinged
anyone, applying ``allowed_mentions`` the way Discord does.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from standins import Answer, Request, StandIn, json_body, utf16_units

_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d+)/([\w-]+)$")
_COMMANDS = re.compile(r"^/api/v10/applications/(\d+)/commands$")
_COMMAND_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
APPLICATION_ID, BOT_TOKEN = "1234567890", "MTIzNDU2Nzg5MA.bot-token"
_MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")


def _len(value: Any) -> int:
    return utf16_units(value) if isinstance(value, str) else 0


def limit_errors(body: dict[str, Any]) -> dict[str, str]:
    """Field path → what is wrong, for every limit the payload breaks."""
    errors: dict[str, str] = {}
    content, embeds = body.get("content"), body.get("embeds") or []
    if not content and not embeds:
        errors["content"] = "Cannot send an empty message"
    if _len(content) > 2000:
        errors["content"] = "Must be 2000 or fewer in length."
    if "username" in body and not 1 <= _len(body["username"]) <= 80:
        errors["username"] = "Must be between 1 and 80 in length."
    if len(embeds) > 10:
        errors["embeds"] = "Must be 10 or fewer in length."
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            total += _len(embed.get(key))
            if _len(embed.get(key)) > limit:
                errors[f"embeds.{i}.{key}"] = f"Must be {limit} or fewer in length."
        footer = (embed.get("footer") or {}).get("text")
        total += _len(footer)
        if _len(footer) > 2048:
            errors[f"embeds.{i}.footer.text"] = "Must be 2048 or fewer in length."
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors[f"embeds.{i}.fields"] = "Must be 25 or fewer in length."
        for j, f in enumerate(fields):
            total += _len(f.get("name")) + _len(f.get("value"))
            if not 1 <= _len(f.get("name")) <= 256:
                errors[f"embeds.{i}.fields.{j}.name"] = "Must be between 1 and 256 in length."
            if not 1 <= _len(f.get("value")) <= 1024:
                errors[f"embeds.{i}.fields.{j}.value"] = "Must be between 1 and 1024 in length."
        if "color" in embed and not 0 <= int(embed["color"]) <= 0xFFFFFF:
            errors[f"embeds.{i}.color"] = "Int value should be less than or equal to 16777215."
        if embed.get("url") and not str(embed["url"]).startswith(("http://", "https://")):
            errors[f"embeds.{i}.url"] = "Scheme must be one of ('http', 'https')."
    if total > 6000:
        errors["embeds"] = "Embed size exceeds maximum size of 6000"
    return errors


def pings(body: dict[str, Any]) -> list[str]:
    """The mentions that would notify someone: ``allowed_mentions`` absent means all parse."""
    allowed = body.get("allowed_mentions")
    parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse", []))
    found = []
    for match in _MENTION.finditer(str(body.get("content") or "")):
        token = match.group(0)
        kind = "everyone" if match.group(1) else ("roles" if "&" in token else "users")
        if kind in parse:
            found.append(token)
    return found


class DiscordStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.webhooks: dict[str, str] = {"111": "tok-en_1"}
        self._ids = itertools.count(1_300_000_000_000_000_000)

    def url(self, webhook_id: str = "111") -> str:
        """The user-facing URL (on discord.com; the adapter sends its path to this stand-in)."""
        return f"https://discord.com/api/webhooks/{webhook_id}/{self.webhooks[webhook_id]}"

    def handle(self, request: Request) -> Answer:
        if request.method == "PUT" and (found := _COMMANDS.match(request.path)):
            return self._commands(request, found.group(1))
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return 404, {"message": "404: Not Found", "code": 0}, {}
        webhook_id, token = match.groups()
        if webhook_id not in self.webhooks:
            return 404, {"message": "Unknown Webhook", "code": 10015}, {}
        if self.webhooks[webhook_id] != token:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}, {}
        body, bad = json_body(request, lambda why: (400, {"message": why, "code": 50109}, {}))
        if bad is not None:
            return bad
        if errors := limit_errors(body):
            return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, {}
        message_id = str(next(self._ids))
        request.displayed = {"body": body, "pings": pings(body)}
        if request.query.get("wait") != ["true"]:
            return 204, None, {}
        shown = {
            "id": message_id,
            "type": 0,
            "content": body.get("content", ""),
            "embeds": body.get("embeds", []),
            "mention_everyone": any(p.startswith("@") for p in pings(body)),
            "webhook_id": webhook_id,
        }
        return 200, shown, {}

    def _commands(self, request: Request, application_id: str) -> Answer:
        """Bulk-overwrite global application commands: the bot token's own application only,
        each command's name, description and options checked as Discord documents them."""
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}" \
                or application_id != APPLICATION_ID:
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        body, bad = json_body(request, lambda why: (400, {"message": why, "code": 50109}, {}))
        if bad is not None:
            return bad
        errors = {}
        for i, command in enumerate(body if isinstance(body, list) else [None]):
            if not isinstance(command, dict):
                errors[str(i)] = "Must be an object."
                continue
            if not _COMMAND_NAME.match(str(command.get("name", ""))):
                errors[f"{i}.name"] = "Command name is invalid"
            if not 1 <= len(str(command.get("description", ""))) <= 100:
                errors[f"{i}.description"] = "Must be between 1 and 100 in length."
            required = [o.get("required", False) for o in command.get("options", [])]
            if required != sorted(required, reverse=True):
                errors[f"{i}.options"] = "Required options must be placed before non-required"
            for j, option in enumerate(command.get("options", [])):
                if not 1 <= len(str(option.get("description", ""))) <= 100:
                    errors[f"{i}.options.{j}.description"] = "Must be between 1 and 100."
        if errors:
            return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, {}
        request.displayed = body
        made = [{**c, "id": str(next(self._ids)), "application_id": application_id,
                 "version": "1"} for c in body]
        return 200, made, {}

    @staticmethod
    def rate_limited(retry_after: float = 2.5, *, header: bool = True) -> Answer:
        """Discord's 429 for a webhook bucket, with its headers."""
        headers = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Scope": "shared",
        }
        if header:
            headers["Retry-After"] = str(retry_after)
        body = {"message": "You are being rate limited.", "retry_after": retry_after,
                "global": False}  # fmt: skip
        return 429, body, headers
