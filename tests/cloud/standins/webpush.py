"""A push service stand-in (RFC 8030) that checks what a real one checks, and reads the push.

Each subscription is made here as a browser's would be: a P-256 key pair and a 16-byte auth
secret, with an endpoint ``/push/<id>`` and the application server key it was made for. A push
(``POST`` to the endpoint) must carry:

- ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292): ``k`` the subscription's application
  server key (else 403, as FCM answers), the JWT ES256-signed by it, ``aud`` the endpoint's
  origin, ``exp`` in the future and at most 24 hours away, ``sub`` a ``mailto:`` or ``https:``
  URI (else 401, as Mozilla's autopush answers);
- ``TTL`` (else 400), ``Content-Encoding: aes128gcm`` and a body of at most 4,096 bytes (413);
- a body that decrypts (RFC 8188 with RFC 8291's key derivation) with the subscription's private
  key and auth secret, as one final record.

It answers 201 with a ``Location``; 410 for a subscription marked gone. The decrypted JSON is
what the browser would hand its service worker (``displayed``). Everything here is computed with
``cryptography`` alone, independently of the push library the server uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from standins import Answer, Request, StandIn

MAX_BODY = 4096
_SUB = re.compile(r"^(mailto:[^@\s]+@\S+|https://\S+)$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


@dataclass
class Subscription:
    id: str
    endpoint: str
    server_key: str
    """The application server key (VAPID public key) it was made for."""
    private: ec.EllipticCurvePrivateKey = field(repr=False)
    auth: bytes = field(repr=False)

    @property
    def keys(self) -> dict[str, str]:
        """What ``PushSubscription.toJSON().keys`` gives a page."""
        return {"p256dh": b64url(_point(self.private.public_key())), "auth": b64url(self.auth)}

    @property
    def config(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, **self.keys}


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def decrypt(sub: Subscription, body: bytes) -> bytes:
    """RFC 8291 / RFC 8188 ``aes128gcm``, one record; ``ValueError`` says what is wrong."""
    if len(body) < 21 + 65 + 17:
        raise ValueError("body shorter than a header and a record")
    salt, (rs,), idlen = body[:16], struct.unpack(">I", body[16:20]), body[20]
    if idlen != 65:
        raise ValueError(f"keyid must be the sender's 65-byte public key, not {idlen} bytes")
    sender_raw, record = body[21:86], body[86:]
    if rs < 18 or len(record) > rs:
        raise ValueError("a push must be one record")
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_raw)
    shared = sub.private.exchange(ec.ECDH(), sender)
    ua_public = _point(sub.private.public_key())
    ikm = _hkdf(sub.auth, shared, b"WebPush: info\x00" + ua_public + sender_raw, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    try:
        padded = AESGCM(cek).decrypt(nonce, record, None)
    except InvalidTag:
        raise ValueError("the record does not decrypt with the subscription's keys") from None
    plain = padded.rstrip(b"\x00")
    if not plain.endswith(b"\x02"):
        raise ValueError("the record is not marked as the last one (delimiter 2)")
    return plain[:-1]


def check_vapid(header: str, *, audience: str, server_key: str) -> tuple[int, str, dict[str, Any]]:
    """``(status, why, claims)`` for an ``Authorization`` header; status 0 when it is good."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "vapid":
        return 401, "Authorization must use the vapid scheme", {}
    parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
    token, key = parts.get("t", ""), parts.get("k", "")
    if key != server_key:
        return 403, "the key is not the one this subscription was made with", {}
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        head, claims = json.loads(unb64url(head_b64)), json.loads(unb64url(claims_b64))
        signature = unb64url(sig_b64)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    except ValueError:
        return 401, "the token is not a JWT", {}
    if head.get("alg") != "ES256" or len(signature) != 64:
        return 401, "the token must be ES256 with a 64-byte signature", {}
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return 401, "the token's signature does not verify", {}
    now = time.time()
    if claims.get("aud") != audience:
        return 401, f"aud must be {audience}", claims
    exp = claims.get("exp")
    if not isinstance(exp, int) or not now < exp <= now + 86_400:
        return 401, "exp must be in the next 24 hours", claims
    if not isinstance(claims.get("sub"), str) or not _SUB.match(claims["sub"]):
        return 401, "sub must be a mailto: or https: URI", claims
    return 0, "", claims


class WebPushStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, Subscription] = {}
        self.gone: set[str] = set()
        self._ids = itertools.count(1)

    def subscribe(self, server_key: str) -> Subscription:
        """A browser's subscription for the application server key ``server_key``."""
        ident = secrets.token_urlsafe(12)
        sub = Subscription(id=ident, endpoint=f"{self.base_url}/push/{ident}",
                           server_key=server_key, private=ec.generate_private_key(ec.SECP256R1()),
                           auth=secrets.token_bytes(16))
        with self.lock:
            self.subscriptions[ident] = sub
        return sub

    def handle(self, request: Request) -> Answer:
        ident = request.path.removeprefix("/push/")
        with self.lock:
            sub = self.subscriptions.get(ident)
            gone = ident in self.gone
        if request.method != "POST" or sub is None:
            return 404, {"error": "no such subscription"}, {}
        if gone:
            return 410, {"error": "subscription expired or unsubscribed"}, {}
        status, why, claims = check_vapid(request.headers.get("authorization", ""),
                                          audience=self.base_url, server_key=sub.server_key)
        if status:
            return status, {"error": why}, {}
        if not request.headers.get("ttl", "").isdigit():
            return 400, {"error": "TTL header required"}, {}
        if request.headers.get("content-encoding") != "aes128gcm":
            return 400, {"error": "Content-Encoding must be aes128gcm"}, {}
        if len(request.body) > MAX_BODY:
            return 413, {"error": "payload too large"}, {}
        try:
            plain = decrypt(sub, request.body)
        except ValueError as exc:
            return 400, {"error": str(exc)}, {}
        request.displayed = {"subscription": ident, "claims": claims, "raw": plain,
                             "payload": json.loads(plain.decode("utf-8"))}
        return 201, None, {"location": f"{self.base_url}/m/{next(self._ids)}"}
