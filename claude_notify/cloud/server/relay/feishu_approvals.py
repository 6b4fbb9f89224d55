"""Permission requests as Feishu / Lark cards, answered with their buttons (the operator's app).

When an approval is filed, each Feishu account the owner linked (``/link`` in the direct chat
with the app's bot: the channel's ``feishu_open_id``) gets an interactive card from the app bot
in that direct chat (``im/v1/messages``, ``receive_id_type=open_id``): the tool, the project and
machine, the call literally (``plain_text``: never read as Markdown, and no ``<at>`` can form),
how long it waits, and **Allow**, **Deny** and, where Claude offered one, **Always in this
session** (and **Open**, the request's page in the web app). A button's ``value`` is
``{"ap": "ap:<id>:<a|d|s>"}``, the opaque handle the Telegram cards use. The card is a shared
card (``update_multi``) that cannot be forwarded.

A press arrives at ``POST /v1/feishu/events`` as the ``card.action.trigger`` callback, through
the same decryption, signature, token and redelivery checks as a message, and counts under
:mod:`.chat_approvals`' rules; the callback's answer is a toast for the presser and, once the
request is answered, the card showing the outcome (its buttons gone). Any other way the request
ends (the terminal, another channel, expiry) edits the card (``PATCH im/v1/messages/{id}``).

Only with the app's id and secret, its verification token and its Encrypt Key set: a press must
come signed (without the key anyone who learnt the token could name any open_id), so without
them no card is sent and a Feishu account alone does not make someone who can be asked.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from claude_notify.cloud.server.channels.feishu import neutralise
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import approvals, chat_approvals
from claude_notify.cloud.server.relay.feishu import AppBot
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

log = logging.getLogger("claude_notify.server.relay")

KIND: Final = "feishu"
CARD_EVENT: Final = "card.action.trigger"
COLOURS: Final = {"pending": "orange", "allowed": "green", "denied": "red"}
_ID: Final = re.compile(r"^o[mc]_\w{1,100}$")
"""A message (``om_…``) or chat (``oc_…``) id as Feishu names them: safe in a path."""
UNSIGNED: Final = ("Not answered: this server's Feishu app has no Encrypt Key, and answers need "
                   "signed callbacks.")


def configured(settings: Settings) -> bool:
    """Cards are sent only where signed presses can come back."""
    return bool(AppBot.configured(settings) and settings.feishu_verification_token
                and settings.feishu_encrypt_key)


def _plain(text: str) -> dict[str, Any]:
    return {"tag": "div", "text": {"tag": "plain_text", "content": neutralise(clean(text))}}


def card(row: Approval, app_url: str | None = None) -> dict[str, Any]:
    """The card (JSON 1.0): literal text only; buttons while the request waits."""
    title = neutralise(clean(f"🔐 {kinds.words(row).title}").replace("\n", " "))
    elements = []
    if where := chat_approvals.where(row):
        elements.append(_plain(where))
    elements.append(_plain(row.display or " "))
    if row.state == "pending":
        if (always := kinds.always_label(row)) is not None:
            elements.append(_plain(f"Always in this session: {always}"))
        if kinds.kind(row) == kinds.QUESTION and not kinds.buttons_answer(row):
            elements.append(_plain("Answer on the web page (Open), or in the terminal."))
        elements.append({"tag": "note", "elements": [
            {"tag": "plain_text",
             "content": f"Answer within {chat_approvals.minutes(row)} min, or in the terminal."}]})
        elements.append({"tag": "action", "actions": buttons(row, app_url)})
    else:
        elements.append(_plain(approvals.outcome(row)))
    return {"config": {"wide_screen_mode": True, "update_multi": True, "enable_forward": False},
            "header": {"title": {"tag": "plain_text", "content": title[:200]},
                       "template": COLOURS.get(row.state, "grey")},
            "elements": elements}


def buttons(row: Approval, app_url: str | None = None) -> list[dict[str, Any]]:
    """Allow / Deny (a plan: Approve plan / Keep planning; one question: a button per option,
    and Don't answer), "Always in this session" where Claude offered it, the request's page."""
    ident, said = f"{approvals.PREFIX}:{row.id.hex}", kinds.words(row)

    def key(label: str, style: str, action: str) -> dict[str, Any]:
        return {"tag": "button", "text": {"tag": "plain_text", "content": neutralise(clean(label))},
                "type": style, "value": {"ap": f"{ident}:{action}"}}

    deny = key(said.deny, "danger", approvals.DENY)
    if kinds.kind(row) == kinds.QUESTION:
        options = kinds.questions(row)[0]["options"] if kinds.buttons_answer(row) else []
        keys = [key(label, "default", f"{approvals.OPTION}{i}")
                for i, label in enumerate(options)] + [deny]
    else:
        keys = [key(said.allow, "primary", approvals.ALLOW), deny]
    if kinds.always_label(row) is not None:
        keys.append(key("Always in this session", "default", approvals.SESSION))
    if app_url:
        keys.append({"tag": "button", "text": {"tag": "plain_text", "content": "Open"},
                     "type": "default", "url": f"{app_url.rstrip('/')}/approvals/{row.id}"})
    return keys


async def post_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Send a pending approval's card to each Feishu account its owner linked."""
    settings = runtime.settings
    if not configured(settings):
        return
    found = await chat_approvals.to_send(runtime, approval_id, KIND,
                                         lambda row: card(row, settings.dashboard_url))
    if found is None:
        return
    body, users = found
    bot = AppBot(settings)
    cards: list[dict[str, Any]] = []
    for user in users:
        sent = await bot.send_card(user, body)
        message_id, chat_id = (sent or {}).get("message_id"), (sent or {}).get("chat_id")
        if isinstance(message_id, str) and _ID.match(message_id) \
                and isinstance(chat_id, str) and _ID.match(chat_id):
            cards.append({"kind": KIND, "user": user, "chat": chat_id, "message": message_id})
        elif sent is not None:
            log.warning("feishu: a card was sent but Feishu named no message and chat for it")
    await chat_approvals.sent(runtime, approval_id, cards, edit_cards)


async def edit_cards(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Show an answered approval's outcome on its Feishu cards (their buttons removed)."""
    if not AppBot.configured(runtime.settings):
        return
    found = await chat_approvals.to_edit(runtime, approval_id, KIND, card)
    if found is None:
        return
    body, cards = found
    bot = AppBot(runtime.settings)
    for shown in cards:
        await bot.update_card(str(shown["message"]), body)


# --------------------------------------------------------------------------- presses


@dataclass(frozen=True, slots=True)
class Press:
    """A ``card.action.trigger`` callback, as the (verified) envelope carried it."""

    event_id: str
    open_id: str
    value: str
    chat_id: str
    message_id: str


def incoming(body: dict[str, Any]) -> Press | None:
    """The card action in a callback, else ``None`` (not a card action)."""
    header, event = body.get("header"), body.get("event")
    if not isinstance(header, dict) or header.get("event_type") != CARD_EVENT:
        return None
    operator, action, context = (_part(event, "operator"), _part(event, "action"),
                                 _part(event, "context"))
    value = action.get("value")
    handle = value.get("ap") if isinstance(value, dict) else value
    return Press(event_id=str(header.get("event_id") or ""),
                 open_id=str(operator.get("open_id") or ""),
                 value=handle if isinstance(handle, str) else "",
                 chat_id=str(context.get("open_chat_id") or ""),
                 message_id=str(context.get("open_message_id") or ""))


def _part(event: object, name: str) -> dict[str, Any]:
    part = event.get(name) if isinstance(event, dict) else None
    return part if isinstance(part, dict) else {}


def toast(text: str, kind: str = "info", shown: dict[str, Any] | None = None) -> dict[str, Any]:
    """The callback's answer: a toast for the presser, and the card to show instead, if any."""
    answer: dict[str, Any] = {"toast": {"type": kind, "content": text}}
    if shown is not None:
        answer["card"] = {"type": "raw", "data": shown}
    return answer


def press(runtime: Runtime, pressed_card: Press) -> tuple[dict[str, Any],
                                                          chat_approvals.Pressed]:
    """The callback's answer and what the press did (blocking: off the event loop).

    The owner's press shows the card's outcome once the request is answered (by this press or
    earlier); anyone else's leaves the card as it is."""
    if not pressed_card.open_id:
        return toast(chat_approvals.NOT_OURS, "error"), chat_approvals.Pressed(
            chat_approvals.NOT_OURS)
    with runtime.sessions.begin() as session:
        pressed = chat_approvals.press(
            session, kind=KIND, data=pressed_card.value, sender=pressed_card.open_id,
            chat=pressed_card.chat_id, message=pressed_card.message_id, group=False)
    row = pressed.row
    if row is None:
        return toast(pressed.text, "error"), pressed
    if row.state == "pending":
        return toast(pressed.text, "warning"), pressed
    kind = "success" if pressed.changed and row.state != "expired" else "info"
    return toast(pressed.text, kind, card(row, runtime.settings.dashboard_url)), pressed
