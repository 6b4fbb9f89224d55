"""Operator secrets taken out of text before it is logged, stored or shown.

Failure reasons are built from a fixed vocabulary plus a provider's status and its own error
text, so they should never hold a secret; this is the second line of defence for what slips
through anyway (a proxy that echoes the request line, a third-party exception's message). Two
kinds of thing are replaced: the values of the secrets the running server was configured with
(:func:`remember`, called when a runtime is built), and anything shaped like a credential
whoever it belongs to (a Telegram bot token, one of our API tokens, an ``Authorization`` value).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from claude_notify.cloud.server.settings import Settings

MASK = "[redacted]"
MIN_SECRET_LEN = 6
"""Shorter values are not looked for: replacing every "abc" would garble text, not protect it."""

_SHAPES = (
    (re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{20,}"), MASK),  # a Telegram bot token
    (re.compile(r"\bcnt_[A-Za-z0-9_-]{8,}"), "cnt_" + MASK),  # an API token of ours
    (re.compile(r"\bcna_[A-Za-z0-9_-]{8,}"), "cna_" + MASK),  # an approval link's key
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=,]\s*[\"']?)(?:(bearer|basic|bot)\s+)?"
                r"[^\s\"',;)}\]]+"), r"\1\2 " + MASK),
)

_lock = threading.Lock()
_known: tuple[str, ...] = ()
"""Longest first, so a secret that contains another is replaced whole."""


def remember(settings: Settings) -> None:
    """Look for this server's configured secrets from now on (several runtimes add up)."""
    values = [
        settings.telegram_bot_token, settings.telegram_webhook_secret,
        settings.twilio_auth_token, settings.smtp_password, settings.discord_bot_token,
        settings.feishu_app_secret, settings.feishu_encrypt_key,
        settings.feishu_verification_token, settings.github_client_secret,
        settings.slack_signing_secret,
        settings.stripe_secret_key, settings.stripe_webhook_secret,
        _url_password(settings.database_url),
        _url_password(settings.redis_url),
        settings.sentry_dsn, _url_user(settings.sentry_dsn),
    ]
    if settings.twilio_account_sid and settings.twilio_auth_token:  # the Basic header's value
        basic = f"{settings.twilio_account_sid}:{settings.twilio_auth_token}".encode()
        values.append(base64.b64encode(basic).decode())
    for key in settings.log_keys:
        values += [key, key.partition(":")[2]]
    add(v for v in values if v)


def add(values: Iterable[str]) -> None:
    global _known
    with _lock:
        merged = set(_known) | {v for v in values if len(v) >= MIN_SECRET_LEN}
        _known = tuple(sorted(merged, key=len, reverse=True))


def _url_password(url: str | None) -> str | None:
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return None
    return unquote(password) if password else None


def _url_user(url: str | None) -> str | None:
    """A DSN's key, which is its URL's user part."""
    try:
        return urlsplit(url).username if url else None
    except ValueError:
        return None


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret, every value in ``extra`` and credential shapes masked."""
    for secret in (*_known, *(e for e in extra if len(e) >= MIN_SECRET_LEN)):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, its traceback and its structured fields.

    Attached to the server's log handler; it rewrites the record in place (the message is
    formatted once here), so every handler after it sees the masked text too.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        fields: Any = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True
