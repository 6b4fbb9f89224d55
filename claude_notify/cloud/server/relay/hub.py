"""Which agents are connected to this process, and how to wake them.

The signal carries no data, like the delivery waker's: commands live in the database, and a
connection re-reads its queue on every wake-up and every ``poll_s`` anyway, so a lost wake-up
(Redis away) costs latency, never a command. With several API replicas (``REDIS_URL``), a wake-up
is also published on a Redis channel that every replica listens to, so a command posted to one
reaches an agent connected to another at once.

Revocation closes connections the same way: :meth:`Hub.revoked` cuts the connections of the
revoked tokens here and publishes their ids to the other replicas (``server revoke`` publishes
with :func:`announce_revoked`). Because a publish can be lost, and the embedded server has no
Redis at all, each process also looks every :data:`SWEEP_S` for tokens revoked in the last
seconds (an indexed query, one per process, however many agents are connected). A connection
also checks its token each time it reads its queue, so nothing is handed to a revoked agent even
before it is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from claude_notify.events import utcnow

Key = tuple[uuid.UUID, str]
Entry = tuple[asyncio.AbstractEventLoop, Callable[[], None]]
CHANNEL: Final = "claude-notify:relay"
REVOKED: Final = "!"
"""Starts a message of revoked token ids (a wake-up starts with a user's UUID, never with this)."""
SWEEP_S: Final = 0.5
SWEEP_OVERLAP: Final = timedelta(seconds=10)
"""Each look goes this far back before the previous one: a connection that authenticated just
before its token was revoked, or a clock a little behind the revoking process's, is still found;
finding a revocation again closes nothing more."""
log = logging.getLogger("claude_notify.server.relay")


def announce_revoked(redis_url: str, token_ids: Iterable[uuid.UUID]) -> None:
    """Tell every replica to close the connections of ``token_ids`` (from a process without a
    hub: ``server revoke``). A failure is logged; the replicas' own look finds them anyway."""
    import redis

    ids = [str(token_id) for token_id in token_ids]
    if not ids:
        return
    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.publish(CHANNEL, (REVOKED + " ".join(ids)).encode())
    except redis.RedisError as exc:
        log.warning("could not publish a revocation: %s", exc)
    finally:
        client.close()


class Hub:
    """Connected agents by (user, machine); ``wake`` is safe from any thread."""

    def __init__(self, redis_url: str | None = None,
                 revoked_since: Callable[[datetime], list[uuid.UUID]] | None = None) -> None:
        """``revoked_since`` reads the tokens revoked since a time (blocking: it runs in a
        thread)."""
        self._lock = threading.Lock()
        self._waiting: dict[Key, set[Entry]] = {}
        self._tokens: dict[uuid.UUID, set[Entry]] = {}
        self._redis_url = redis_url
        self._publisher: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._revoked_since = revoked_since
        self._sweeper: asyncio.Task[None] | None = None

    @contextmanager
    def connected(self, key: Key, wake: Callable[[], None], *, token_id: uuid.UUID | None = None,
                  cut: Callable[[], None] | None = None) -> Iterator[None]:
        """Register the calling connection for ``key``: ``wake`` is called in its event loop on
        each wake-up (a callback, not a waiting task: an idle connection costs no task), ``cut``
        when ``token_id`` is revoked."""
        loop = asyncio.get_running_loop()
        entry = (loop, wake)
        cutter = (loop, cut) if cut is not None else None
        if self._redis_url and self._listener is None:
            self._listener = loop.create_task(self._listen(self._redis_url))
        if cutter is not None and self._revoked_since is not None and (
                self._sweeper is None or self._sweeper.done()
                or self._sweeper.get_loop().is_closed()):
            self._sweeper = loop.create_task(self._sweep())
        with self._lock:
            self._waiting.setdefault(key, set()).add(entry)
            if token_id is not None and cutter is not None:
                self._tokens.setdefault(token_id, set()).add(cutter)
        try:
            yield
        finally:
            with self._lock:
                _discard(self._waiting, key, entry)
                if token_id is not None and cutter is not None:
                    _discard(self._tokens, token_id, cutter)

    def revoked(self, token_ids: Iterable[uuid.UUID]) -> None:
        """Close the connections of ``token_ids`` here and, with Redis, on every other replica
        (safe from any thread; call it once the revocation is committed)."""
        ids = list(token_ids)
        if not ids:
            return
        self._cut_here(ids)
        if self._redis_url:
            self._publish(REVOKED + " ".join(str(token_id) for token_id in ids))

    def _cut_here(self, token_ids: Iterable[uuid.UUID]) -> None:
        with self._lock:
            entries = [e for token_id in token_ids for e in self._tokens.get(token_id, ())]
        _call_in_loops(entries)

    async def _sweep(self) -> None:
        """Every :data:`SWEEP_S` while a connection is here: close what was revoked since."""
        assert self._revoked_since is not None  # noqa: S101 - started only with it
        since = utcnow() - SWEEP_OVERLAP
        while True:
            await asyncio.sleep(SWEEP_S)
            with self._lock:
                idle = not self._tokens
            if idle:  # nothing to cut; nor, later, a backlog of old revocations to read
                since = utcnow() - SWEEP_OVERLAP
                continue
            started = utcnow()
            try:
                found = await asyncio.to_thread(self._revoked_since, since)
            except Exception as exc:  # the database away: the connections' own check holds
                log.warning("could not look for revoked agent tokens: %s", exc)
                continue
            since = started - SWEEP_OVERLAP
            if found:
                self._cut_here(found)

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
                            self._heard(bytes(message["data"]).decode())
            except (redis.RedisError, OSError) as exc:
                log.warning("relay wake-up channel lost (%s); agents poll until it is back", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def _heard(self, text: str) -> None:
        with contextlib.suppress(ValueError):
            if text.startswith(REVOKED):
                self._cut_here([uuid.UUID(word) for word in text[1:].split()])
            else:
                user, _, machine = text.partition("|")
                self._wake_here((uuid.UUID(user), machine))

    def _wake_here(self, key: Key) -> None:
        with self._lock:
            entries = list(self._waiting.get(key, ()))
        _call_in_loops(entries)

    def count(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._waiting.values())


def _call_in_loops(entries: Iterable[Entry]) -> None:
    for loop, callback in entries:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the loop closed between the check and the call
                continue


def _discard(registry: dict[Any, set[Entry]], key: Any, entry: Entry) -> None:
    entries = registry.get(key)
    if entries is not None:
        entries.discard(entry)
        if not entries:
            del registry[key]

