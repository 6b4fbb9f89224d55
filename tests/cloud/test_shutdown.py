"""SIGTERM to ``claude-notify server`` (the API with its embedded worker), as real processes.

Within ``shutdown_grace_s`` a request in flight is answered and a delivery in flight is sent and
recorded; the process then exits 0, and its successor sends what was accepted meanwhile. Each
notification reaches the receiver once. (The distributed worker's release of cut-off sends is in
``test_distributed``; the agents' reconnect in ``test_relay_e2e``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cloud_kit import HANG, Mailbox, Receiver, wait_for
from relay_kit import Server, api, email
from sqlalchemy import create_engine, select

from claude_notify.cloud.server.db.models import Delivery
from claude_notify.events import TaskEvent

GRACE_S = 20


def finished(i: int) -> dict[str, Any]:
    return TaskEvent(type="finished", source="run", task_id=f"job-{i}", machine_id="m",
                     status="success", exit_code=0, command=f"job {i}").to_dict()


def _refused(url: str) -> bool:
    """Whether the server stopped listening (its shutdown has begun)."""
    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def test_sigterm_answers_the_request_and_records_the_delivery_in_flight(
    tmp_path: Path, smtp_server: Mailbox, receiver: Receiver
) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = Server.make(db, smtp_server, CLAUDE_NOTIFY_SERVER_SHUTDOWN_GRACE_S=str(GRACE_S))
    server.start()
    try:
        token = server.admin("create-user", email(), "--plan", "pro")
        made = api(server, token, "POST", "/v1/channels",
                   json={"type": "webhook", "config": {"url": receiver.url}})
        assert made.status_code == 201, made.text
        receiver.answer(HANG)  # the first delivery hangs until released
        assert api(server, token, "POST", "/v1/events", json=finished(1)).status_code == 202
        receiver.wait(1, timeout=30)

        # A request whose body is still coming when SIGTERM arrives.
        body = httpx.Request("POST", "/", json=finished(2)).content
        sent_half, go = threading.Event(), threading.Event()

        def slowly() -> Iterator[bytes]:
            yield body[:20]
            sent_half.set()
            go.wait(60)
            yield body[20:]

        answers: list[int] = []
        poster = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{server.url}/v1/events", content=slowly(), timeout=60,
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": "application/json"}).status_code))
        poster.start()
        assert sent_half.wait(30)

        assert server.proc is not None
        proc, server.proc = server.proc, None
        stopped_at = time.monotonic()
        proc.terminate()
        wait_for(lambda: _refused(server.url), timeout=30, what="the server to stop listening")
        go.set()
        poster.join(30)
        assert answers == [202]  # answered, not cut off
        assert proc.poll() is None  # still draining the delivery
        receiver.release.set()
        assert proc.wait(timeout=GRACE_S + 30) == 0
        assert time.monotonic() - stopped_at < GRACE_S

        engine = create_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(select(Delivery.status, Delivery.attempts)).all()
        assert sorted(rows) == [("pending", 0), ("sent", 1)]  # the second waits for the next

        server.start()
        assert api(server, token, "POST", "/v1/events", json=finished(3)).status_code == 202
        calls = receiver.wait(3, timeout=30)

        def statuses() -> list[str]:
            with engine.connect() as conn:
                return list(conn.execute(select(Delivery.status)).scalars())

        wait_for(lambda: statuses() == ["sent"] * 3, timeout=30, what="all three sent")
        engine.dispose()
        ids = [c.headers["webhook-id"] for c in calls]
        assert len(set(ids)) == len(ids) == receiver.count() == 3
    finally:
        receiver.release.set()
        server.stop()
