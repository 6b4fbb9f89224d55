"""Group commit: the writes of requests that arrive together share one transaction.

Every ``POST /v1/events`` is a handful of short statements and a commit; at a few hundred a
second the fixed costs — ``BEGIN``, the token lookup, the user's channels, ``COMMIT`` and its
WAL flush — dominate. Requests hand their job to a few writer threads instead; a writer takes
whatever is queued when it comes free (never waiting for more, so a lone request is not
delayed), runs the jobs in one transaction and answers them all after the commit. A request
is answered only once its rows are durable, exactly as before.

A job that fails for its own reasons must not cost the others their writes: jobs report their
client errors as values, before writing, and any exception rolls the batch back and runs each
job again in a transaction of its own, where only the faulty one fails.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("claude_notify.server.groupcommit")

T = TypeVar("T")

Memo = dict[Any, Any]
"""Read-only lookups a batch shares (a token's owner, a user's channels): one per transaction."""

Job = Callable[[Session, Memo], T]


class _Pending(Generic[T]):
    __slots__ = ("future", "job", "loop")

    def __init__(self, job: Job[T], loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()

    def resolve(self, result: T | None, error: BaseException | None) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the client went away; its rows are committed all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class GroupCommit:
    """A few writer threads that batch jobs into shared transactions."""

    def __init__(
        self, sessions: sessionmaker[Session], *, writers: int = 2, max_batch: int = 64
    ) -> None:
        self._sessions = sessions
        self._writers = writers
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in a shared transaction; its result once that transaction committed."""
        self._start()
        pending = _Pending(job, asyncio.get_running_loop())
        self._queue.put(pending)
        return await pending.future

    def close(self) -> None:
        """Let the writers finish what is queued, then stop them."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=30)

    def _start(self) -> None:
        if self._threads:
            return
        with self._lock:
            while len(self._threads) < self._writers:
                thread = threading.Thread(
                    target=self._write, name=f"group-commit-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _write(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # closing: leave the stop signal for this thread's next turn
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Pending[Any]]) -> None:
        try:
            with self._sessions() as session:
                memo: Memo = {}
                results = [item.job(session, memo) for item in batch]
                session.commit()
        except Exception as exc:
            if len(batch) == 1:
                batch[0].resolve(None, exc)
                return
            log.warning("a batch of %d writes failed (%s); running them one by one",
                        len(batch), type(exc).__name__)
            for item in batch:
                self._commit([item])
            return
        for item, result in zip(batch, results, strict=True):
            item.resolve(result, None)
