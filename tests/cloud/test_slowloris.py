"""Slowloris: connections that never finish their request headers are closed, and cost no one
else an answer.

Against the real server process (``claude-notify server``, uvicorn with httptools): 1,000
sockets each send part of a request and stop; ``/healthz`` still answers at once, and the server
closes every one of them within its header deadline (10 s) plus slack for a loaded machine. A
client that sends nothing at all is closed the same way; one that finishes in time is served.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloud_kit import Mailbox
from relay_kit import Server

from claude_notify.cloud.server.httpproto import HEADER_TIMEOUT_S

SOCKETS = 1000
SLACK_S = 15.0
"""Two cores shared by six test runs: the deadline's timer can fire late, never early."""


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """This process holds 1,000 sockets at once; the limit is put back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SOCKETS + 200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard limit on open files is {hard}, below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def server(tmp_path: Path, smtp_server: Mailbox, enough_fds: None) -> Iterator[Server]:
    """The server started with a soft limit on open files that the slow sockets alone use up
    (shells and service managers often set 1,024), so it must raise its own to stay reachable."""
    running = Server.make(f"sqlite:///{tmp_path / 'server.db'}", smtp_server)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOCKETS, hard))
    try:
        running.start()  # the child inherits the limit at fork
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield running
    running.stop()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def test_half_sent_requests_are_closed_and_the_server_stays_responsive(server: Server) -> None:
    sockets: list[socket.socket] = []
    try:
        started = time.monotonic()
        for i in range(SOCKETS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i % 100:  # every hundredth sends nothing at all
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            sockets.append(sock)
        sent = time.monotonic()

        # Another client is answered promptly, all 1,000 still open.
        healthz = httpx.get(f"{server.url}/healthz", timeout=10)
        assert healthz.status_code == 200
        answered_in = time.monotonic() - sent
        assert answered_in < 5, f"/healthz took {answered_in:.1f}s beside {SOCKETS} slow sockets"
        # A request finished in time is served on a connection opened with the slow ones.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as prompt:
            prompt.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)  # past nothing but the network's own pace; the deadline is 10 s
            prompt.sendall(b"Connection: close\r\n\r\n")
            assert prompt.recv(4096).startswith(b"HTTP/1.1 200")

        # The server closes every half-sent connection, after its deadline and not long after.
        selector = selectors.DefaultSelector()
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        open_ = set(sockets)
        deadline = started + HEADER_TIMEOUT_S + SLACK_S
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if closed_by_server(sock):
                    selector.unregister(sock)
                    open_.discard(sock)
        took = time.monotonic() - sent
        assert not open_, f"{len(open_)} of {SOCKETS} half-sent still open at {took:.0f}s"
        assert took >= HEADER_TIMEOUT_S - 1, f"closed after {took:.1f}s: before the deadline"
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
