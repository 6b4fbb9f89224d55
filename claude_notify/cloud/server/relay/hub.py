"""Which agents are connected to this process, and how to wake them.

The signal carries no data, like the delivery waker's: commands live in the database, and a
connection re-reads its queue on every wake-up and every ``poll_s`` anyway, so a lost wake-up
(another replica, Redis away) costs latency, never a command.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

Key = tuple[uuid.UUID, str]


class Hub:
    """Connected agents by (user, machine); ``wake`` is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[Key, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextmanager
    def connected(self, key: Key) -> Iterator[asyncio.Event]:
        """Register the calling connection for ``key``; the event is set on each wake-up."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(key, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                entries = self._waiting.get(key)
                if entries is not None:
                    entries.discard(entry)
                    if not entries:
                        del self._waiting[key]

    def wake(self, key: Key) -> None:
        with self._lock:
            entries = list(self._waiting.get(key, ()))
        for loop, event in entries:
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:  # the loop closed between the check and the call
                    continue

    def count(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._waiting.values())
