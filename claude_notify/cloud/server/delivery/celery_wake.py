"""Waking distributed workers through Celery, with Redis as its broker.

The outbox in the database is the source of truth: a row is written with its event, claimed
with a lease and settled there, and retries wait in ``next_attempt_at``, never in a broker
countdown (cloud-backend.md §A3: a countdown longer than Redis' visibility timeout runs a task
twice). Celery carries only "there is something to send": the API publishes a ``wake`` task
after committing deliveries, and a worker process consumes it and claims what is due. Losing
one (Redis away, a worker dying with it unacknowledged) costs at most a poll interval.

Wake-ups are coalesced on the API side — at most one publish every :data:`WAKE_INTERVAL_S`,
whatever the number of events — and go to a queue named after the database, so deployments
(and test databases) sharing one Redis never wake each other's workers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger("claude_notify.server.wake")

WAKE_TASK: Final = "claude_notify.deliveries.wake"
WAKE_EXPIRES_S: Final = 10
"""A wake-up nobody took within seconds is stale: a worker has claimed or polled since."""
WAKE_INTERVAL_S: Final = 0.05
"""At most one wake-up per API process this often: a worker woken claims everything due, so
more would only queue up in front of the next one (a burst of 500 events/s once left workers
minutes of stale wake-ups to consume)."""


def queue_name(database_url: str) -> str:
    """The wake-up queue of the deployment whose outbox lives at ``database_url``."""
    return "claude-notify-deliveries-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


def make_app(redis_url: str, database_url: str, on_wake: Callable[[], None] | None = None) -> Any:
    """A Celery app for the wake-up task; ``on_wake`` is what a consuming worker calls."""
    from celery import Celery

    queue = queue_name(database_url)
    app: Any = Celery("claude_notify", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0,
        broker_transport_options={"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
    )

    def wake() -> None:
        if on_wake is not None:
            on_wake()

    # Celery shares a task with every app made later in the process, first callable wins: so a
    # process makes one of these — the consumer's in a worker, the publisher's in an API.
    app.task(name=WAKE_TASK)(wake)
    return app


STOP_WAIT_S: Final = 10.0
"""How long stopping waits for the consumer to wind down (it looks every poll, ~1 s)."""


class CeleryWaker:
    """The API side: a thread publishes one ``wake`` task for any number of wake-ups."""

    def __init__(self, redis_url: str, database_url: str) -> None:
        self._urls = (redis_url, database_url)
        self._app: Any = None  # made on the first wake-up: a worker's own runtime never wakes,
        # so its process holds only the consumer's app (see make_app)
        self._pending = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._publish, name="celery-wake", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._pending.set()

    def _publish(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            if self._closed:
                return
            try:
                if self._app is None:
                    self._app = make_app(*self._urls)
                self._app.send_task(WAKE_TASK, expires=WAKE_EXPIRES_S, retry=False)
            except Exception as exc:  # the poll interval covers a lost wake-up
                log.warning("could not wake workers through Celery: %s", exc)
            time.sleep(WAKE_INTERVAL_S)  # wake-ups meanwhile are folded into the next one

    def close(self) -> None:
        self._closed = True
        self._pending.set()
        self._thread.join(timeout=5)
        if self._app is not None:
            self._app.close()


class CeleryConsumer:
    """The worker side: a Celery worker (solo pool) in a thread, calling ``on_wake`` per task.

    It runs beside the asyncio delivery loop rather than owning the process, so SIGTERM still
    reaches the loop, which drains its in-flight sends before the process exits.
    """

    def __init__(self, redis_url: str, database_url: str, on_wake: Callable[[], None]) -> None:
        self._app = make_app(redis_url, database_url, on_wake)
        self._queue = queue_name(database_url)
        self._controller: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # came up: connected, queue declared, consuming

    def start(self) -> None:
        from celery.worker import WorkController

        # A line per task received and per task run would be two log lines per wake-up.
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)

        self._controller = WorkController(
            app=self._app,
            pool_cls="solo",
            concurrency=1,
            queues=[self._queue],
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=logging.WARNING,
            ready_callback=lambda _consumer: self._ready.set(),
        )
        self._thread = threading.Thread(
            target=self._controller.start, name="celery-consumer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        from celery.worker import state

        # Celery's own way to stop a worker warmly: the flag its SIGTERM handler sets. The
        # consumer checks it between connection retries and at the top of its loop, so it stops
        # at a point of its own choosing. Calling the controller's stop() instead, from this
        # thread, closed the connection under a consumer still declaring its queue, and Celery
        # logged "Unrecoverable error" with a traceback (a worker SIGTERMed just after its
        # start); with the broker away it never reached the retry loop's exit at all.
        state.should_stop = 0
        try:
            if self._thread is not None:
                self._thread.join(timeout=STOP_WAIT_S)
                if self._thread.is_alive() and self._controller is not None:
                    self._controller.stop(in_sighandler=False, exitcode=0)
                    self._thread.join(timeout=STOP_WAIT_S)
        finally:
            state.should_stop = None  # the flag is process-wide; a later consumer starts clean
        self._app.close()
