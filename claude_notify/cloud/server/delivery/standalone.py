"""``claude-notify server worker``: a delivery worker process of its own.

Any number of these run against one PostgreSQL database: they claim rows with
``FOR UPDATE SKIP LOCKED`` so no two send the same delivery, and a worker killed mid-send loses
nothing (its lease lapses and another takes the row). SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from claude_notify.cloud.server.delivery.worker import Worker
from claude_notify.cloud.server.runtime import Runtime

log = logging.getLogger("claude_notify.server.worker")


async def run_worker(runtime: Runtime, *, stop: asyncio.Event | None = None) -> None:
    """Deliver until ``stop`` is set or the process is asked to terminate."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    log.info("delivery worker started")
    try:
        async with Worker(runtime).running():
            await stop.wait()
    finally:
        runtime.close()
        log.info("delivery worker stopped")
