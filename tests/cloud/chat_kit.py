"""The providers' side of the Discord and Feishu replies, written independently of the server.

* Discord signs interactions with Ed25519. Tests sign with ``cryptography`` (a fresh key) and,
  for one independent check, with :func:`ed25519_sign`: the RFC 8032 section 6 reference
  algorithm in plain Python, itself checked against the RFC's test vectors (PyNaCl, which
  Discord's own samples use, is not installed).
* Feishu encrypts events with AES-256-CBC under ``sha256(encrypt_key)`` and signs them with
  ``sha256(timestamp + nonce + encrypt_key + body)``: done here with ``cryptography``'s
  primitives and ``hashlib``, not with the server's helpers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# --------------------------------------------------------------------------- Ed25519 (RFC 8032)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]


def _add(a: Point, b: Point) -> Point:
    aa, bb = (a[1] - a[0]) * (b[1] - b[0]) % _P, (a[1] + a[0]) * (b[1] + b[0]) % _P
    cc, dd = 2 * a[3] * b[3] * _D % _P, 2 * a[2] * b[2] % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(s: int, point: Point) -> Point:
    out: Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            out = _add(out, point)
        point = _add(point, point)
        s >>= 1
    return out


def _compress(point: Point) -> bytes:
    zinv = pow(point[2], _P - 2, _P)
    x, y = point[0] * zinv % _P, point[1] * zinv % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    return _P - x if (x & 1) != sign else x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)


def _expand(secret: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def _hint(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % _L


def ed25519_public(secret: bytes) -> bytes:
    return _compress(_mul(_expand(secret)[0], _G))


def ed25519_sign(secret: bytes, message: bytes) -> bytes:
    a, prefix = _expand(secret)
    public = _compress(_mul(a, _G))
    r = _hint(prefix + message)
    big_r = _compress(_mul(r, _G))
    s = (r + _hint(big_r + public + message) * a) % _L
    return big_r + int.to_bytes(s, 32, "little")


RFC8032_VECTORS = [  # (secret, public, message, signature): RFC 8032 section 7.1, TEST 1 and 2
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
     "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


# --------------------------------------------------------------------------- Discord


class DiscordApp:
    """The operator's Discord application: its key pair, and interactions signed with it."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.key = Ed25519PrivateKey.generate() if secret is None else None

    @property
    def public_key(self) -> str:
        if self.key is None:
            assert self.secret is not None
            return ed25519_public(self.secret).hex()
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, timestamp: str, body: bytes) -> str:
        message = timestamp.encode() + body
        if self.key is None:
            assert self.secret is not None
            return ed25519_sign(self.secret, message).hex()
        return self.key.sign(message).hex()

    def headers(self, body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
        stamp = timestamp or str(int(time.time()))
        return {"X-Signature-Ed25519": self.sign(stamp, body), "X-Signature-Timestamp": stamp,
                "Content-Type": "application/json"}


def interaction(kind: int = 2, *, name: str = "run", user_id: str = "80351110224678912",
                guild: bool = True, **options: str) -> dict[str, Any]:
    """An interaction as Discord sends it (a slash command from a server member, or a DM)."""
    body: dict[str, Any] = {"id": str(uuid.uuid4().int)[:18], "application_id": "1234567890",
                            "type": kind, "token": "interaction-token", "version": 1}
    if kind == 1:
        return body
    body["data"] = {"id": "99", "name": name, "type": 1,
                    "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]}
    user = {"id": user_id, "username": "ada", "discriminator": "0"}
    if guild:
        body.update(guild_id="41771983423143937", channel_id="41771983423143938",
                    member={"user": user, "roles": []})
    else:
        body.update(channel_id="41771983423143939", user=user)
    return body


def component_press(message: dict[str, Any], custom_id: str, *, user_id: str,
                    guild: bool = False, channel_id: str | None = None) -> dict[str, Any]:
    """A ``MESSAGE_COMPONENT`` interaction (type 3) as Discord sends it for a press on a
    button of ``message`` (a bot message as the stand-in shows it): in the DM it is in, or in a
    server's channel (``guild``), where the presser is a ``member``."""
    user = {"id": user_id, "username": "someone", "discriminator": "0"}
    body: dict[str, Any] = {
        "id": str(uuid.uuid4().int)[:18], "application_id": "1234567890", "type": 3,
        "token": "interaction-token", "version": 1,
        "data": {"custom_id": custom_id, "component_type": 2},
        "message": {"id": message["id"], "channel_id": message["channel_id"], "type": 0,
                    "content": message.get("content", ""),
                    "components": message.get("components", [])},
        "channel_id": channel_id or message["channel_id"]}
    if guild:
        body.update(guild_id="41771983423143937", context=0,
                    channel={"id": body["channel_id"], "type": 0},
                    member={"user": user, "roles": [], "permissions": "0"})
    else:
        body.update(context=1, channel={"id": body["channel_id"], "type": 1}, user=user)
    return body


def discord_post(url: str, app: DiscordApp, payload: dict[str, Any],
                 **headers: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    sent = {**app.headers(body), **headers}
    return httpx.post(url + "/v1/discord/interactions", content=body, headers=sent, timeout=10)


# --------------------------------------------------------------------------- Feishu


def feishu_encrypt(encrypt_key: str, plain: bytes) -> str:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def feishu_message(text: str, *, open_id: str = "ou_7d8a6e6df7621556ce0d21922b676706ccs",
                   chat_type: str = "p2p", token: str, event_id: str | None = None,
                   sender_type: str = "user") -> dict[str, Any]:
    """An ``im.message.receive_v1`` event (schema 2.0) as the open platform documents it."""
    return {
        "schema": "2.0",
        "header": {"event_id": event_id or uuid.uuid4().hex, "token": token,
                   "create_time": str(int(time.time() * 1000)),
                   "event_type": "im.message.receive_v1", "tenant_key": "2ca1d211f64f6438",
                   "app_id": "cli_a1b2c3d4e5f6"},
        "event": {
            "sender": {"sender_id": {"union_id": "on_8ed6aa67826108097d9ee143816345",
                                     "user_id": "e33ggbyz", "open_id": open_id},
                       "sender_type": sender_type, "tenant_key": "2ca1d211f64f6438"},
            "message": {"message_id": "om_" + uuid.uuid4().hex, "root_id": "", "parent_id": "",
                        "create_time": str(int(time.time() * 1000)),
                        "chat_id": "oc_5ad11d72b830411d72b836c20", "chat_type": chat_type,
                        "message_type": "text", "content": json.dumps({"text": text}),
                        "mentions": []},
        },
    }


def feishu_card_action(value: dict[str, Any], *, open_id: str, message_id: str, chat_id: str,
                       token: str, event_id: str | None = None) -> dict[str, Any]:
    """A ``card.action.trigger`` callback (schema 2.0): a press on a card's button."""
    return {
        "schema": "2.0",
        "header": {"event_id": event_id or uuid.uuid4().hex, "token": token,
                   "create_time": str(int(time.time() * 1000)),
                   "event_type": "card.action.trigger", "tenant_key": "2ca1d211f64f6438",
                   "app_id": "cli_a1b2c3d4e5f6"},
        "event": {
            "operator": {"tenant_key": "2ca1d211f64f6438", "user_id": "e33ggbyz",
                         "open_id": open_id, "union_id": "on_8ed6aa67826108097d9ee143816345"},
            "token": "c-" + uuid.uuid4().hex,
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


class FeishuApp:
    """The operator's Feishu app: its verification token and (optional) Encrypt Key."""

    def __init__(self, token: str, encrypt_key: str | None = None) -> None:
        self.token, self.encrypt_key = token, encrypt_key

    def request(self, payload: dict[str, Any], *, signed: bool = True, tamper: bool = False,
                at: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers Feishu would send for ``payload`` (signed ``at``, a Unix time:
        now by default)."""
        plain = json.dumps(payload).encode()
        if not self.encrypt_key:
            return plain, {"Content-Type": "application/json"}
        body = json.dumps({"encrypt": feishu_encrypt(self.encrypt_key, plain)}).encode()
        headers = {"Content-Type": "application/json"}
        if signed:
            stamp, nonce = str(int(time.time() if at is None else at)), uuid.uuid4().hex[:16]
            digest = hashlib.sha256(
                (stamp + nonce + self.encrypt_key).encode() + body).hexdigest()
            headers.update({"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
                            "X-Lark-Signature": digest})
        if tamper:
            body = body.replace(b'"encrypt"', b'"encrypt" ')
        return body, headers
