"""The delivery worker: claims due outbox rows and sends them, a bounded number at a time.

It runs inside the API process (the embedded default) or on its own (``claude-notify server
worker``). Database calls are short and run in threads; sends are async on one shared httpx
client (``delivery.http``). It sleeps until woken (new deliveries) or until the poll interval
passes (retries coming due, leases lapsing).

With billing configured it also handles Stripe's webhook events, which the API only records
(:mod:`..billing.routes`): a re-read from Stripe costs an API replica nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

from claude_notify.cloud.server.channels.base import ChannelAdapter, SendResult
from claude_notify.cloud.server.channels.registry import load_adapter
from claude_notify.cloud.server.db.models import DeliveryStatus
from claude_notify.cloud.server.delivery import engine
from claude_notify.cloud.server.delivery.http import delivery_client
from claude_notify.cloud.server.delivery.wake import LocalWaker
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

if TYPE_CHECKING:
    from claude_notify.cloud.server.delivery.celery_wake import CeleryConsumer

log = logging.getLogger("claude_notify.server.worker")

SETTLE_GATHER_S = 0.008
"""How long a finished send waits for others to be recorded with it. The message is out already,
so this costs no delivery latency; fewer, larger settles leave the CPU to everything else."""

CLAIM_GATHER_S = 0.003
"""Under a stream of wake-ups, how long a claim waits for more rows to share its transaction: a
claim costs the same few statements for one row as for thirty. With both gathers, PostgreSQL +
Redis, one API and one worker: rows per claim 5.7 -> 13, ingest 554-580 -> 597-620 events/s;
8 ms here gained nothing more and cost the Telegram benchmark's p99 25 ms."""

STREAM_S = 0.05
"""A wake-up this soon after the last claim means a stream rather than a lone event."""

BILLING_CHECK_S = 0.25
"""At most this often the ledger is looked at for Stripe events, however many wake-ups come."""

SETTLE_FLOOR_S = 5.0
"""On shutdown, how long finished sends may take to be recorded even past the grace period:
a send the receiver accepted but we did not record would go out again from the next worker."""


