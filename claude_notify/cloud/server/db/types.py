"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import JSON, DateTime, Engine, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from claude_notify.cloud.server.logcrypt import (
    LogCipher,
    open_output,
    open_text,
    seal_output,
    seal_text,
)

JSONType = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere, JSONB where PostgreSQL can index it."""


class UTCDateTime(TypeDecorator[datetime]):
    """Time-zone-aware UTC datetimes in and out.

    SQLite has no time zones and hands back naive values; PostgreSQL hands back the session's
    zone. Both are normalised to UTC so comparisons never mix naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - the column type guarantees it
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_CIPHERS: WeakKeyDictionary[Dialect, LogCipher] = WeakKeyDictionary()


def bind_cipher(engine: Engine, cipher: LogCipher) -> None:
    """Seal output in events written through ``engine``, and open it when read (the runtime
    calls this when log keys are configured; each engine has its own dialect object)."""
    _CIPHERS[engine.dialect] = cipher


class SealedJSON(TypeDecorator[dict[str, Any]]):
    """A task event's JSON with its output sealed (see :func:`~..logcrypt.seal_output`).

    In the column type, so every path that writes or reads events (the ingest's Core insert,
    the delivery engine, the relay) does so without knowing: none of them can forget it.
    Without a bound cipher, events are stored in clear and clear rows always read.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> Any:
        cipher = _CIPHERS.get(dialect)
        if value is None or cipher is None:
            return value
        return seal_output(value, cipher)

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            return value  # type: ignore[no-any-return]
        return open_output(value, _CIPHERS.get(dialect))


class SealedText(TypeDecorator[str]):
    """Text that may carry a command's output (a relayed Claude turn's failure holds Claude's
    answer), sealed with the log keys like events' output; clear rows still read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        cipher = _CIPHERS.get(dialect)
        if value is None or cipher is None:
            return value
        return seal_text(value, cipher)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if not isinstance(value, str):
            return value  # type: ignore[no-any-return]
        return open_text(value, _CIPHERS.get(dialect))
