"""Operator secrets never reach an API response, a stored row or a log line.

The Bot API's URLs hold the operator's bot token (``/bot<TOKEN>/sendMessage``). A server, or a
proxy in front of it, that answers bytes the HTTP client cannot parse makes aiohttp raise an
error whose text holds that URL; a proxy's own error page may echo the request line back. The
deliveries below go through the real app and its embedded worker to a 127.0.0.1 server that
answers exactly that, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import text

from claude_notify.cloud.server import logsetup
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent, utcnow

BOT_TOKEN = "987654321:AAH-operator_SECRET-token-0123456789abcd"  # noqa: S105 - test value


class Garbage:
    """Answers every connection with ``answer(request_line)`` and closes it."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    head = conn.recv(65536)
                    self.requests.append(head)
                    conn.sendall(self.answer(head.split(b"\r\n", 1)[0]))
                except OSError:
                    continue

    def close(self) -> None:
        self._sock.close()


def _echoing_proxy(request_line: bytes) -> bytes:
    body = json.dumps({"ok": False, "error_code": 502,
                       "description": f"upstream failed for {request_line.decode()}"}).encode()
    return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "not HTTP": lambda _: b"\x00\x01 garbage \xff\r\n\r\n",
    "bad Content-Length": lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n{}",
    "bad chunk": lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "proxy echoing the URL": _echoing_proxy,
}


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The server's own log configuration, writing to a buffer (pytest's handlers restored)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    logsetup.configure(stream=buffer)
    yield buffer
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_the_bot_token_is_in_no_response_row_or_log_line(
    answer: str, settings: Settings, make_user: Callable[..., Account], logged: io.StringIO,
) -> None:
    garbage = Garbage(ANSWERS[answer])
    runtime = Runtime.build(settings.replace(
        telegram_bot_token=BOT_TOKEN, telegram_api_base=garbage.url, max_attempts=2,
        provider_timeout_s=5.0))
    try:
        _deliver_and_check(runtime, make_user, garbage, logged)
    finally:
        runtime.close()
        garbage.close()


def _deliver_and_check(runtime: Runtime, make_user: Callable[..., Account], garbage: Garbage,
                       logged: io.StringIO) -> None:
    with TestClient(create_app(runtime=runtime)) as client:
        user = make_user(plan="pro")
        with runtime.sessions.begin() as session:
            session.add(Channel(id=uuid.uuid4(), user_id=user.user_id, workspace_id=user.user_id,
                                type="telegram",
                                config={"chat_id": 42}, rules={"on": ["finished"]},
                                verified_at=utcnow()))
        event = TaskEvent(type="finished", source="run", task_id="t-1", machine_id="m-1",
                          status="failure", exit_code=2, command="make test")
        sent = client.post("/v1/events", json=event.to_dict(), headers=user.headers)
        assert sent.status_code == 202, sent.text
        [planned] = sent.json()["notifications"]
        url = f"/v1/notifications/{planned['id']}"
        dead = wait_for(lambda: (n := client.get(url, headers=user.headers).json())
                        ["status"] == "dead" and n, timeout=30, what="a dead letter")
        listed = client.get("/v1/notifications", headers=user.headers)
        channels = client.get("/v1/channels", headers=user.headers)
    assert any(BOT_TOKEN.encode() in r for r in garbage.requests)  # it was really sent there
    assert [a["outcome"] for a in dead["attempt_log"]] == ["retry", "permanent"]
    details = [a["detail"] for a in dead["attempt_log"]] + [dead["reason"]]
    assert all(details), details  # still a reason the user can act on
    for response in (json.dumps(dead), listed.text, channels.text):
        assert BOT_TOKEN not in response
        assert BOT_TOKEN.split(":")[1] not in response
    with runtime.engine.connect() as conn:
        for table in ("notifications", "delivery_attempts", "channels", "events"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed names
                assert BOT_TOKEN.split(":")[1] not in repr(tuple(row)), table
    assert BOT_TOKEN.split(":")[1] not in logged.getvalue()


def test_the_log_filter_masks_a_third_party_error_quoting_the_url(
    settings: Settings, logged: io.StringIO,
) -> None:
    """The second line of defence: aiohttp's own error, logged with its traceback, as a
    message argument and in structured fields, reaches the log with the token masked."""
    import aiohttp

    garbage = Garbage(ANSWERS["not HTTP"])
    runtime = Runtime.build(settings.replace(telegram_bot_token=BOT_TOKEN))  # remembers it
    twilio_like = "AC" + "0" * 32

    async def call() -> None:
        async with aiohttp.ClientSession() as http:
            await http.post(f"{garbage.url}/bot{BOT_TOKEN}/sendMessage", json={})

    try:
        with pytest.raises(aiohttp.ClientResponseError) as raised:
            asyncio.run(call())
        assert BOT_TOKEN in str(raised.value)  # what the filter is up against
        log = logging.getLogger("claude_notify.server.test")
        try:
            raise RuntimeError("wrapped") from raised.value
        except RuntimeError:
            log.exception("call failed: %s", raised.value)
        log.warning("headers", extra={"fields": {"authorization": f"Bearer cnt_{twilio_like}",
                                                 "url": f"/bot{BOT_TOKEN}/getMe"}})
        log.warning("sent with Authorization: Basic %s", "QUM6c2VjcmV0")
    finally:
        runtime.close()
        garbage.close()
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    ours = [entry for entry in lines if entry["logger"] == "claude_notify.server.test"]
    assert len(ours) == 3
    assert "Traceback" in ours[0]["exc"] and "ClientResponseError" in ours[0]["exc"]
    text = json.dumps(ours)
    for secret in (BOT_TOKEN.split(":")[1], twilio_like, "QUM6c2VjcmV0"):
        assert secret not in text
    assert "/bot[redacted]/sendMessage" in ours[0]["msg"]
