"""Helpers shared by the cloud tests: waiting on conditions, the test servers' records."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.smtp import Envelope

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def needed(tool: str, *names: str) -> str:
    """The path of ``tool`` (the first of ``names`` on PATH); missing, the test fails in CI
    (scripts/test.sh installs it) and is skipped elsewhere."""
    found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None:
        why = f"{tool} is not installed (scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """What the real SMTP server received."""

    host: str
    port: int
    ca_file: str
    messages: list[Envelope] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    """Per message: whether the session had been upgraded with STARTTLS."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def wait(self, n: int, timeout: float = 30.0) -> list[Envelope]:
        wait_for(lambda: self.count() >= n, timeout=timeout, what=f"{n} e-mail(s)")
        with self.lock:
            return list(self.messages)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


HANG = -1
"""A scripted "status" that makes the receiver hold the request open until released."""


@dataclass
class Receiver:
    """A real HTTP receiver on 127.0.0.1; ``script`` holds the statuses to answer, in order."""

    url: str
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, *responses: int | tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.script.extend(r if isinstance(r, tuple) else (r, {}) for r in responses)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait(self, n: int, timeout: float = 30.0) -> list[Received]:
        wait_for(lambda: self.count() >= n, timeout=timeout, what=f"{n} webhook call(s)")
        with self.lock:
            return list(self.received)


@dataclass
class Account:
    email: str
    token: str
    user_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register_agent(client: TestClient, user: Account, machine: str) -> str:
    """Register ``machine``'s agent for ``user`` (pro): the relay queues only for a machine
    with one. Returns its credential."""
    made = client.post("/v1/agents", json={"machine_id": machine}, headers=user.headers)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def parse_mail(envelope: Envelope) -> EmailMessage:
    raw = envelope.content if isinstance(envelope.content, bytes) else b""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def mail_text(envelope: Envelope) -> str:
    body = parse_mail(envelope).get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def verification_code(envelope: Envelope) -> str:
    return mail_text(envelope).split("the code ")[1].split()[0].rstrip(".")


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 that a test can cut and restore: a database outage on demand,
    without touching the shared server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.down = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self.down.set()
        with self._lock:
            socks, self._socks = self._socks, set()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
