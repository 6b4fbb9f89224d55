"""A stand-in for the Anthropic Messages API, so the real Claude Code CLI runs offline in tests.

Claude Code talks to ``$ANTHROPIC_BASE_URL``. This server answers what a plain ``claude -p`` turn
needs, as the API documents it: ``POST /v1/messages`` with ``"stream": true`` gets the server-sent
events ``message_start``, ``content_block_start``, ``content_block_delta``…, ``content_block_stop``,
``message_delta`` (``stop_reason: end_turn``) and ``message_stop``; without ``stream`` the plain
message object; ``/v1/messages/count_tokens`` a token count; any GET an empty list page; any other
POST an empty object. Every request is recorded, so a test can see what Claude Code sent.

A reply may also be a :class:`ToolCall`: the assistant then asks to use a tool (a ``tool_use``
block, ``stop_reason: tool_use``), as the model would, so a test can see whether Claude Code
runs it, asks for permission or refuses; the ``tool_result`` comes back in the next request.

It listens on 127.0.0.1 on a free port, in a daemon thread; use it as a context manager.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ToolCall:
    """An answer that asks to use a tool, e.g. ``ToolCall("Bash", {"command": "touch x"})``."""

    name: str
    input: dict[str, Any]


Reply = Callable[[dict[str, Any]], str | ToolCall]
"""The assistant's text (or tool call) for a request body (``messages``, ``model``…)."""


@dataclass
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    """Without the query string (Claude Code adds ``?beta=true``)."""
    headers: dict[str, str]
    body: Any = None
    """Parsed JSON, or ``None`` for an empty or non-JSON body."""


@dataclass
class MessagesStandIn:
    """The server. ``reply`` is a fixed text or a function of the request body."""

    reply: str | ToolCall | Reply = "Hi from the stand-in."
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _ids: Any = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``ANTHROPIC_BASE_URL``."""
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def messages(self) -> list[dict[str, Any]]:
        """The bodies of every ``POST /v1/messages`` so far."""
        with self._lock:
            return [r.body for r in self.requests
                    if r.method == "POST" and r.path == "/v1/messages" and isinstance(r.body, dict)]

    def start(self) -> MessagesStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MessagesStandIn:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- answers ---------------------------------------------------------------------------------

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer_for(self, body: dict[str, Any]) -> str | ToolCall:
        return self.reply(body) if callable(self.reply) else self.reply

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        """The complete message object a non-streaming request gets."""
        answer = self._answer_for(body)
        block: dict[str, Any]
        if isinstance(answer, ToolCall):
            block = {"type": "tool_use", "id": f"toolu_standin_{next(self._ids):04d}",
                     "name": answer.name, "input": answer.input}
            stop, size = "tool_use", _words(json.dumps(answer.input))
        else:
            block, stop, size = {"type": "text", "text": answer}, "end_turn", _words(answer)
        return {
            "id": f"msg_standin_{next(self._ids):04d}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude-standin"), "content": [block],
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": _count_tokens(body), "output_tokens": size},
        }

    def events(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The documented event sequence of a streamed message, the text (or the tool call's
        input JSON) in a few deltas."""
        full = self.message(body)
        block = full["content"][0]
        start = {**full, "content": [], "stop_reason": None,
                 "usage": {**full["usage"], "output_tokens": 1}}
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            text, delta_type, key = json.dumps(block["input"]), "input_json_delta", "partial_json"
        else:
            opening, text, delta_type, key = {"type": "text", "text": ""}, block["text"], \
                "text_delta", "text"
        chunks = [text[i:i + 16] for i in range(0, len(text), 16)] or [""]
        return [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": opening}),
            ("ping", {"type": "ping"}),
            *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": delta_type, key: chunk}})
              for chunk in chunks),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": full["stop_reason"],
                                         "stop_sequence": None},
                               "usage": {"output_tokens": full["usage"]["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _count_tokens(body: dict[str, Any]) -> int:
    """A rough, stable count: four characters a token, as the docs' rule of thumb."""
    return max(1, len(json.dumps(body.get("messages", []))) // 4)


class _Handler(BaseHTTPRequestHandler):
    standin: MessagesStandIn
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API; every answer has a length

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        self.standin._record(Recorded("POST", path, dict(self.headers), body))
        payload = body if isinstance(body, dict) else {}
        if path == "/v1/messages/count_tokens":
            self._json({"input_tokens": _count_tokens(payload)})
        elif path == "/v1/messages" and payload.get("stream"):
            self._sse(self.standin.events(payload))
        elif path == "/v1/messages":
            self._json(self.standin.message(payload))
        else:
            self._json({})

    def do_GET(self) -> None:
        self.standin._record(Recorded("GET", urlsplit(self.path).path, dict(self.headers)))
        self._json({"data": [], "has_more": False, "first_id": None, "last_id": None})

    def do_HEAD(self) -> None:
        self.standin._record(Recorded("HEAD", urlsplit(self.path).path, dict(self.headers)))
        self._send(b"", "application/json")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _json(self, value: Any) -> None:
        self._send(json.dumps(value).encode(), "application/json")

    def _sse(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        data = "".join(f"event: {name}\ndata: {json.dumps(obj)}\n\n" for name, obj in events)
        self._send(data.encode(), "text/event-stream; charset=utf-8")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_standin")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""
