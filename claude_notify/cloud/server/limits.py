"""Rate limits: in this process (events per token, agent connections) and in the database.

:func:`reached` counts recent rows in the database, so its limits hold across API replicas: the
relay's commands per sender a minute, confirmation messages per user an hour, sign-in requests
per address and per client IP an hour. Each counts rows it writes anyway (audit rows, outbox rows,
sign-in requests), so the limit needs no table of its own.

:class:`PerMinute` counts per key in the current minute, in this process: the events-per-token
limit, on the hot path where a query per request would cost too much. A fixed window (the
wall-clock minute) rather than a sliding one: one integer per key, and the whole table is dropped
when the minute turns, so keys nobody uses again cost nothing. A client can send up to twice the
limit across a minute boundary; what the limit guards against — a runaway loop or a leaked token
flooding the server — is stopped all the same. Each API process counts its own requests;
replicas behind a balancer each allow the limit.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from claude_notify.events import utcnow


def reached(session: Session, limit: int, window_s: float,
            created_at: InstrumentedAttribute[datetime], *where: ColumnElement[Any]) -> bool:
    """Whether the rows matching ``where`` written in the last ``window_s`` (by their
    ``created_at``) already number ``limit``: the next one is over it."""
    since = utcnow() - timedelta(seconds=window_s)
    recent = session.scalar(select(func.count()).select_from(created_at.class_)
                            .where(*where, created_at > since))
    return (recent or 0) >= limit


class PerMinute:
    def __init__(self, limit: int, *, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._minute = -1
        self._counts: dict[bytes, int] = {}

    def hit(self, secret: str) -> int | None:
        """Count one request for ``secret``; ``None`` if allowed, else seconds to wait.

        Keyed by a digest, so the table never holds a usable credential.
        """
        if self.limit <= 0:
            return None
        key = hashlib.sha256(secret.encode()).digest()[:16]
        now = self._clock()
        minute = int(now // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._counts = minute, {}
            count = self._counts.get(key, 0)
            if count >= self.limit:
                return max(1, math.ceil((minute + 1) * 60 - now))
            self._counts[key] = count + 1
            return None


class Slots:
    """At most ``limit`` held at once per key (agent connections per account, here)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[object, int] = {}

    def take(self, key: object) -> bool:
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self.limit:
                return False
            self._held[key] = held + 1
            return True

    def release(self, key: object) -> None:
        with self._lock:
            held = self._held.get(key, 0) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)
