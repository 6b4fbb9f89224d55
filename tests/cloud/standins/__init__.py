"""Local stand-ins for the chat and SMS providers, on 127.0.0.1.

Each implements the documented request contract of its provider (path, method, content type,
auth, signature, limits; ``shared/reference/cloud-backend.md`` Part B), answers the way the
provider does (its success and error bodies, 429s, Feishu's HTTP 200 with an error code) and
records what it received and what it would have displayed. Tests script answers with
:meth:`StandIn.answer` and read :attr:`StandIn.requests`.

They never import the adapters: limits, signatures and segment counts are computed here
independently, so an adapter bug cannot hide behind its own helper.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, Any, dict[str, str]]
"""Status, JSON body (``None`` for none, ``bytes`` for a body sent as it is) and extra headers."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0
    """What the stand-in answered."""
    displayed: Any = None
    """What the provider would have shown, when it accepted the message."""

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=False)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    """Providers do not refuse connections under load: a deep accept backlog, like theirs."""


class StandIn:
    """A threaded HTTP server on a free loopback port; subclasses implement :meth:`handle`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Answer] = []
        self.lock = threading.Lock()
        self.record = True
        """Benchmarks turn recording off to keep memory flat."""
        self.delay_s = 0.0
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests with these, whatever they contain."""
        with self.lock:
            self.script.extend(answers)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def wait(self, n: int, timeout: float = 30.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {n} request(s), got {self.count()}")
            time.sleep(0.01)
        with self.lock:
            return list(self.requests)

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300 and r.displayed is not None]

    def handle(self, request: Request) -> Answer:
        raise NotImplementedError

    def _respond(self, request: Request) -> Answer:
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        answer = scripted if scripted is not None else self.handle(request)
        request.status = answer[0]
        if self.record:
            with self.lock:
                self.requests.append(request)
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                if standin.delay_s:
                    time.sleep(standin.delay_s)
                status, payload, headers = standin._respond(request)
                # bytes are sent as they are (a page; its content type in the headers)
                raw = payload if isinstance(payload, bytes) else (
                    b"" if payload is None else json.dumps(payload).encode())
                self.send_response(status)
                if payload is not None and not isinstance(payload, bytes):
                    self.send_header("content-type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_POST = do_GET = do_PUT = do_PATCH = _serve

            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    super().handle()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def json_body(request: Request, error: Callable[[str], Answer]) -> tuple[Any, Answer | None]:
    """The decoded JSON body, or the provider's answer to a body that is not JSON."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None, error("content type must be application/json")
    try:
        return json.loads(request.body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError):
        return None, error("body is not valid UTF-8 JSON")


@dataclass
class Clock:
    """Per-key last-seen times for simple rate limits."""

    last: dict[Any, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def too_soon(self, key: Any, interval: float) -> float:
        """Seconds still to wait (0 when the call may go, which records it)."""
        now = time.monotonic()
        with self.lock:
            wait = self.last.get(key, -1e9) + interval - now
            if wait > 0:
                return wait
            self.last[key] = now
            return 0.0
