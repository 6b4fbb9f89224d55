"""Discord interactions: the operator's application's ``/link`` and ``/run`` slash commands.

Discord signs every interaction with the application's Ed25519 key over ``timestamp + raw
body`` (``X-Signature-Ed25519``, ``X-Signature-Timestamp``) and deliberately sends bad
signatures to check that they get 401. A PING is answered with a PONG; a command with an
ephemeral message (only the sender sees it), which must come within three seconds: queueing is a
few database statements. Mentions in the answer are disabled, since it echoes the command. A
signed request is good for :data:`MAX_SKEW_S`; within that, a replayed interaction id runs
nothing again (see :func:`~claude_notify.cloud.server.relay.chat.first_delivery`).
"""

from __future__ import annotations

import time
from typing import Any, Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from claude_notify.cloud.server.channels.base import json_object
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.relay import chat
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

PING: Final = 1
APPLICATION_COMMAND: Final = 2
PONG: Final = 1
CHANNEL_MESSAGE: Final = 4
EPHEMERAL: Final = 1 << 6
MAX_SKEW_S: Final = 300.0
"""A signed timestamp older or newer than this is a replay, not Discord."""
CONTENT_LIMIT: Final = 2000
API_VERSION: Final = "v10"

_STRING = 3
COMMANDS: Final = [
    {"name": "link", "type": 1,
     "description": "Link this Discord account to your claude-notify channel",
     "options": [{"type": _STRING, "name": "code", "required": True,
                  "description": "The code from `claude-notify channels link`"}]},
    {"name": "run", "type": 1,
     "description": "Run a command in the session of your latest notified task",
     "options": [{"type": _STRING, "name": "command", "required": True,
                  "description": "The command line (the machine's agent allow-list applies)"},
                 {"type": _STRING, "name": "session", "required": False,
                  "description": "Another session id of yours"}]},
]
"""The application's global slash commands, as ``server discord-commands`` registers them."""


def verified(public_key: str, signature: str | None, timestamp: str | None, body: bytes,
             *, now: float | None = None) -> bool:
    """Whether Discord signed ``timestamp + body`` with the application's key, recently."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW_S:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), timestamp.encode() + body)
    except (InvalidSignature, ValueError):
        return False
    return True


async def register(settings: Settings, http: httpx.AsyncClient) -> tuple[bool, str]:
    """Overwrite the application's global commands with :data:`COMMANDS`; Discord's answer."""
    url = (f"{settings.discord_api_base.rstrip('/')}/api/{API_VERSION}/applications/"
           f"{settings.discord_application_id}/commands")
    try:
        response = await http.put(url, json=COMMANDS, timeout=settings.provider_timeout_s,
                                  headers={"Authorization": f"Bot {settings.discord_bot_token}"},
                                  follow_redirects=False)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if response.status_code == 200:
        try:
            names = [str(c.get("name")) for c in response.json()]
        except (ValueError, AttributeError, TypeError):
            names = []
        return True, f"Discord: registered /{', /'.join(names) or '?'}"
    body = json_object(response)
    reason = clean(str(body.get("message") or response.reason_phrase or "")).replace("\n", " ")
    return False, f"Discord {response.status_code}: {reason[:300]}"


def message(text: str) -> dict[str, Any]:
    """An ephemeral answer that can ping no one."""
    if len(text) > CONTENT_LIMIT:
        text = text[: CONTENT_LIMIT - 1] + "…"
    return {"type": CHANNEL_MESSAGE,
            "data": {"content": text, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}}


def answer(runtime: Runtime, relay: Relay, interaction: dict[str, Any]) -> dict[str, Any]:
    """The response to one verified interaction (blocking: call it off the event loop)."""
    kind = interaction.get("type")
    if kind == PING:
        return {"type": PONG}
    sender = _sender(interaction)
    data = interaction.get("data")
    if kind != APPLICATION_COMMAND or sender is None or not isinstance(data, dict):
        return message("Only the /link and /run commands are understood.")
    options = _options(data)
    name = data.get("name")
    if name == "link" and options.get("code"):
        return message(chat.link(runtime, "discord", sender, options["code"].strip()).text)
    command = options.get("command", "").strip()
    if name == "run" and command:
        said = chat.Said(source="discord", sender=sender, command=command,
                         session_id=options.get("session", "").strip() or None)
        return message(chat.run(runtime, relay, said).text)
    return message("Use /link code:<code> or /run command:<command line>.")


def _sender(interaction: dict[str, Any]) -> str | None:
    """The invoking user's id: ``member.user`` in a server, ``user`` in a DM."""
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    return user_id if isinstance(user_id, str) and user_id.isdigit() else None


def _options(data: dict[str, Any]) -> dict[str, str]:
    """String options of a slash command by name (anything else is ignored)."""
    raw = data.get("options")
    out: dict[str, str] = {}
    for option in raw if isinstance(raw, list) else []:
        if isinstance(option, dict) and isinstance(option.get("name"), str) \
                and isinstance(option.get("value"), str):
            out[option["name"]] = option["value"]
    return out
