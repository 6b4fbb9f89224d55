"""Waking distributed workers through Redis pub/sub.

Redis carries only "look now": the deliveries themselves, their schedule and their leases live in
the database. A lost message (Redis restarting, a worker reconnecting) delays a delivery by at
most one poll interval and never loses it, which is why a plain pub/sub channel is enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import redis
import redis.asyncio as aioredis

log = logging.getLogger("claude_notify.server.wake")

CHANNEL: Final = "claude-notify:deliveries"
RECONNECT_S: Final = 1.0


class RedisWaker:
    """The API side: publish a wake-up after committing new deliveries."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def wake(self) -> None:
        try:
            self._client.publish(CHANNEL, b"1")
        except redis.RedisError as exc:  # the poll interval covers for a missed wake-up
            log.warning("could not wake workers through Redis: %s", exc)

    def close(self) -> None:
        self._client.close()


async def listen(url: str, on_wake: Callable[[], None]) -> None:
    """The worker side: call ``on_wake`` for every message, reconnecting until cancelled."""
    while True:
        client = aioredis.Redis.from_url(url)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                on_wake()  # catch up on anything published while we were away
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_wake()
        except (redis.RedisError, OSError) as exc:
            log.warning("Redis wake-up channel lost (%s); polling until it is back", exc)
            await asyncio.sleep(RECONNECT_S)
        finally:
            await client.aclose()
