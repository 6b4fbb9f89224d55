"""Which agents are connected to this process, and how to wake them.

The signal carries no data, like the delivery waker's: commands live in the database, and a
connection re-reads its queue on every wake-up and every ``poll_s`` anyway, so a lost wake-up
(Redis away) costs latency, never a command. With several API replicas (``REDIS_URL``), a wake-up
is also published on a Redis channel that every replica listens to, so a command posted to one
reaches an agent connected to another at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

Key = tuple[uuid.UUID, str]
CHANNEL: Final = "claude-notify:relay"
log = logging.getLogger("claude_notify.server.relay")


class Hub:
    """Connected agents by (user, machine); ``wake`` is safe from any thread."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[Key, set[tuple[asyncio.AbstractEventLoop, Callable[[], None]]]] = {}
        self._redis_url = redis_url
        self._publisher: Any = None
        self._listener: asyncio.Task[None] | None = None

    @contextmanager
    def connected(self, key: Key, wake: Callable[[], None]) -> Iterator[None]:
        """Register the calling connection for ``key``: ``wake`` is called in its event loop on
        each wake-up (a callback, not a waiting task: an idle connection costs no task)."""
        entry = (asyncio.get_running_loop(), wake)
        if self._redis_url and self._listener is None:
            self._listener = entry[0].create_task(self._listen(self._redis_url))
        with self._lock:
            self._waiting.setdefault(key, set()).add(entry)
        try:
            yield
        finally:
            with self._lock:
                entries = self._waiting.get(key)
                if entries is not None:
                    entries.discard(entry)
                    if not entries:
                        del self._waiting[key]

    def wake(self, key: Key) -> None:
        """Wake ``key``'s connections here and, with Redis, on every other replica."""
        self._wake_here(key)
        if self._redis_url:
            self._publish(f"{key[0]}|{key[1]}")

    def _publish(self, message: str) -> None:
        import redis

        try:
            if self._publisher is None:
                self._publisher = redis.Redis.from_url(
                    self._redis_url or "", socket_timeout=1.0, socket_connect_timeout=1.0)
            self._publisher.publish(CHANNEL, message.encode())
        except redis.RedisError as exc:  # the agents' poll covers for it
            log.warning("could not publish a relay wake-up: %s", exc)

    async def _listen(self, url: str) -> None:
        import redis
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            user, _, machine = bytes(message["data"]).decode().partition("|")
                            with contextlib.suppress(ValueError):
                                self._wake_here((uuid.UUID(user), machine))
            except (redis.RedisError, OSError) as exc:
                log.warning("relay wake-up channel lost (%s); agents poll until it is back", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def _wake_here(self, key: Key) -> None:
        with self._lock:
            entries = list(self._waiting.get(key, ()))
        for loop, callback in entries:
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(callback)
                except RuntimeError:  # the loop closed between the check and the call
                    continue

    def count(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._waiting.values())
