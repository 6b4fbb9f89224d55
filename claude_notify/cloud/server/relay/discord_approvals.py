"""Permission requests as Discord cards, answered with their buttons (the operator's Discord
application).

When an approval is filed, each Discord account the owner linked (``/link`` on one of their
Discord channels: the channel's ``discord_user_id``) gets a card from the application's bot, in
its direct messages (``POST /users/@me/channels``, then ``POST /channels/{id}/messages``, API
v10): the tool, the call literally in a code block no backtick can leave, the project and
machine, when it expires, and **Allow**, **Deny** and, where Claude offered one, **Always in this
session** (and **Open**, the request's page in the web app, where the server knows its address).
Mentions are off (``allowed_mentions: {"parse": []}``) and every other text is escaped. A
button's ``custom_id`` is the opaque handle the Telegram cards use (``ap:<id>:<a|d|s>``).

A press arrives at ``POST /v1/discord/interactions`` as a ``MESSAGE_COMPONENT`` interaction
(signed, and read once: checked there) and counts under :mod:`.chat_approvals`' rules; the
answer is Discord's ``UPDATE_MESSAGE`` (the card shows the outcome, its buttons gone). Any other
way the request ends (the terminal, another channel, expiry) edits the card
(``PATCH /channels/{id}/messages/{id}``).

Only with the bot token and the application's public key set: without the key no press reaches
the server, so no card is sent and a Discord account alone does not make someone who can be
asked (:func:`claude_notify.cloud.server.relay.approvals.file`).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, Final

import httpx

from claude_notify.cloud.server.channels.base import json_object
from claude_notify.cloud.server.channels.discord import GREY, LIMITS
from claude_notify.cloud.server.channels.markdown import discord_escape
from claude_notify.cloud.server.channels.text import clean, utf16_len
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import approvals, chat_approvals
from claude_notify.cloud.server.relay.discord import API_VERSION, message
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

log = logging.getLogger("claude_notify.server.relay")

KIND: Final = "discord"
MESSAGE_COMPONENT: Final = 3
UPDATE_MESSAGE: Final = 7
ACTION_ROW, BUTTON = 1, 2
PRIMARY, SECONDARY, SUCCESS, DANGER, LINK = 1, 2, 3, 4, 5
COLOURS: Final = {"pending": 0xF0B232, "allowed": 0x2ECC71, "denied": 0xE74C3C}
CODE_CHARS: Final = 3500
"""UTF-16 units of the call shown, within the description's 4,096."""
_TICKS = re.compile(r"`(?=`)")


def configured(settings: Settings) -> bool:
    """Cards are sent only where presses can come back (the interactions endpoint is on)."""
    return bool(settings.discord_bot_token and settings.discord_public_key)


