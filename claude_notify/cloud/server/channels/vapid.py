"""The server's Web Push identity (VAPID, RFC 8292): a P-256 key pair.

The private key is a setting (base64url of its 32 raw bytes, the form ``web-push
generate-vapid-keys`` and ``claude-notify server vapid-keys`` print); the public key is what a
browser's ``PushManager.subscribe`` takes as ``applicationServerKey``, and what push services
check every push's signature against. Only :mod:`cryptography` here, so settings and the web
pages can read the key without loading the push library.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class VapidKeyError(ValueError):
    """The configured key is not a P-256 private key in the expected form."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; ``ValueError`` for anything else."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def private_key(raw: str) -> ec.EllipticCurvePrivateKey:
    try:
        secret = b64url_decode(raw.strip())
    except ValueError:
        raise VapidKeyError("must be base64url (claude-notify server vapid-keys)") from None
    if len(secret) != 32:
        raise VapidKeyError("must be the 32 raw bytes of a P-256 private key, base64url")
    try:
        return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    except ValueError:
        raise VapidKeyError("is not a valid P-256 private key") from None


@functools.lru_cache(maxsize=4)
def public_key(raw: str) -> str:
    """The browser's ``applicationServerKey``: the uncompressed public point, base64url."""
    point = private_key(raw).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(point)


def new_private_key() -> str:
    """A fresh key, in the form the setting takes."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))
