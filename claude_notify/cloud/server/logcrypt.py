"""AES-256-GCM for stored logs, with named keys so they can rotate.

Keys come from settings as ``id:base64(32 bytes)``; the first encrypts, all decrypt. Each chunk
carries its key id and a random 96-bit nonce; the task id and chunk number are bound in as
associated data, so a chunk copied onto another task or position fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class LogKeyError(ValueError):
    """A log key setting is malformed, or a chunk's key is missing or it does not verify."""


def new_key(key_id: str = "k1") -> str:
    """A fresh key setting value."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def parse_keys(values: Sequence[str]) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for value in values:
        key_id, sep, encoded = value.partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not sep or not key_id or len(key_id) > 32 or len(raw) != 32:
            raise LogKeyError("log keys must look like ID:BASE64 with a 32-byte (AES-256) key")
        keys[key_id] = raw
    return keys


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class LogCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        parsed = parse_keys(keys)
        if not parsed:
            raise LogKeyError("no log encryption key configured")
        self._current = next(iter(parsed))
        self._aead = {key_id: AESGCM(raw) for key_id, raw in parsed.items()}

    def seal(self, data: bytes, context: bytes) -> Sealed:
        nonce = os.urandom(12)
        ciphertext = self._aead[self._current].encrypt(nonce, data, context)
        return Sealed(self._current, nonce, ciphertext)

    def open(self, sealed: Sealed, context: bytes) -> bytes:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise LogKeyError(f"log key {sealed.key_id!r} is no longer configured")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, context)
        except InvalidTag:
            raise LogKeyError("a stored log chunk failed authentication") from None
