"""Faults: the database goes away for a while. Requests fail cleanly, nothing is lost or doubled.

The outage is a TCP proxy between the server and the shared PostgreSQL that the test cuts, so
the shared server itself is never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from cloud_kit import Account, CuttableProxy, Receiver, wait_for
from fastapi.testclient import TestClient

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(pg_db: str) -> Iterator[CuttableProxy]:
    parts = urlsplit(pg_db)
    p = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.close()


@pytest.fixture
def proxied(pg_db: str, proxy: CuttableProxy) -> Iterator[Runtime]:
    parts = urlsplit(pg_db)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    settings = Settings(
        database_url=url,
        auto_migrate=False,
        webhook_allow_private=True,
        retry_delays_s=(0.05, 0.1),
        worker_poll_s=0.1,
    )
    runtime = Runtime.build(settings.validate())
    yield runtime
    runtime.close()


def finished(i: int) -> dict[str, object]:
    return TaskEvent(
        type="finished", source="run", task_id=f"job-{i}", machine_id="m", status="success"
    ).to_dict()


def test_a_database_outage_is_a_clean_503_and_loses_nothing(
    proxied: Runtime, proxy: CuttableProxy, receiver: Receiver
) -> None:
    with proxied.sessions.begin() as session:
        user, token = auth.create_user(session, "ops@example.com", plan="pro")
        account = Account(user.email, token.secret, user.id)
    with TestClient(create_app(runtime=proxied)) as client:
        client.post(
            "/v1/channels",
            json={"type": "webhook", "config": {"url": receiver.url}},
            headers=account.headers,
        )
        for i in range(5):
            assert (
                client.post("/v1/events", json=finished(i), headers=account.headers).status_code
                == 202
            )
        receiver.wait(5)

        proxy.cut()
        refused = client.post("/v1/events", json=finished(99), headers=account.headers)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "unavailable"
        # Out of the load balancer, yet alive: a restart would not bring the database back.
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200

        proxy.restore()
        for i in range(5, 10):
            response = wait_for(
                lambda i=i: (
                    (
                        r := client.post("/v1/events", json=finished(i), headers=account.headers)
                    ).status_code
                    == 202
                    and r
                ),
                what="the API to reconnect",
            )
            assert response.json()["duplicate"] is False
        # The refused event was never stored: the client's retry is a first delivery.
        retried = client.post("/v1/events", json=finished(99), headers=account.headers)
        assert retried.json()["duplicate"] is False
        calls = receiver.wait(11, timeout=20)
    ids = [c.headers["webhook-id"] for c in calls]
    assert len(ids) == len(set(ids)) == 11


def test_a_429_storm_loses_nothing_and_sends_nothing_twice(
    runtime: Runtime, receiver: Receiver
) -> None:
    stormy = Runtime.build(runtime.settings.replace(max_attempts=30, worker_concurrency=8))
    with stormy.sessions.begin() as session:
        user, token = auth.create_user(session, "storm@example.com", plan="pro")
        account = Account(user.email, token.secret, user.id)
    receiver.answer(*[(429, {"Retry-After": "0"})] * 60)
    try:
        with TestClient(create_app(runtime=stormy)) as client:
            client.post(
                "/v1/channels",
                json={"type": "webhook", "config": {"url": receiver.url}},
                headers=account.headers,
            )
            for i in range(20):
                client.post("/v1/events", json=finished(i), headers=account.headers)
            calls = receiver.wait(80, timeout=30)
            sent = wait_for(
                lambda: (
                    (
                        page := client.get(
                            "/v1/notifications",
                            params={"status": "sent", "limit": 50},
                            headers=account.headers,
                        ).json()["items"]
                    )
                    and len(page) == 20
                    and page
                ),
                what="all 20 notifications sent",
            )
    finally:
        stormy.close()
    assert len(sent) == 20
    assert len(calls) == receiver.count() == 80  # 60 refused, then one accepted per notification
    accepted = [c.headers["webhook-id"] for c in calls[60:]]
    assert len(set(accepted)) == 20
