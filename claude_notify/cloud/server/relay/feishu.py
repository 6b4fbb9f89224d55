"""Feishu / Lark event callbacks: the operator's app bot takes ``/link CODE`` and ``/run <cmd>``.

Custom bots (the channels' webhooks) are send-only, so replies need the operator's *app* with
``im.message.receive_v1`` subscribed and its request URL at ``/v1/feishu/events``. The contract:

* With an Encrypt Key every body is ``{"encrypt": base64(iv + AES-256-CBC(PKCS#7))}`` under the
  key ``sha256(encrypt_key)``, and events carry ``X-Lark-Signature`` = hex
  ``sha256(timestamp + nonce + encrypt_key + raw body)`` (the URL check is not signed).
* The Verification Token is in every body (``header.token``, or ``token`` for the URL check);
  the URL check is answered with its ``challenge``.
* Feishu redelivers an event it thinks was missed: an ``event_id`` seen recently is skipped.
* A signed request is good for :data:`MAX_SKEW_S` either side of its (signed) timestamp, so a
  captured one cannot be replayed once its ``event_id`` has left the dedup window.
* ``/run`` needs the Encrypt Key: the verification token is the same in every body, so whoever
  learns it could write any sender's open_id. Without a key only ``/link`` (which needs its
  one-time code anyway) is taken.

Answers: with the app's id and secret in settings, :class:`AppBot` writes them into the chat the
message came from (``im/v1/messages`` with a cached tenant token); without, they go through the
owner's Feishu channel (its custom bot, where the notifications go). The command's result is the
normal completion notification either way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from claude_notify.cloud.server.api import jsonguard
from claude_notify.cloud.server.channels.base import json_object
from claude_notify.cloud.server.relay import chat
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

log = logging.getLogger("claude_notify.server.relay")

MESSAGE_EVENT: Final = "im.message.receive_v1"
_MENTION: Final = re.compile(r"^(?:@_user_\d+\s*)+")
_LINK: Final = re.compile(r"^/link\s+([A-Za-z0-9_-]{16,64})\s*$")
_RUN: Final = re.compile(r"^/run\s+(.+)$", re.DOTALL)
MAX_SKEW_S: Final = 300.0
UNSIGNED_RUN: Final = ("Not run: this server's Feishu app has no Encrypt Key, and commands need "
                       "signed events.")


class CallbackRejected(Exception):
    """A callback that is not from the operator's app (or not readable): status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decrypt(encrypt_key: str, blob: str) -> bytes:
    """The plaintext of an ``encrypt`` value; :class:`ValueError` if it is not one."""
    raw = base64.b64decode(blob, validate=True)
    if len(raw) < 32 or len(raw) % 16:
        raise ValueError("not AES-CBC data")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def signature(encrypt_key: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def open_envelope(raw: bytes, headers: dict[str, str], *, token: str,
                  encrypt_key: str | None, now: float | None = None) -> dict[str, Any]:
    """The verified, decrypted callback body, or :class:`CallbackRejected`.

    ``headers`` are lower-cased names. A signature present is always checked, and its timestamp
    must be within :data:`MAX_SKEW_S` of ``now``; with an Encrypt Key, only the URL check may
    come without one.
    """
    given = headers.get("x-lark-signature")
    if encrypt_key and given is not None:
        stamp = headers.get("x-lark-request-timestamp", "")
        expected = signature(encrypt_key, stamp, headers.get("x-lark-request-nonce", ""), raw)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise CallbackRejected(401, "wrong X-Lark-Signature")
        _check_age(stamp, time.time() if now is None else now)
    body = _json(raw)
    if "encrypt" in body:
        if not encrypt_key or not isinstance(body["encrypt"], str):
            raise CallbackRejected(400, "an encrypted event, but this server has no Encrypt Key")
        try:
            body = _json(decrypt(encrypt_key, body["encrypt"]))
        except (ValueError, CallbackRejected):
            raise CallbackRejected(
                400, "the event does not decrypt with this server's Encrypt Key") from None
    header = body.get("header")
    sent = header.get("token") if isinstance(header, dict) else body.get("token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), token.encode()):
        raise CallbackRejected(403, "wrong or missing verification token")
    if encrypt_key and given is None and body.get("type") != "url_verification":
        raise CallbackRejected(401, "missing X-Lark-Signature")
    return body


def _check_age(stamp: str, now: float) -> None:
    try:
        sent = int(stamp)  # Unix seconds; int() also refuses "nan", "1e400" and the like
    except ValueError:
        raise CallbackRejected(401, "missing or malformed X-Lark-Request-Timestamp") from None
    if abs(now - sent) > MAX_SKEW_S:
        raise CallbackRejected(401, "X-Lark-Request-Timestamp is more than 5 minutes off")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = jsonguard.loads(raw)
    except ValueError as exc:
        raise CallbackRejected(400, str(exc)) from None
    if not isinstance(body, dict):
        raise CallbackRejected(400, "the body is not a JSON object")
    return body


@dataclass(frozen=True, slots=True)
class Incoming:
    event_id: str
    open_id: str
    group: bool
    text: str
    chat_id: str = ""


def incoming(body: dict[str, Any]) -> Incoming | None:
    """A user's text message to the bot, else ``None`` (other events are not ours)."""
    header, event = body.get("header"), body.get("event")
    if not isinstance(header, dict) or header.get("event_type") != MESSAGE_EVENT:
        return None
    if not isinstance(event, dict):
        return None
    sender, msg = event.get("sender"), event.get("message")
    if not isinstance(sender, dict) or not isinstance(msg, dict):
        return None
    ids = sender.get("sender_id")
    open_id = ids.get("open_id") if isinstance(ids, dict) else None
    if sender.get("sender_type") != "user" or not isinstance(open_id, str) or not open_id:
        return None
    if msg.get("message_type") != "text" or not isinstance(msg.get("content"), str):
        return None
    try:
        content = jsonguard.loads(msg["content"])  # JSON in a string: checked the same
    except ValueError:
        return None
    text = content.get("text") if isinstance(content, dict) else None
    if not isinstance(text, str):
        return None
    return Incoming(event_id=str(header.get("event_id") or ""), open_id=open_id,
                    group=msg.get("chat_type") != "p2p",
                    text=_MENTION.sub("", text.strip()).strip(),
                    chat_id=str(msg.get("chat_id") or ""))


def handle(runtime: Runtime, relay: Relay, message: Incoming) -> chat.Answer | None:
    """Link or queue (blocking); the answer to post, if any."""
    if match := _LINK.match(message.text):
        if message.group:  # a code shown in a group could be taken by anyone there
            return None
        return chat.link(runtime, "feishu", message.open_id, match.group(1))
    if match := _RUN.match(message.text):
        if not runtime.settings.feishu_encrypt_key:  # the sender is not proven: not audited
            log.warning("feishu: /run refused: set FEISHU_ENCRYPT_KEY to take commands")
            return chat.Answer(UNSIGNED_RUN)
        said = chat.Said(source="feishu", sender=message.open_id,
                         command=match.group(1).strip(), group=message.group)
        return chat.run(runtime, relay, said)
    return None


class AppBot:
    """The operator's app writing one-line answers into chats; its tenant token is cached until
    a few minutes before it expires, and dropped when Feishu refuses it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    @staticmethod
    def configured(settings: Settings) -> bool:
        return bool(settings.feishu_app_id and settings.feishu_app_secret)

    async def say(self, chat_id: str, text: str) -> bool:
        """Write ``text`` into ``chat_id``; ``False`` (logged, not retried) if Feishu refused."""
        sent = await self.call("POST", "/open-apis/im/v1/messages", "answer",
                               params={"receive_id_type": "chat_id"},
                               body={"receive_id": chat_id, "msg_type": "text",
                                     "content": json.dumps({"text": text}, ensure_ascii=False)})
        return sent is not None

    async def send_card(self, open_id: str, card: dict[str, Any]) -> dict[str, Any] | None:
        """Send an interactive card to the user's direct chat with the bot; the message
        (``message_id``, ``chat_id``), or ``None`` if Feishu refused."""
        return await self.call("POST", "/open-apis/im/v1/messages", "card",
                               params={"receive_id_type": "open_id"},
                               body={"receive_id": open_id, "msg_type": "interactive",
                                     "content": json.dumps(card, ensure_ascii=False)})

    async def update_card(self, message_id: str, card: dict[str, Any]) -> bool:
        """Replace a card the bot sent (a shared card: ``update_multi``) with ``card``."""
        return await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}", "card edit",
                               body={"content": json.dumps(card, ensure_ascii=False)}) is not None

    async def call(self, method: str, path: str, what: str, *, body: dict[str, Any],
                   params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """One call as the app: the answer's ``data``, or ``None`` (logged, not retried)."""
        async with httpx.AsyncClient(timeout=self.settings.provider_timeout_s) as http:
            try:
                token = await self._tenant_token(http)
                response = await http.request(
                    method, self._url(path), params=params, json=body, follow_redirects=False,
                    headers={"Authorization": f"Bearer {token}"})
            except (httpx.HTTPError, _Refused) as exc:
                log.warning("feishu: %s not sent: %s", what, exc)
                return None
        answer = json_object(response)
        if response.status_code == 200 and answer.get("code") == 0:
            data = answer.get("data")
            return data if isinstance(data, dict) else {}
        self._token = None  # an expired or revoked token is fetched afresh next time
        log.warning("feishu: %s refused: HTTP %s code %s", what, response.status_code,
                    answer.get("code"))
        return None

    async def _tenant_token(self, http: httpx.AsyncClient) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._until:
                response = await http.post(
                    self._url("/open-apis/auth/v3/tenant_access_token/internal"),
                    json={"app_id": self.settings.feishu_app_id,
                          "app_secret": self.settings.feishu_app_secret},
                    follow_redirects=False)
                body = json_object(response)
                token, expire = body.get("tenant_access_token"), body.get("expire")
                if body.get("code") != 0 or not isinstance(token, str):
                    raise _Refused(f"tenant token refused: code {body.get('code')}")
                lifetime = float(expire) if isinstance(expire, int | float) else 600.0
                self._token, self._until = token, time.monotonic() + max(lifetime - 300, 30)
            return self._token

    def _url(self, path: str) -> str:
        return self.settings.feishu_api_base.rstrip("/") + path


class _Refused(Exception):
    pass
