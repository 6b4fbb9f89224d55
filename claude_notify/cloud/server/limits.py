"""Counting per key in the current minute, in this process: the events-per-token limit.

A fixed window (the wall-clock minute) rather than a sliding one: one integer per key, and the
whole table is dropped when the minute turns, so keys nobody uses again cost nothing. A client
can send up to twice the limit across a minute boundary; what the limit guards against — a
runaway loop or a leaked token flooding the server — is stopped all the same. Each API process
counts its own requests; replicas behind a balancer each allow the limit.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable


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