class Worker:
    def __init__(self, runtime: Runtime, *, http: httpx.AsyncClient | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._http = http
        self._adapters: dict[str, ChannelAdapter] = {}
        self._inflight: dict[asyncio.Task[None], engine.Prepared] = {}
        self._busy = 0
        """Deliveries claimed and not yet settled: what counts against the concurrency."""
        self._results: asyncio.Queue[engine.Outcome] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._stopping = False
        self._deadline = 0.0
        """Monotonic time by which a stopping worker has sent or released what it claimed."""
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy
        self._last_claim = -STREAM_S
        self._billing_due = asyncio.Event()
        self._last_wake = 0.0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run in the background for the duration of the block."""
        own_http = self._http is None
        http = self._http or delivery_client()
        self._http = http
        if isinstance(self.runtime.waker, LocalWaker):
            self.runtime.waker.attach(asyncio.get_running_loop(), self._wake)
        consumer = self._consume_wakes(asyncio.get_running_loop())
        settler = asyncio.create_task(self._settle_loop(), name="delivery-settler")
        keeper = asyncio.create_task(self._housekeeping(), name="housekeeping")
        billing = (asyncio.create_task(self._billing(), name="billing-events")
                   if self.settings.billing_enabled else None)
        loop_task = asyncio.create_task(self.run(), name="delivery-worker")
        try:
            yield self
        finally:
            self.stop()
            await loop_task
            if consumer is not None:
                await asyncio.to_thread(consumer.stop)
            await self._drain()
            if billing is not None:  # the event in hand is finished; the rest wait for the next
                self._billing_due.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(billing), timeout=max(
                        self._deadline - time.monotonic(), 0.0))
                billing.cancel()
                await asyncio.gather(billing, return_exceptions=True)
            settle_s = max(self._deadline - time.monotonic(), SETTLE_FLOOR_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._results.join(), timeout=settle_s)
            settler.cancel()
            keeper.cancel()
            await asyncio.gather(settler, keeper, return_exceptions=True)
            if own_http:
                await http.aclose()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; what is in flight has ``shutdown_grace_s`` from the first call.

        Called on SIGTERM, before the API's own drain, so both share one grace period.
        """
        if not self._stopping:
            self._stopping = True
            self._deadline = time.monotonic() + self.settings.shutdown_grace_s
            self._wake.set()

    async def _housekeeping(self) -> None:
        """Clear expired sign-in rows now and every hour (:mod:`..housekeeping`); with billing on,
        retry Stripe events whose handling failed and end lapsed plans."""
        from claude_notify.cloud.server import housekeeping

        while True:
            try:
                gone = await asyncio.to_thread(housekeeping.sweep, self.runtime.sessions)
                if any(gone.values()):
                    log.info("cleared expired rows: %s", gone)
                if self.settings.billing_enabled:  # failed Stripe events again, lapsed plans
                    from claude_notify.cloud.server.billing.service import housekeep

                    done = await asyncio.to_thread(housekeep, self.runtime.sessions, self.settings)
                    if any(done.values()):
                        log.info("billing: %s", done)
            except Exception:
                log.exception("clearing expired rows failed; trying again later")
            await asyncio.sleep(housekeeping.EVERY_S)

    async def _billing(self) -> None:
        """Handle the Stripe events the webhook recorded, one at a time, in arrival order.

        Looked for when woken (by the webhook: in the API's process directly, see
        :class:`~..billing.service.Arrivals`, elsewhere as deliveries wake workers), at most
        every :data:`BILLING_CHECK_S`, and at least every poll. A worker inside the API's process
        waits for a pause in its wake-ups and in webhook deliveries before each step of an
        event (:meth:`_pause_for_api`), since the handling's CPU would otherwise be taken from
        the webhook answers of a burst (p99 70 -> 150 ms at 50 concurrent deliveries in
        ``scripts/bench_billing.py``). An event still unhandled at a stop keeps its row; the
        next worker takes it once its claim lapses.
        """
        from claude_notify.cloud.server.billing import service

        sessions, settings = self.runtime.sessions, self.settings
        stop_listening: Callable[[], None] = lambda: None  # noqa: E731
        if settings.embedded_worker:  # the webhook in this process wakes this loop directly
            loop = asyncio.get_running_loop()

            def due() -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed: stopping anyway
                    loop.call_soon_threadsafe(self._billing_due.set)

            stop_listening = service.ARRIVALS.listen(due)
        try:
            while not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._billing_due.wait(),
                                           timeout=settings.worker_poll_s)
                self._billing_due.clear()
                if self._stop_requested():
                    return
                try:
                    events = await asyncio.to_thread(service.due, sessions)
                except Exception:
                    log.exception("reading Stripe events to handle failed; trying again later")
                    events = []
                for event_id in events:
                    if self._stop_requested():
                        return
                    pause = self._pause_for_api() if settings.embedded_worker else None
                    try:
                        await asyncio.to_thread(service.process, sessions, settings, event_id,
                                                pause=pause)
                    except Exception:  # the database away: the row stays for the next look
                        log.exception("billing event %s could not be handled", event_id)
                await asyncio.sleep(BILLING_CHECK_S)
        finally:
            stop_listening()

    def _pause_for_api(self) -> Callable[[], None]:
        """For one Stripe event: wait, on the handler's thread, until neither a wake-up nor a
        webhook delivery came for :data:`~..billing.service.QUIET_S`, for at most
        :data:`~..billing.service.MAX_DELAY_S` in all; not at all once stopping. Checked before
        each step rather than each event: a burst arriving mid-event met the rest of it (two
        transactions and a Stripe call), and a webhook's own wake-up comes only after its
        commit, so deliveries are heard of as they arrive."""
        from claude_notify.cloud.server.billing.service import ARRIVALS, MAX_DELAY_S, QUIET_S

        deadline = time.monotonic() + MAX_DELAY_S

        def pause() -> None:
            while not self._stopping and time.monotonic() < deadline and (
                    time.monotonic() - max(self._last_wake, ARRIVALS.last) < QUIET_S):
                time.sleep(QUIET_S / 5)  # this thread only: nothing the API waits for

        return pause

    def _stop_requested(self) -> bool:
        return self._stopping

    def _consume_wakes(self, loop: asyncio.AbstractEventLoop) -> CeleryConsumer | None:
        """With Redis configured, API replicas wake this worker through Celery."""
        if self.settings.redis_url is None or self.settings.embedded_worker:
            return None
        from claude_notify.cloud.server.delivery.celery_wake import CeleryConsumer

        def wake() -> None:  # called on the consumer's thread
            with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping anyway
                loop.call_soon_threadsafe(self._wake.set)

        consumer = CeleryConsumer(self.settings.redis_url, self.settings.database_url, wake)
        consumer.start()
        return consumer

    async def run(self) -> None:
        """Claim and dispatch until stopped."""
        while not self._stopping:
            self._wake.clear()
            limit = self.settings.worker_concurrency
            free = limit - self._busy
            claimed = 0
            # With half the slots still busy, wait for the other half: a batch's statements cost
            # the same for one row as for many, and a backlog kept the batches at one or two.
            if free > 0 and (self._busy <= limit // 2 or free >= limit // 2):
                if time.monotonic() - self._last_claim < STREAM_S:
                    await asyncio.sleep(CLAIM_GATHER_S)
                    if self._stop_requested():  # during the sleep: claim nothing more
                        break
                    free = limit - self._busy
                self._last_claim = time.monotonic()
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("claiming deliveries failed; retrying after the poll interval")
            if claimed and claimed == free:
                continue
            timeout = self.settings.worker_poll_s
            if not claimed and not self._busy:
                timeout = await self._until_next_retry(timeout)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass
            else:
                self._last_wake = time.monotonic()
            self._billing_due.set()

    async def _until_next_retry(self, poll_s: float) -> float:
        """Seconds to sleep when idle: until the soonest retry falls due, at most ``poll_s``.

        Nobody wakes a worker for a retry its own backoff scheduled, so without this it would
        wait for the poll, however short the backoff.
        """
        try:
            due = await asyncio.to_thread(engine.next_retry_at, self.runtime.sessions)
        except Exception:
            log.exception("reading the next retry's time failed")
            return poll_s
        if due is None:
            return poll_s
        return min(poll_s, max(0.0, (due - utcnow()).total_seconds()))

    async def _claim(self, limit: int) -> int:
        """Claim and prepare a batch in one transaction, then send each concurrently."""
        claimed, prepared = await asyncio.to_thread(
            engine.claim_and_prepare, self.runtime.sessions, limit=limit,
            lease_s=self.settings.lease_s,
            reply_token_ttl_s=self.settings.relay_reply_token_ttl_s,
        )
        if not claimed:
            return 0
        self._busy += len(prepared)
        for item in prepared:
            task = asyncio.create_task(self._deliver(item))
            self._inflight[task] = item
            task.add_done_callback(self._done)
        return claimed

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery crashed", exc_info=task.exception())

    async def _deliver(self, prepared: engine.Prepared) -> None:
        started = time.monotonic()
        result = await self._send(prepared)
        duration_ms = round((time.monotonic() - started) * 1000)
        await self._results.put((prepared, result, duration_ms))

    async def _settle_loop(self) -> None:
        """Record finished sends in batches: one transaction for whatever has finished."""
        while True:
            batch = [await self._results.get()]
            if self._inflight:  # more answers are on their way: let a few join this batch
                await asyncio.sleep(SETTLE_GATHER_S)
            while not self._results.empty() and len(batch) < 100:
                batch.append(self._results.get_nowait())
            try:
                statuses = await asyncio.to_thread(
                    engine.settle_many,
                    self.runtime.sessions,
                    batch,
                    settings=self.settings,
                    rng=self._rng,
                )
            except Exception:
                # The rows stay claimed; their leases lapse and they are sent again.
                log.exception("recording %d delivery outcome(s) failed", len(batch))
                statuses = [engine.LOST] * len(batch)
            for (prepared, _, duration_ms), status in zip(batch, statuses, strict=True):
                self._observe(prepared, status, duration_ms)
            self._busy -= len(batch)
            for _ in batch:
                self._results.task_done()
            self._wake.set()

    def _observe(self, prepared: engine.Prepared, status: str, duration_ms: int) -> None:
        metrics = self.runtime.metrics
        channel = prepared.message.channel_type
        outcome = "retry" if status == DeliveryStatus.PENDING else str(status)
        metrics.notifications.labels(channel, outcome).inc()
        metrics.attempt_seconds.labels(channel).observe(duration_ms / 1000)
        if status == DeliveryStatus.SENT:
            age = (utcnow() - prepared.created_at).total_seconds()
            metrics.latency.labels(channel).observe(max(age, 0.0))

    async def _send(self, prepared: engine.Prepared) -> SendResult:
        message = prepared.message
        try:
            adapter = self._adapter(message.channel_type)
        except LookupError as exc:
            return SendResult(ok=False, detail=str(exc))
        try:
            return await asyncio.wait_for(adapter.send(message), timeout=self.settings.lease_s / 2)
        except asyncio.TimeoutError:
            return SendResult(ok=False, retryable=True, detail="send timed out")
        except Exception as exc:
            log.exception("adapter %s raised", message.channel_type)
            # The class only: an exception's text may quote a URL holding the operator's token.
            return SendResult(ok=False, retryable=True,
                                  detail=f"internal error in the {message.channel_type} "
                                         f"adapter ({type(exc).__name__})")

    def _adapter(self, channel_type: str) -> ChannelAdapter:
        if channel_type not in self._adapters:
            assert self._http is not None  # noqa: S101 - set in running()
            self._adapters[channel_type] = load_adapter(channel_type, self.settings, self._http)
        return self._adapters[channel_type]

    async def _drain(self) -> None:
        """Let in-flight sends finish until the deadline; cut off the rest and release their rows
        for the next worker (a lease would hold them for up to ``lease_s``)."""
        if not self._inflight:
            return
        timeout = max(self._deadline - time.monotonic(), 0.0)
        _, pending = await asyncio.wait(list(self._inflight), timeout=timeout)
        cut = [self._inflight[task] for task in pending if task in self._inflight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if not cut:
            return
        self._busy -= len(cut)
        try:
            released = await asyncio.to_thread(engine.release_many, self.runtime.sessions, cut)
        except Exception:
            log.exception("releasing %d cut-off deliveries failed; they go after their lease",
                          len(cut))
        else:
            log.info("shutdown: %d delivery(ies) cut off after the grace period, %d released",
                     len(cut), released)
