"""Telegram Bot API stand-in: ``POST /bot<TOKEN>/sendMessage`` as the real API answers it.

It parses ``parse_mode: HTML`` the way Telegram does (only its tags; anything else is a 400
"can't parse entities"), counts the text after entity parsing against 4,096 (UTF-16 units),
checks the inline keyboard, and keeps per-chat state: blocked chats (403), unknown chats (400
"chat not found"), groups upgraded to supergroups (400 with ``migrate_to_chat_id``) and, unless
switched off, a one-message-per-second-per-chat limit answered with 429 ``retry_after``.

``setWebhook`` is checked as documented (an HTTPS ``url`` on port 443, 80, 88 or 8443, a
``secret_token`` of 1-256 characters from ``[A-Za-z0-9_-]``, ``allowed_updates`` a list of update
types) and the registration is kept in :attr:`TelegramStandIn.webhook`.

Button presses: :meth:`TelegramStandIn.callback_query` makes the ``callback_query`` update
Telegram would post for a press on a sent message's inline button (only a button that message
really had), and ``answerCallbackQuery`` is checked as documented (a known, unanswered query id;
``text`` of at most 200 characters; ``show_alert``, ``url``, ``cache_time``); each answer is kept
in :attr:`TelegramStandIn.callback_answers`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from standins import Answer, Clock, Request, StandIn, json_body, utf16_units

TOKEN = "123456:TEST-bot-token_abc"  # noqa: S105 - the stand-in's own test credential
TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
        "tg-spoiler", "blockquote", "span", "tg-emoji"}  # fmt: skip
WEBHOOK_PORTS = (443, 80, 88, 8443)
UPDATE_TYPES = {"message", "edited_message", "channel_post", "edited_channel_post",
                "callback_query", "inline_query", "chosen_inline_result", "my_chat_member",
                "chat_member", "chat_join_request", "message_reaction", "poll",
                "poll_answer"}  # fmt: skip
BAD_WEBHOOK = "Bad Request: bad webhook: "
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class EntityError(ValueError):
    pass


class _Parser(HTMLParser):
    """Telegram's HTML: the visible text and its entities, or an error like the real one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.stack: list[tuple[str, int, dict[str, str | None]]] = []
        self.entities: list[dict[str, Any]] = []

    def _position(self) -> int:
        return utf16_units("".join(self.text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            raise EntityError(f'Unsupported start tag "{tag}"')
        self.stack.append((tag, self._position(), dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise EntityError(f'Unmatched end tag "{tag}"')
        name, start, attrs = self.stack.pop()
        entity: dict[str, Any] = {"type": name, "offset": start, "length": self._position() - start}
        if name == "a":
            entity["url"] = attrs.get("href")
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1][0]}"')
    return "".join(parser.text), parser.entities


class TelegramStandIn(StandIn):
    def __init__(self, *, token: str = TOKEN, per_chat_interval_s: float = 1.0) -> None:
        super().__init__()
        self.token = token
        self.per_chat_interval_s = per_chat_interval_s
        """Telegram's advice is about one message a second per chat; 0 switches it off."""
        self.blocked: set[int] = set()
        self.missing: set[int] = set()
        self.migrated: dict[int, int] = {}
        self._ids = itertools.count(1000)
        self._ids_lock = threading.Lock()
        self._clock = Clock()
        self.webhook: dict[str, Any] | None = None
        """The registration ``setWebhook`` made (``None``: no webhook, updates are polled)."""
        self.queries: dict[str, bool] = {}
        """Callback query ids handed out, and whether each was answered."""
        self.callback_answers: list[dict[str, Any]] = []
        """Every accepted ``answerCallbackQuery`` body, in order."""
        self.edits: list[dict[str, Any]] = []
        """Every accepted ``editMessageText``: the message's id and chat, its new text, entities
        and keyboard (``None``: the buttons are gone)."""

    @staticmethod
    def error(code: int, description: str, **parameters: Any) -> Answer:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return code, body, {}

    def handle(self, request: Request) -> Answer:
        prefix, _, method = request.path.rpartition("/")
        if request.method != "POST" or not prefix.startswith("/bot"):
            return self.error(404, "Not Found")
        if prefix[len("/bot") :] != self.token:
            return self.error(401, "Unauthorized")
        if method not in ("sendMessage", "setWebhook", "answerCallbackQuery", "editMessageText"):
            return self.error(404, "Not Found: method not found")
        body, bad = json_body(request, lambda why: self.error(400, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        if method == "setWebhook":
            return self.set_webhook(request, body)
        if method == "answerCallbackQuery":
            return self.answer_callback_query(body)
        if method == "editMessageText":
            return self.edit_message_text(request, body)
        return self.send_message(request, body)

    def callback_query(self, message_id: int, data: str, *, sender: int,
                       chat_type: str = "private") -> dict[str, Any]:
        """The update for ``sender`` pressing the button ``data`` under a message sent here."""
        with self.lock:
            sent = [r.displayed for r in self.requests if isinstance(r.displayed, dict)
                    and r.displayed.get("message_id") == message_id]
        if not sent:
            raise AssertionError(f"no message {message_id} was sent")
        rows = (sent[0].get("reply_markup") or {}).get("inline_keyboard") or []
        if data not in [b.get("callback_data") for row in rows for b in row]:
            raise AssertionError(f"message {message_id} has no button {data!r}")
        return self.callback_update(self._query_id(), sent[0]["chat_id"], message_id, data,
                                    sender=sender, chat_type=chat_type)

    def _query_id(self) -> str:
        with self._ids_lock:
            query_id = str(4_000_000_000_000 + next(self._ids))
        with self.lock:
            self.queries[query_id] = False
        return query_id

    def forged_callback(self, chat_id: int, message_id: int, data: str, *, sender: int,
                        chat_type: str = "private") -> dict[str, Any]:
        """A well-formed update for a button no message had (a forged or stale press)."""
        return self.callback_update(self._query_id(), chat_id, message_id, data, sender=sender,
                                    chat_type=chat_type)

    @staticmethod
    def callback_update(query_id: str, chat_id: int, message_id: int, data: str, *,
                        sender: int, chat_type: str) -> dict[str, Any]:
        chat = {"id": chat_id, "type": chat_type}
        return {"update_id": int(query_id) % 1_000_000, "callback_query": {
            "id": query_id, "chat_instance": "-42", "data": data,
            "from": {"id": sender, "is_bot": False, "first_name": "Ada"},
            "message": {"message_id": message_id, "date": 1, "chat": chat, "text": "…"}}}

    def answer_callback_query(self, body: dict[str, Any]) -> Answer:
        query_id = body.get("callback_query_id")
        if not isinstance(query_id, str) or not query_id:
            return self.error(400, 'Bad Request: parameter "callback_query_id" is required')
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > 200):
            return self.error(400, "Bad Request: MESSAGE_TOO_LONG")
        for key, kind in (("show_alert", bool), ("url", str), ("cache_time", int)):
            if key in body and not isinstance(body[key], kind):
                return self.error(400, f"Bad Request: field \"{key}\" has a wrong type")
        with self.lock:
            if self.queries.get(query_id) is not False:
                return self.error(400, "Bad Request: query is too old and response timeout "
                                       "expired or query ID is invalid")
            self.queries[query_id] = True
            self.callback_answers.append(dict(body))
        return 200, {"ok": True, "result": True}, {}

    def answers_for(self, query_update: dict[str, Any]) -> list[dict[str, Any]]:
        """The answers given to the query in ``query_update``."""
        query_id = query_update["callback_query"]["id"]
        with self.lock:
            return [a for a in self.callback_answers if a.get("callback_query_id") == query_id]

    def edit_message_text(self, request: Request, body: dict[str, Any]) -> Answer:
        """Telegram's checks: a message this bot sent to that chat, text that parses, and a
        change (the same text and keyboard again is an error)."""
        chat, message_id, text = body.get("chat_id"), body.get("message_id"), body.get("text")
        if not isinstance(message_id, int) or not isinstance(chat, int | str):
            return self.error(400, "Bad Request: message identifier is not specified")
        chat_id = int(chat) if str(chat).lstrip("-").isdigit() else chat
        current = [m for m in self.sent() if m["message_id"] == message_id
                   and m["chat_id"] == chat_id]
        current += self.edits_of(chat_id, message_id)
        if not current:
            return self.error(400, "Bad Request: message to edit not found")
        if not isinstance(text, str) or not text.strip():
            return self.error(400, "Bad Request: message text is empty")
        try:
            visible, entities = (parse_html(text) if body.get("parse_mode") == "HTML"
                                 else (text, []))
        except EntityError as exc:
            return self.error(400, f"Bad Request: can't parse entities: {exc}")
        if utf16_units(visible) > 4096:
            return self.error(400, "Bad Request: MESSAGE_TOO_LONG")
        if (problem := check_keyboard(body.get("reply_markup"))) is not None:
            return self.error(400, f"Bad Request: {problem}")
        last = current[-1]
        if last["text"] == visible and last.get("reply_markup") == body.get("reply_markup"):
            return self.error(400, "Bad Request: message is not modified: specified new message "
                                   "content and reply markup are exactly the same as a current "
                                   "content and reply markup of the message")
        edit = {"message_id": message_id, "chat_id": chat_id, "text": visible,
                "entities": entities, "reply_markup": body.get("reply_markup")}
        with self.lock:
            self.edits.append(edit)
        result = {"message_id": message_id, "date": int(time.time()), "edit_date": int(time.time()),
                  "chat": {"id": chat_id}, "text": visible}
        return 200, {"ok": True, "result": result}, {}

    def edits_of(self, chat_id: int | str, message_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.edits if e["chat_id"] == chat_id
                    and e["message_id"] == message_id]

    def sent(self) -> list[dict[str, Any]]:
        """What each accepted ``sendMessage`` displayed, in order."""
        return [r.displayed for r in self.accepted()
                if isinstance(r.displayed, dict) and "message_id" in r.displayed]

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        """What :meth:`sent` displayed in one chat: a test sharing the stand-in with others
        (through a shared server) looks at its own chat only."""
        return [m for m in self.sent() if m["chat_id"] == chat_id]

    def set_webhook(self, request: Request, body: dict[str, Any]) -> Answer:
        url = body.get("url")
        if not isinstance(url, str):
            return self.error(400, 'Bad Request: parameter "url" is required')
        if url == "":
            self.webhook = None
            return 200, {"ok": True, "result": True, "description": "Webhook was deleted"}, {}
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return self.error(400, BAD_WEBHOOK + "An HTTPS URL must be provided for webhook")
        try:
            port = parts.port or 443
        except ValueError:
            port = 0
        if port not in WEBHOOK_PORTS:
            ports = "Webhook can be set up only on ports 80, 88, 443 or 8443"
            return self.error(400, BAD_WEBHOOK + ports)
        secret = body.get("secret_token")
        if secret is not None and not (isinstance(secret, str) and _SECRET.fullmatch(secret)):
            return self.error(400, "Bad Request: secret token contains unallowed characters")
        allowed = body.get("allowed_updates")
        if isinstance(allowed, str):  # form and query callers send it JSON-serialised
            try:
                allowed = json.loads(allowed)
            except ValueError:
                return self.error(400, "Bad Request: can't parse allowed updates JSON object")
        if allowed is not None and not (
            isinstance(allowed, list) and all(isinstance(u, str) for u in allowed)
        ):
            return self.error(400, "Bad Request: can't parse allowed updates JSON object")
        registration = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": [u for u in allowed or [] if u in UPDATE_TYPES] or None,
        }
        same = registration == self.webhook
        self.webhook = registration
        request.displayed = registration
        description = "Webhook is already set" if same else "Webhook was set"
        return 200, {"ok": True, "result": True, "description": description}, {}

    def send_message(self, request: Request, body: dict[str, Any]) -> Answer:
        chat = body.get("chat_id")
        if not isinstance(chat, int | str) or chat == "":
            return self.error(400, "Bad Request: chat_id is empty")
        chat_id = int(chat) if str(chat).lstrip("-").isdigit() else chat
        if chat_id in self.migrated:
            return self.error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=self.migrated[chat_id],
            )
        if chat_id in self.missing:
            return self.error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return self.error(403, "Forbidden: bot was blocked by the user")
        text = body.get("text")
        if not isinstance(text, str):
            return self.error(400, "Bad Request: message text is empty")
        if body.get("parse_mode") == "HTML":
            try:
                visible, entities = parse_html(text)
            except EntityError as exc:
                return self.error(400, f"Bad Request: can't parse entities: {exc}")
        else:
            visible, entities = text, []
        if not visible.strip():
            return self.error(400, "Bad Request: message text is empty")
        if utf16_units(visible) > 4096:
            return self.error(400, "Bad Request: message is too long")
        if (problem := check_keyboard(body.get("reply_markup"))) is not None:
            return self.error(400, f"Bad Request: {problem}")
        if self.per_chat_interval_s:
            wait = self._clock.too_soon(chat_id, self.per_chat_interval_s)
            if wait > 0:
                seconds = max(1, round(wait))
                return self.error(
                    429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
                )
        with self._ids_lock:
            message_id = next(self._ids)
        request.displayed = {
            "message_id": message_id,
            "chat_id": chat_id,
            "text": visible,
            "entities": entities,
            "reply_markup": body.get("reply_markup"),
            "reply_parameters": body.get("reply_parameters"),
        }
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if int(str(chat_id)) > 0 else "group"},
            "text": visible,
            "entities": entities,
        }
        return 200, {"ok": True, "result": result}, {}


def check_keyboard(markup: Any) -> str | None:
    if markup is None:
        return None
    if isinstance(markup, dict) and "force_reply" in markup:  # ForceReply, as documented
        placeholder = markup.get("input_field_placeholder")
        if markup["force_reply"] is not True or set(markup) - {
                "force_reply", "input_field_placeholder", "selective"} or (
                placeholder is not None and not 1 <= len(str(placeholder)) <= 64):
            return "can't parse reply keyboard markup JSON object"
        return None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list):
        return "can't parse reply keyboard markup JSON object"
    for row in rows:
        for button in row:
            if not button.get("text"):
                return "inline keyboard button text is empty"
            url, data = button.get("url"), button.get("callback_data")
            if (url is None) == (data is None):
                return "inline keyboard button must have exactly one action"
            if url is not None and not str(url).startswith(("http://", "https://", "tg://")):
                return f"inline keyboard button URL '{url}' is invalid: unsupported URL protocol"
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                return "BUTTON_DATA_INVALID"
    return None