def fenced(text: str, limit: int = CODE_CHARS) -> str:
    """``text`` in a code block it cannot leave: no two backticks stay adjacent (a zero-width
    space between them), so no fence can close it; inside, Discord reads no Markdown and no
    mention."""
    body = _TICKS.sub("`\u200b", clean(text))
    if utf16_len(body) > limit:
        while utf16_len(body) > limit - 1:
            body = body[: len(body) - max(1, (utf16_len(body) - limit + 1) // 2)]
        body += "…"
    return f"```\n{body}\n```"


def card(row: Approval, app_url: str | None = None) -> dict[str, Any]:
    """The message: a line (what a notification shows), an embed with the call, where, until
    when (or the outcome), and the buttons while the request waits (none once answered)."""
    title = discord_escape(clean(kinds.words(row).title).replace("\n", " "))
    lines = [fenced(row.display)]
    embed: dict[str, Any] = {"color": COLOURS.get(row.state, GREY)}
    if row.state == "pending":
        if kinds.kind(row) == kinds.QUESTION and not kinds.buttons_answer(row):
            lines.append("Answer on the web page (Open), or in the terminal.")
        until = int(row.expires_at.timestamp())  # shown in the reader's time zone
        lines.append(f"Answer within {chat_approvals.minutes(row)} min (until <t:{until}:t>), "
                     "or in the terminal.")
        if (always := kinds.always_label(row)) is not None:
            embed["fields"] = [{"name": "Always in this session", "value": fenced(always, 900)}]
    else:
        lines.append(f"**{discord_escape(approvals.outcome(row))}**")
    embed["description"] = "\n".join(lines)
    if where := chat_approvals.where(row):
        embed["footer"] = {"text": where[:LIMITS["footer"]]}  # plain text: no Markdown
    return {"content": f"🔐 {title}"[:LIMITS["content"]],
            "embeds": [embed], "components": buttons(row, app_url),
            "allowed_mentions": {"parse": []}}


def buttons(row: Approval, app_url: str | None = None) -> list[dict[str, Any]]:
    """The buttons while the request waits (none after), five to an action row: Allow / Deny
    (a plan: Approve plan / Keep planning; one question: a button per option, and Don't
    answer), "Always in this session" where Claude offered it, and the request's page."""
    if row.state != "pending":
        return []
    ident, said = f"{approvals.PREFIX}:{row.id.hex}", kinds.words(row)

    def key(label: str, style: int, action: str) -> dict[str, Any]:
        label = clean(label).replace("\n", " ")
        return {"type": BUTTON, "style": style, "custom_id": f"{ident}:{action}",
                "label": label if len(label) <= 80 else label[:79] + "…"}

    deny = key(said.deny, DANGER, approvals.DENY)
    if kinds.kind(row) == kinds.QUESTION:
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        keys = [key(label, PRIMARY, f"{approvals.OPTION}{i}")
                for i, label in enumerate(options)] + [deny]
    else:
        keys = [key(said.allow, SUCCESS, approvals.ALLOW), deny]
    if kinds.always_label(row) is not None:
        keys.append(key("Always in this session", SECONDARY, approvals.SESSION))
    if app_url:
        keys.append({"type": BUTTON, "style": LINK, "label": "Open",
                     "url": f"{app_url.rstrip('/')}/approvals/{row.id}"})
    return [{"type": ACTION_ROW, "components": keys[i:i + 5]} for i in range(0, len(keys), 5)]


class Bot:
    """The application's bot over Discord's HTTP API (one client per batch of calls)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings, self.http = settings, http

    async def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Discord's answer, or ``None`` (logged) when it refused or could not be reached."""
        url = f"{self.settings.discord_api_base.rstrip('/')}/api/{API_VERSION}{path}"
        try:
            response = await self.http.request(
                method, url, json=body, timeout=self.settings.provider_timeout_s,
                headers={"Authorization": f"Bot {self.settings.discord_bot_token}"},
                follow_redirects=False)
        except httpx.HTTPError as exc:
            log.warning("discord: %s %s failed: %s", method, path.split("/")[1],
                        type(exc).__name__)
            return None
        answer = json_object(response)
        if response.status_code >= 300:
            log.warning("discord: %s %s: HTTP %s code %s", method, path.split("/")[1],
                        response.status_code, answer.get("code"))
            return None
        return answer


async def post_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Send a pending approval's card to each Discord account its owner linked."""
    settings = runtime.settings
    if not configured(settings):
        return
    found = await chat_approvals.to_send(runtime, approval_id, KIND,
                                         lambda row: card(row, settings.dashboard_url))
    if found is None:
        return
    body, users = found
    cards: list[dict[str, Any]] = []
    async with approvals.client() as http:
        bot = Bot(settings, http)
        for user in users:
            dm = await bot.call("POST", "/users/@me/channels", {"recipient_id": user})
            chat = dm.get("id") if dm else None
            if not isinstance(chat, str) or not chat.isdigit():
                continue
            sent = await bot.call("POST", f"/channels/{chat}/messages", body)
            message_id = sent.get("id") if sent else None
            if isinstance(message_id, str) and message_id.isdigit():
                cards.append({"kind": KIND, "user": user, "chat": chat, "message": message_id})
    await chat_approvals.sent(runtime, approval_id, cards, edit_cards)


async def edit_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Show an answered approval's outcome on its Discord cards (their buttons removed)."""
    if not runtime.settings.discord_bot_token:
        return
    found = await chat_approvals.to_edit(runtime, approval_id, KIND, card)
    if found is None:
        return
    body, cards = found
    async with approvals.client() as http:
        bot = Bot(runtime.settings, http)
        for shown in cards:
            await bot.call("PATCH", f"/channels/{shown['chat']}/messages/{shown['message']}",
                           body)


# --------------------------------------------------------------------------- presses


def is_press(interaction: dict[str, Any]) -> bool:
    """A press on a button of an approval card (other components are not ours)."""
    data = interaction.get("data")
    return (interaction.get("type") == MESSAGE_COMPONENT and isinstance(data, dict)
            and str(data.get("custom_id") or "").startswith(f"{approvals.PREFIX}:"))


def press(runtime: Runtime, interaction: dict[str, Any]) -> tuple[dict[str, Any],
                                                                   chat_approvals.Pressed]:
    """The interaction's response and what the press did (blocking: off the event loop).

    Answered by this press: the card itself shows the outcome (``UPDATE_MESSAGE``). Otherwise
    an ephemeral line for the presser only, and the card unchanged; an owner's late press on a
    card that still shows buttons (its edit failed) has it edited again.
    """
    data = interaction.get("data")
    pressed_message = interaction.get("message")
    pressed_message = pressed_message if isinstance(pressed_message, dict) else {}
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    sender = user.get("id") if isinstance(user, dict) else None
    if not isinstance(sender, str) or not sender.isdigit() or not isinstance(data, dict):
        return message(chat_approvals.NOT_OURS), chat_approvals.Pressed(chat_approvals.NOT_OURS)
    group = "guild_id" in interaction or interaction.get("context") == 2  # a server, a group DM
    with runtime.sessions.begin() as session:
        pressed = chat_approvals.press(
            session, kind=KIND, data=data.get("custom_id"), sender=sender,
            chat=str(interaction.get("channel_id") or ""),
            message=str(pressed_message.get("id") or ""), group=group)
        row = pressed.row
        if row is not None and pressed.changed:
            return {"type": UPDATE_MESSAGE, "data": card(row, runtime.settings.dashboard_url)}, \
                pressed
    if row is not None and row.state != "pending" and pressed_message.get("components"):
        pressed = chat_approvals.Pressed(pressed.text, row, edit=row.id)  # show the outcome
    return message(pressed.text), pressed
