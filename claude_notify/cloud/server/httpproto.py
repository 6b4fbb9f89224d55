"""How the server meets its connections: a deadline for request headers, and room for sockets.

uvicorn closes a connection left idle *between* requests (``timeout_keep_alive``), but sets no
limit on how long one request's headers may take: a client that sends half a request line and
waits holds its connection and a file descriptor for ever, and a thousand such clients
(slowloris) use up what the process may open, so nobody else is accepted. Here each request's
headers must be complete within :data:`HEADER_TIMEOUT_S` of the connection opening (or of the
first byte of a keep-alive connection's next request), or the connection is closed. Bodies and
responses are not limited by it: uploads and long answers, and WebSocket tunnels, are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S: Final = 10.0
"""Ample for any real client on any link: a request's headers are a few hundred bytes."""

FD_LIMIT: Final = 65_536


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request headers are too slow."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:  # the first byte of a request
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def raise_fd_limit() -> None:
    """Let the process open as many files as its hard limit allows (up to :data:`FD_LIMIT`).

    A shell's or service manager's soft limit is often 1,024: one descriptor per client
    connection, so a server kept there refuses new connections at a thousand open ones.
    """
    if sys.platform != "win32":  # Windows has no such limit on sockets
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = FD_LIMIT if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            with contextlib.suppress(ValueError, OSError):  # a sandbox may forbid it
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
