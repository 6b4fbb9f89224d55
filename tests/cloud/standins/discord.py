"""Discord stand-in: the execute-webhook call (``POST /api/webhooks/{id}/{token}[?wait=true]``),
and the bot's calls of API v10 that approval cards make: open a DM
(``POST /users/@me/channels``), send a message there (``POST /channels/{id}/messages``) and edit
it (``PATCH /channels/{id}/messages/{id}``), with the bot token.

Every documented limit is checked and broken ones answer 400 ``Invalid Form Body`` (code 50035)
with the offending field, as Discord does: content and embeds, and message components (at most
five action rows of at most five buttons; a button's style, its label of at most 80 characters,
a ``custom_id`` of 1 to 100 characters unique in the message, or for a link button a URL and no
``custom_id``). An unknown webhook is 404 code 10015; ``wait=true`` returns the message object,
otherwise 204. It records whether a message would have pinged anyone, applying
``allowed_mentions`` the way Discord does; a bot message without ``allowed_mentions`` is refused
(this project's rule for every message that shows user text, not Discord's).
:meth:`DiscordStandIn.apply` does what Discord does with an interaction's response.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from standins import Answer, Request, StandIn, json_body, utf16_units

_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d+)/([\w-]+)$")
_COMMANDS = re.compile(r"^/api/v10/applications/(\d+)/commands$")
_COMMAND_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
_DMS = "/api/v10/users/@me/channels"
_MESSAGES = re.compile(r"^/api/v10/channels/(\d+)/messages(?:/(\d+))?$")
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


def component_errors(components: Any) -> dict[str, str]:
    """Field path → what is wrong, for message components (buttons in action rows)."""
    if not isinstance(components, list):
        return {"components": "Must be an array."}
    errors: dict[str, str] = {}
    if len(components) > 5:
        errors["components"] = "Must be 5 or fewer in length."
    seen: set[str] = set()
    for i, row in enumerate(components):
        items = row.get("components") if isinstance(row, dict) else None
        if not isinstance(row, dict) or row.get("type") != 1 or not isinstance(items, list):
            errors[f"components.{i}"] = "Top-level components must be action rows."
            continue
        if not 1 <= len(items) <= 5:
            errors[f"components.{i}.components"] = "Must be between 1 and 5 in length."
        for j, button in enumerate(items):
            path = f"components.{i}.components.{j}"
            if not isinstance(button, dict) or button.get("type") != 2:
                errors[path] = "Only buttons are checked here."
                continue
            style, custom_id = button.get("style"), button.get("custom_id")
            if style not in (1, 2, 3, 4, 5):
                errors[f"{path}.style"] = "Value must be one of {1, 2, 3, 4, 5}."
            if not 1 <= _len(button.get("label")) <= 80:
                errors[f"{path}.label"] = "Must be between 1 and 80 in length."
            if style == 5:
                url = str(button.get("url") or "")
                if not url.startswith(("http://", "https://")) or len(url) > 512:
                    errors[f"{path}.url"] = "Scheme must be one of ('http', 'https')."
                if custom_id is not None:
                    errors[f"{path}.custom_id"] = "A link button cannot have a custom_id."
                continue
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
                errors[f"{path}.custom_id"] = "Must be between 1 and 100 in length."
            elif custom_id in seen:
                errors[f"{path}.custom_id"] = "Component custom id cannot be duplicated"
            else:
                seen.add(custom_id)
    return errors


def bot_message_errors(body: Any, *, edit: bool = False) -> dict[str, str]:
    """What Discord refuses in a bot's message (or, ``edit``, in the fields an edit gives)."""
    if not isinstance(body, dict):
        return {"": "Must be an object."}
    errors = {} if edit and "content" not in body and "embeds" not in body else limit_errors(body)
    if "components" in body:
        errors.update(component_errors(body["components"]))
    allowed = body.get("allowed_mentions")
    if not isinstance(allowed, dict) or not isinstance(allowed.get("parse", []), list):
        errors["allowed_mentions"] = "Required here: every message showing user text sets it."
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
        self.dms: dict[str, str] = {}
        """Recipient's user id → the DM channel's id."""
        self.closed: set[str] = set()
        """Users who take no DMs from the bot (no shared server, or DMs off): 50007."""
        self.messages: dict[str, dict[str, Any]] = {}
        """The bot's messages by id: ``channel_id`` and the message as it shows now."""

    def url(self, webhook_id: str = "111") -> str:
        """The user-facing URL (on discord.com; the adapter sends its path to this stand-in)."""
        return f"https://discord.com/api/webhooks/{webhook_id}/{self.webhooks[webhook_id]}"

    def handle(self, request: Request) -> Answer:
        if request.method == "PUT" and (found := _COMMANDS.match(request.path)):
            return self._commands(request, found.group(1))
        if request.path == _DMS or _MESSAGES.match(request.path):
            return self._bot(request)
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

    def _bot(self, request: Request) -> Answer:
        """The bot's DM, send and edit calls."""
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        body, bad = json_body(request, lambda why: (400, {"message": why, "code": 50109}, {}))
        if bad is not None:
            return bad
        if request.path == _DMS:
            recipient = body.get("recipient_id") if isinstance(body, dict) else None
            if request.method != "POST" or not str(recipient or "").isdigit():
                return 400, {"code": 50035, "message": "Invalid Form Body",
                             "errors": {"recipient_id": "Value is not snowflake."}}, {}
            with self.lock:
                channel = self.dms.setdefault(str(recipient), str(next(self._ids)))
            request.displayed = {"dm": channel}
            return 200, {"id": channel, "type": 1, "last_message_id": None,
                         "recipients": [{"id": recipient, "username": "someone"}]}, {}
        found = _MESSAGES.match(request.path)
        assert found is not None
        channel, message_id = found.groups()
        recipient = next((user for user, dm in self.dms.items() if dm == channel), None)
        if recipient is None:
            return 404, {"message": "Unknown Channel", "code": 10003}, {}
        if request.method == "POST" and message_id is None:
            if recipient in self.closed:
                return 403, {"message": "Cannot send messages to this user", "code": 50007}, {}
            if errors := bot_message_errors(body):
                return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, {}
            message_id = str(next(self._ids))
            shown = {"channel_id": channel, "id": message_id, "content": "", "embeds": [],
                     "components": []}
            shown.update({k: body[k] for k in ("content", "embeds", "components") if k in body})
            with self.lock:
                self.messages[message_id] = shown
            request.displayed = {"message": dict(shown), "pings": pings(body), "sent": True}
            return 200, {**shown, "type": 0, "author": {"id": APPLICATION_ID, "bot": True}}, {}
        if request.method == "PATCH" and message_id is not None:
            held = self.messages.get(message_id)
            if held is None or held["channel_id"] != channel:
                return 404, {"message": "Unknown Message", "code": 10008}, {}
            if errors := bot_message_errors(body, edit=True):
                return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, {}
            self._replace(message_id, body)
            request.displayed = {"message": dict(self.messages[message_id]),
                                 "pings": pings(body), "edited": True}
            return 200, {**self.messages[message_id], "type": 0}, {}
        return 405, {"message": "405: Method Not Allowed", "code": 0}, {}

    def _replace(self, message_id: str, data: dict[str, Any]) -> None:
        with self.lock:
            held = self.messages[message_id]
            held.update({k: data[k] for k in ("content", "embeds", "components") if k in data})

    def message(self, message_id: str) -> dict[str, Any]:
        """A bot message as it shows now."""
        with self.lock:
            return dict(self.messages[message_id])

    def bot_messages(self, user_id: str) -> list[dict[str, Any]]:
        """The bot's messages in its DM with ``user_id``, as they show now, in order."""
        channel = self.dms.get(user_id)
        with self.lock:
            return [dict(m) for m in self.messages.values() if m["channel_id"] == channel]

    def edits(self, message_id: str) -> list[dict[str, Any]]:
        """The accepted edits of a message (``PATCH``), each as the message showed after it."""
        return [r.displayed["message"] for r in self.accepted()
                if r.method == "PATCH" and r.path.endswith(f"/messages/{message_id}")]

    def apply(self, message_id: str, response: dict[str, Any]) -> dict[str, Any] | None:
        """What Discord does with an interaction's response for a press on ``message_id``:
        ``UPDATE_MESSAGE`` (7) edits it (checked like an edit), ``CHANNEL_MESSAGE_WITH_SOURCE``
        (4) shows a new message, returned (ephemeral: only the presser sees it)."""
        kind, data = response.get("type"), response.get("data")
        assert isinstance(data, dict), response
        errors = bot_message_errors(data, edit=kind == 7)
        assert not errors, errors
        if kind == 7:
            self._replace(message_id, data)
            return None
        assert kind == 4, response
        return data

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
