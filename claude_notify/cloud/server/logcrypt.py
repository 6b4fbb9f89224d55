"""AES-256-GCM for stored logs and the output in stored events, with named keys so they rotate.

Keys come from settings as ``id:base64(32 bytes)``; the first encrypts, all decrypt. Each chunk
carries its key id and a random 96-bit nonce; the task id and chunk number are bound in as
associated data, so a chunk copied onto another task or position fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("claude_notify.server.logcrypt")


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


OUTPUT_FIELDS = ("tail", "message", "title", "match")
"""The parts of a task event that are command output or Claude's words: sealed at rest."""
SEALED_KEY = "sealed"


def seal_output(payload: dict[str, Any], cipher: LogCipher) -> dict[str, Any]:
    """``payload`` with its output fields replaced by one sealed value.

    The event id is bound in as associated data, so output copied onto another event (another
    user's) does not open there. The rest of the event stays in clear for queries.
    """
    if SEALED_KEY in payload or not any(payload.get(name) for name in OUTPUT_FIELDS):
        return payload
    clear = {k: v for k, v in payload.items() if k not in OUTPUT_FIELDS}
    secret = {k: payload[k] for k in OUTPUT_FIELDS if k in payload}
    sealed = cipher.seal(json.dumps(secret).encode(), _event_context(payload))
    clear[SEALED_KEY] = {"k": sealed.key_id, "n": _b64(sealed.nonce), "c": _b64(sealed.ciphertext)}
    return clear


def open_output(payload: dict[str, Any], cipher: LogCipher | None) -> dict[str, Any]:
    """The payload as it was received; one stored in clear (before sealing) is returned as is.

    Output that cannot be opened (its key is gone, the row was tampered with) is left out and
    the rest of the event still reads: a notification without its tail beats none.
    """
    box = payload.get(SEALED_KEY)
    if not isinstance(box, dict):
        return payload
    clear = {k: v for k, v in payload.items() if k != SEALED_KEY}
    try:
        if cipher is None:
            raise LogKeyError("no log encryption key configured")
        sealed = Sealed(str(box["k"]), base64.b64decode(box["n"]), base64.b64decode(box["c"]))
        secret = json.loads(cipher.open(sealed, _event_context(clear)))
    except (LogKeyError, KeyError, ValueError, TypeError) as exc:
        log.warning("stored output of event %s cannot be read: %s", clear.get("event_id"), exc)
        return clear
    if isinstance(secret, dict):
        clear.update((k, v) for k, v in secret.items() if k in OUTPUT_FIELDS)
    return clear


TEXT_PREFIX = "sealed:v1:"
_TEXT_CONTEXT = b"relay-text"


def seal_text(value: str, cipher: LogCipher) -> str:
    """``value`` sealed into one string: ``sealed:v1:<key id>:<nonce>:<ciphertext>``."""
    sealed = cipher.seal(value.encode(), _TEXT_CONTEXT)
    return f"{TEXT_PREFIX}{sealed.key_id}:{_b64(sealed.nonce)}:{_b64(sealed.ciphertext)}"


def open_text(value: str, cipher: LogCipher | None) -> str:
    """What :func:`seal_text` sealed; a clear value (stored before sealing) as it is. One that
    cannot be opened reads as a note saying so, never as the sealed string."""
    if not value.startswith(TEXT_PREFIX):
        return value
    try:
        if cipher is None:
            raise LogKeyError("no log encryption key configured")
        key_id, nonce, ciphertext = value[len(TEXT_PREFIX):].rsplit(":", 2)
        return cipher.open(Sealed(key_id, base64.b64decode(nonce), base64.b64decode(ciphertext)),
                           _TEXT_CONTEXT).decode()
    except (LogKeyError, ValueError, TypeError) as exc:
        log.warning("a sealed relay text cannot be read: %s", exc)
        return "(stored sealed; it cannot be read with the configured log keys)"


def _event_context(payload: dict[str, Any]) -> bytes:
    return f"event:{payload.get('event_id')}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
