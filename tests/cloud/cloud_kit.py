"""Helpers shared by the cloud tests: waiting on conditions, the test servers' records."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
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

    def wait(self, n: int, timeout: float = 10.0) -> list[Envelope]:
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

    def wait(self, n: int, timeout: float = 10.0) -> list[Received]:
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
