"""Feishu / Lark custom-bot stand-in: ``POST /open-apis/bot/v2/hook/{token}``; and the app's
calls (a tenant token, then ``im/v1/messages``: a text into a chat, an interactive card into a
user's direct chat by ``open_id``, ``PATCH im/v1/messages/{id}`` to replace a card, which must be
a shared card, ``update_multi``, before and after).

Like Feishu it answers HTTP 200 for its own errors and puts the reason in ``code``/``msg``:
19001 unknown token, 19021 bad signature or stale timestamp, 19024 keywords missing, 9499 a bad
request (wrong card shape, body over 20 KB), 11232 when scripted as rate-limited. The signature
is checked with this module's own HMAC code (the documented algorithm), not the adapter's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import itertools
import json
import re
import time
from typing import Any

from standins import Answer, Request, StandIn, json_body

OK = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
APP_ID, APP_SECRET = "cli_a1b2c3d4e5f6", "app-secret-0123456789"
_AUTH_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
_MESSAGES = "/open-apis/im/v1/messages"
_PATH = re.compile(r"^/open-apis/bot/v2/hook/([\w-]+)$")
_MESSAGE = re.compile(r"^/open-apis/im/v1/messages/(om_\w+)$")
CARD_BYTES = 30 * 1024
"""The app's card messages: request bodies over 30 KB are refused."""
BUTTON_TYPES = frozenset({"default", "primary", "danger", "text", "primary_text",
                          "danger_text", "primary_filled", "danger_filled", "laser"})
_AT_TAG = re.compile(r"<at\s+(?:user_)?id\s*=\s*\"?([\w-]+)\"?\s*>", re.IGNORECASE)


