"""The delivery worker: claims due outbox rows and sends them, a bounded number at a time.

It runs inside the API process (the embedded default) or on its own (``claude-notify server
worker``). Database calls are short and run in threads; sends are async on one shared
``httpx.AsyncClient``. It sleeps until woken (new deliveries) or until the poll interval passes
(retries coming due, leases lapsing).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from claude_notify.cloud.server.channels.base import ChannelAdapter, DeliveryResult
from claude_notify.cloud.server.channels.registry import load_adapter
from claude_notify.cloud.server.delivery import engine
from claude_notify.cloud.server.delivery.wake import LocalWaker
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.worker")

SHUTDOWN_GRACE_S = 10.0
"""In-flight sends get this long on shutdown; anything cut off is re-sent after its lease."""


class Worker:
    def __init__(self, runtime: Runtime, *, http: httpx.AsyncClient | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._http = http
        self._adapters: dict[str, ChannelAdapter] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run in the background for the duration of the block."""
        own_http = self._http is None
        http = self._http or httpx.AsyncClient()
        self._http = http
        if isinstance(self.runtime.waker, LocalWaker):
            self.runtime.waker.attach(asyncio.get_running_loop(), self._wake)
        listener = self._listen_for_wakes()
        loop_task = asyncio.create_task(self.run(), name="delivery-worker")
        try:
            yield self
        finally:
            self._stopping = True
            self._wake.set()
            await loop_task
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            await self._drain()
            if own_http:
                await http.aclose()

    def wake(self) -> None:
        self._wake.set()

    def _listen_for_wakes(self) -> asyncio.Task[None] | None:
        """With Redis configured, API replicas wake this worker through it."""
        if self.settings.redis_url is None:
            return None
        from claude_notify.cloud.server.delivery.redis_wake import listen

        return asyncio.create_task(listen(self.settings.redis_url, self.wake), name="wake-listener")

    async def run(self) -> None:
        """Claim and dispatch until stopped."""
        while not self._stopping:
            self._wake.clear()
            free = self.settings.worker_concurrency - len(self._inflight)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("claiming deliveries failed; retrying after the poll interval")
            if claimed and claimed == free:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_s)
            except asyncio.TimeoutError:
                pass

    async def _claim(self, limit: int) -> int:
        claims = await asyncio.to_thread(
            engine.claim_due, self.runtime.sessions, limit=limit, lease_s=self.settings.lease_s
        )
        for claim in claims:
            task = asyncio.create_task(self._deliver(claim))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(claims)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery crashed", exc_info=task.exception())
        self._wake.set()

    async def _deliver(self, claim: engine.Claim) -> None:
        prepared = await asyncio.to_thread(engine.prepare, self.runtime.sessions, claim)
        if prepared is None:
            return
        started = time.monotonic()
        result = await self._send(prepared)
        duration_ms = round((time.monotonic() - started) * 1000)
        status = await asyncio.to_thread(
            engine.settle,
            self.runtime.sessions,
            prepared,
            result,
            duration_ms=duration_ms,
            settings=self.settings,
            rng=self._rng,
        )
        self._observe(prepared, status, duration_ms)

    def _observe(self, prepared: engine.Prepared, status: str, duration_ms: int) -> None:
        metrics = self.runtime.metrics
        channel = prepared.message.channel_type
        outcome = {"pending": "retry"}.get(status, status)
        metrics.notifications.labels(channel, outcome).inc()
        metrics.attempt_seconds.labels(channel).observe(duration_ms / 1000)
        if status == "sent":
            age = (utcnow() - prepared.created_at).total_seconds()
            metrics.latency.labels(channel).observe(max(age, 0.0))

    async def _send(self, prepared: engine.Prepared) -> DeliveryResult:
        message = prepared.message
        try:
            adapter = self._adapter(message.channel_type)
        except LookupError as exc:
            return DeliveryResult(ok=False, detail=str(exc))
        try:
            return await asyncio.wait_for(adapter.send(message), timeout=self.settings.lease_s / 2)
        except asyncio.TimeoutError:
            return DeliveryResult(ok=False, retryable=True, detail="send timed out")
        except Exception as exc:
            log.exception("adapter %s raised", message.channel_type)
            return DeliveryResult(ok=False, retryable=True, detail=f"adapter error: {exc!r}"[:300])

    def _adapter(self, channel_type: str) -> ChannelAdapter:
        if channel_type not in self._adapters:
            assert self._http is not None  # noqa: S101 - set in running()
            self._adapters[channel_type] = load_adapter(channel_type, self.settings, self._http)
        return self._adapters[channel_type]

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(self._inflight, timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
