"""Feishu / Lark custom-bot stand-in: ``POST /open-apis/bot/v2/hook/{token}``.

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


class FeishuStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.tenant_tokens: set[str] = set()
        self._tokens = itertools.count(1)
        self.bots: dict[str, dict[str, Any]] = {"hook-1": {}, "signed": {"secret": "s3cr3t"}}
        """Token → settings: ``secret`` (signature check), ``keywords`` (keyword check)."""

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

    def _app_message(self, request: Request) -> Answer:
        """im/v1/messages as the app: a live tenant token, receive_id_type=chat_id, and a text
        message whose ``content`` is a JSON string."""
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tenant_tokens:
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization."}, {}
        if request.query.get("receive_id_type") != ["chat_id"]:
            return 400, {"code": 99992402, "msg": "field validation failed"}, {}
        body, bad = json_body(request, lambda why: error(9499, f"Bad Request: {why}"))
        if bad is not None:
            return bad
        try:
            text = json.loads(body.get("content", ""))["text"]
        except (ValueError, KeyError, TypeError):
            return 400, {"code": 230001, "msg": "invalid message content"}, {}
        if body.get("msg_type") != "text" or not str(body.get("receive_id", "")).startswith("oc_"):
            return 400, {"code": 230001, "msg": "invalid receive_id or msg_type"}, {}
        request.displayed = {"chat_id": body["receive_id"], "text": text}
        return 200, {"code": 0, "msg": "success", "data": {"message_id": "om_1"}}, {}

    def said(self) -> list[dict[str, str]]:
        """What the app wrote into chats, in order."""
        return [r.displayed for r in self.accepted() if r.path == _MESSAGES]

    def url(self, bot: str = "hook-1", host: str = "open.feishu.cn") -> str:
        return f"https://{host}/open-apis/bot/v2/hook/{bot}"

    def handle(self, request: Request) -> Answer:
        if request.method == "POST" and request.path == _AUTH_PATH:
            return self._tenant_token(request)
        if request.method == "POST" and request.path == _MESSAGES:
            return self._app_message(request)
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