def expected_sign(timestamp: str, secret: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def error(code: int, msg: str) -> Answer:
    return 200, {"code": code, "data": {}, "msg": msg}, {}


def shown_text(card: dict[str, Any]) -> tuple[str, list[str]]:
    """What the card displays, and whom it would @-mention (from ``lark_md`` tags)."""
    lines = [str(card.get("header", {}).get("title", {}).get("content", ""))]
    mentions: list[str] = []
    for element in card.get("elements", []):
        text = element.get("text") or {}
        if text.get("tag") == "lark_md":
            content = str(text.get("content", ""))
            mentions += _AT_TAG.findall(content)
            lines.append(html.unescape(content))
        elif text.get("tag") == "plain_text":
            lines.append(str(text.get("content", "")))
    return "\n".join(lines), mentions


def card_errors(card: Any) -> list[str]:
    """What Feishu refuses in an app's card (JSON 1.0): its shape and its buttons."""
    if not isinstance(card, dict) or not isinstance(card.get("elements"), list):
        return ["a card needs a list of elements"]
    errors = []
    title = card.get("header", {}).get("title", {})
    if title.get("tag") not in ("plain_text", "lark_md") or not title.get("content"):
        errors.append("header.title needs a tag and content")
    for element in card["elements"]:
        if element.get("tag") == "action":
            for button in element.get("actions", []):
                if button.get("tag") != "button" or button.get("type") not in BUTTON_TYPES:
                    errors.append(f"not a button: {button!r}")
                elif button.get("text", {}).get("tag") != "plain_text":
                    errors.append("a button's text is plain_text")
                elif "url" not in button and not isinstance(button.get("value"), dict):
                    errors.append("a callback button's value is an object")
    return errors


def app_card_text(card: dict[str, Any]) -> tuple[str, list[str]]:
    """What an app's card displays (title, texts, notes) and whom it could @-mention: an
    ``<at>`` tag anywhere counts (stricter than Feishu, which reads them in ``lark_md``)."""
    lines = [str(card.get("header", {}).get("title", {}).get("content", ""))]
    for element in card.get("elements", []):
        texts = [element.get("text") or {}] if element.get("tag") == "div" else (
            element.get("elements", []) if element.get("tag") == "note" else [])
        for text in texts:
            content = str(text.get("content", ""))
            lines.append(html.unescape(content) if text.get("tag") == "lark_md" else content)
    shown = "\n".join(lines)
    return shown, _AT_TAG.findall(shown)


def card_buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A card's buttons by label."""
    return {b["text"]["content"]: b for e in card.get("elements", [])
            if e.get("tag") == "action" for b in e.get("actions", [])}


class FeishuStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.tenant_tokens: set[str] = set()
        self._tokens = itertools.count(1)
        self.bots: dict[str, dict[str, Any]] = {"hook-1": {}, "signed": {"secret": "s3cr3t"}}
        """Token → settings: ``secret`` (signature check), ``keywords`` (keyword check)."""
        self._messages = itertools.count(1)
        self.direct: dict[str, str] = {}
        """A user's open_id → their direct chat with the app's bot."""
        self.cards: dict[str, dict[str, Any]] = {}
        """The app's card messages by id: ``chat_id``, ``open_id`` and the card as it shows."""

    def _tenant_token(self, request: Request) -> Answer:
        """The app's tenant_access_token (internal apps): app_id and app_secret must match."""
        body, bad = json_body(request, lambda why: error(9499, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
            return 400, {"code": 10014, "msg": "app secret invalid"}, {}
        token = f"t-{next(self._tokens)}"
        self.tenant_tokens.add(token)
        return 200, {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}, {}

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tenant_tokens

    def _app_message(self, request: Request) -> Answer:
        """im/v1/messages as the app: a live tenant token, receive_id_type=chat_id, and a text
        message whose ``content`` is a JSON string (or a card: :meth:`_app_card`)."""
        if not self._authorized(request):
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization."}, {}
        body, bad = json_body(request, lambda why: error(9499, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        if isinstance(body, dict) and body.get("msg_type") == "interactive":
            return self._app_card(request, body)
        if request.query.get("receive_id_type") != ["chat_id"]:
            return 400, {"code": 99992402, "msg": "field validation failed"}, {}
        try:
            text = json.loads(body.get("content", ""))["text"]
        except (ValueError, KeyError, TypeError):
            return 400, {"code": 230001, "msg": "invalid message content"}, {}
        if body.get("msg_type") != "text" or not str(body.get("receive_id", "")).startswith("oc_"):
            return 400, {"code": 230001, "msg": "invalid receive_id or msg_type"}, {}
        request.displayed = {"chat_id": body["receive_id"], "text": text}
        return 200, {"code": 0, "msg": "success", "data": {"message_id": "om_1"}}, {}

    def _app_card(self, request: Request, body: dict[str, Any]) -> Answer:
        """An interactive card to a user's direct chat (``receive_id_type=open_id``)."""
        open_id = str(body.get("receive_id", ""))
        if request.query.get("receive_id_type") != ["open_id"] or not open_id.startswith("ou_"):
            return 400, {"code": 99992402, "msg": "field validation failed: receive_id"}, {}
        if len(request.body) > CARD_BYTES:
            return 400, {"code": 230025, "msg": "message content too long"}, {}
        card, bad = self._card_of(body)
        if bad is not None:
            return bad
        with self.lock:
            chat_id = self.direct.setdefault(open_id, f"oc_p2p{len(self.direct) + 1:08d}")
            message_id = f"om_card{next(self._messages):06d}"
            self.cards[message_id] = {"chat_id": chat_id, "open_id": open_id, "card": card}
        text, mentions = app_card_text(card)
        request.displayed = {"message_id": message_id, "open_id": open_id, "card": card,
                             "text": text, "mentions": mentions}
        return 200, {"code": 0, "msg": "success", "data": {
            "message_id": message_id, "chat_id": chat_id, "msg_type": "interactive",
            "create_time": str(int(time.time() * 1000)), "deleted": False, "updated": False,
            "sender": {"id": APP_ID, "id_type": "app_id", "sender_type": "app"}}}, {}

    def _card_of(self, body: dict[str, Any]) -> tuple[dict[str, Any], Answer | None]:
        try:
            card = json.loads(body.get("content", ""))
        except (ValueError, TypeError):
            return {}, (400, {"code": 230001, "msg": "invalid message content"}, {})
        if errors := card_errors(card):
            return {}, (400, {"code": 230001, "msg": "; ".join(errors)}, {})
        return card, None

    def _update(self, request: Request, message_id: str) -> Answer:
        """PATCH im/v1/messages/{id}: replace a shared card the app sent (14 days, 30 KB)."""
        if not self._authorized(request):
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization."}, {}
        body, bad = json_body(request, lambda why: error(9499, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        held = self.cards.get(message_id)
        if held is None:
            return 400, {"code": 230001, "msg": "message not found or not a card"}, {}
        if len(request.body) > CARD_BYTES:
            return 400, {"code": 230025, "msg": "message content too long"}, {}
        card, bad = self._card_of(body)
        if bad is not None:
            return bad
        shared = [c.get("config", {}).get("update_multi") is True for c in (held["card"], card)]
        if not all(shared):
            return 400, {"code": 230099, "msg": "only shared cards (update_multi) are updated"}, {}
        with self.lock:
            held["card"] = card
        text, mentions = app_card_text(card)
        request.displayed = {"message_id": message_id, "card": card, "text": text,
                             "mentions": mentions, "edited": True}
        return 200, {"code": 0, "msg": "success", "data": {}}, {}

    def apply(self, message_id: str, answer: dict[str, Any]) -> str | None:
        """What Feishu does with a card callback's answer: the card replaced by ``card.data``
        (a ``raw`` card, checked like an update), and the toast's text shown to the presser."""
        if "card" in answer:
            assert answer["card"]["type"] == "raw" and not card_errors(answer["card"]["data"])
            assert answer["card"]["data"]["config"]["update_multi"] is True
            with self.lock:
                self.cards[message_id]["card"] = answer["card"]["data"]
        toast = answer.get("toast")
        assert toast is None or toast["type"] in ("info", "success", "error", "warning")
        return None if toast is None else str(toast["content"])

    def card(self, message_id: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.cards[message_id])

    def cards_to(self, open_id: str) -> list[str]:
        """The ids of the card messages sent to ``open_id``, in order."""
        with self.lock:
            return [m for m, held in self.cards.items() if held["open_id"] == open_id]

    def said(self) -> list[dict[str, str]]:
        """What the app wrote into chats, in order."""
        return [r.displayed for r in self.accepted() if r.path == _MESSAGES
                and "text" in r.displayed and "card" not in r.displayed]

    def url(self, bot: str = "hook-1", host: str = "open.feishu.cn") -> str:
        return f"https://{host}/open-apis/bot/v2/hook/{bot}"

    def handle(self, request: Request) -> Answer:
        if request.method == "POST" and request.path == _AUTH_PATH:
            return self._tenant_token(request)
        if request.method == "POST" and request.path == _MESSAGES:
            return self._app_message(request)
        if request.method == "PATCH" and (found := _MESSAGE.match(request.path)):
            return self._update(request, found.group(1))
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return 404, {"code": 404, "msg": "404 page not found"}, {}
        bot = self.bots.get(match.group(1))
        if bot is None:
            return error(19001, "param invalid: incoming webhook access token invalid")
        if len(request.body) > 20 * 1024:
            return error(9499, "Bad Request")
        body, bad = json_body(request, lambda why: error(9499, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        if secret := bot.get("secret"):
            stamp = str(body.get("timestamp", ""))
            fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 3600
            given = str(body.get("sign", ""))
            if not fresh or not hmac.compare_digest(given, expected_sign(stamp, secret)):
                return error(
                    19021, "sign match fail or timestamp is not within one hour from current time"
                )
        if body.get("msg_type") != "interactive" or not isinstance(body.get("card"), dict):
            return error(9499, "Bad Request: interactive messages need a top-level card")
        card = body["card"]
        if "content" in body:
            return error(9499, "Bad Request: card must not be inside content")
        text, mentions = shown_text(card)
        if (words := bot.get("keywords")) and not any(w in text for w in words):
            return error(19024, "Key Words Not Found")
        request.displayed = {"card": card, "text": text, "mentions": mentions}
        return 200, OK, {}
