"""How the API tells workers there is something to send.

The signal carries no data: deliveries live in the database, so a lost wake-up costs at most one
poll interval and never a message.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Waker(Protocol):
    def wake(self) -> None:
        """Say that new deliveries may be due; cheap, thread-safe, never raises."""


class LocalWaker:
    """Wakes the in-process worker; safe to call from the API's worker threads."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop, self._event = loop, event

    def wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop closed between the check and the call
            return
