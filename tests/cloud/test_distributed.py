"""Distributed delivery: real worker processes on PostgreSQL, woken through Celery on the real
Redis.

Proves what a single process cannot: two workers never send the same delivery, a worker killed
with SIGKILL mid-send loses nothing, and API replicas wake workers through Celery rather than
leaving them to their poll interval — only their own deployment's workers, and without ever
making ingest depend on the broker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cloud_kit import HANG, Account, Receiver, free_port, wait_for
from conftest import require_redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import Delivery
from claude_notify.cloud.server.delivery.celery_wake import CeleryConsumer, queue_name
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WORKER = "import sys; from claude_notify.cloud.server.cli import server; server(sys.argv[1:])"


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def api_runtime(pg_db: str, redis_url: str) -> Iterator[Runtime]:
    """An API replica: no embedded worker, wakes the workers through Redis."""
    settings = Settings(
        database_url=pg_db,
        redis_url=redis_url,
        embedded_worker=False,
        auto_migrate=False,
        webhook_allow_private=True,
    ).validate()
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def start_worker(
    api_runtime: Runtime, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*, poll_s: float = 10.0, lease_s: float = 30.0, grace_s: float = 20.0,
              args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": api_runtime.settings.database_url,
            "REDIS_URL": str(api_runtime.settings.redis_url),
            "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE": "1",
            "CLAUDE_NOTIFY_SERVER_WORKER_POLL_S": str(poll_s),
            "CLAUDE_NOTIFY_SERVER_LEASE_S": str(lease_s),
            "CLAUDE_NOTIFY_SERVER_SHUTDOWN_GRACE_S": str(grace_s),
            "CLAUDE_NOTIFY_SERVER_RETRY_DELAYS_S": "0.05,0.1",
        }
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", WORKER, "worker", *args], env=env,
                                    stderr=out)
        started.append(proc)
        wait_for(lambda: b"delivery worker started" in log.read_bytes(), what="worker start")
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        proc.wait(timeout=20)


@pytest.fixture
def api(api_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=api_runtime)) as client:
        yield client


@pytest.fixture
def pro_with_webhook(api: TestClient, api_runtime: Runtime, receiver: Receiver) -> Account:
    return _pro_with_webhook(api, api_runtime, receiver, "ops@example.com")


def _pro_with_webhook(api: TestClient, runtime: Runtime, receiver: Receiver, email: str) -> Account:
    from claude_notify.cloud.server import auth

    with runtime.sessions.begin() as session:
        user, token = auth.create_user(session, email, plan="pro")
        account = Account(user.email, token.secret, user.id)
    created = api.post(
        "/v1/channels",
        json={"type": "webhook", "config": {"url": receiver.url}},
        headers=account.headers,
    )
    assert created.status_code == 201
    return account


def finished(i: int) -> dict[str, Any]:
    return TaskEvent(
        type="finished",
        source="run",
        task_id=f"job-{i}",
        machine_id="m",
        status="success",
        exit_code=0,
        command=f"job {i}",
    ).to_dict()


def statuses(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        )
        return dict(rows.all())


def test_two_workers_deliver_each_notification_exactly_once(
    api: TestClient,
    api_runtime: Runtime,
    receiver: Receiver,
    pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    start_worker()
    start_worker()
    for i in range(60):
        assert (
            api.post("/v1/events", json=finished(i), headers=pro_with_webhook.headers).status_code
            == 202
        )
    calls = receiver.wait(60, timeout=30)
    wait_for(lambda: statuses(api_runtime) == {"sent": 60}, what="all 60 sent")
    ids = [c.headers["webhook-id"] for c in calls]
    assert len(ids) == len(set(ids)) == receiver.count() == 60


def test_sigterm_gives_a_workers_cut_off_deliveries_back_at_once(
    api: TestClient,
    api_runtime: Runtime,
    receiver: Receiver,
    pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A worker stopped while its sends hang past its grace period exits 0 and releases their
    rows: the next worker sends them at once, not after the (here 300 s) lease, and the cut-off
    attempt does not count against the retries."""
    receiver.answer(HANG, HANG)
    first = start_worker(lease_s=300, grace_s=1)
    for i in range(2):
        posted = api.post("/v1/events", json=finished(i), headers=pro_with_webhook.headers)
        assert posted.status_code == 202
    cut = {c.headers["webhook-id"] for c in receiver.wait(2, timeout=30)}
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert time.monotonic() - stopped_at < 15  # 1 s of grace, plus the process's own exit
    assert statuses(api_runtime) == {"pending": 2}
    start_worker(lease_s=300)
    again = receiver.wait(4, timeout=30)[2:]
    wait_for(lambda: statuses(api_runtime) == {"sent": 2}, timeout=30, what="both sent")
    assert {c.headers["webhook-id"] for c in again} == cut
    assert receiver.count() == 4  # each sent once more, never a third time
    with api_runtime.sessions() as session:
        assert set(session.scalars(select(Delivery.attempts))) == {1}


def test_a_worker_serves_its_own_delivery_metrics(
    api: TestClient,
    receiver: Receiver,
    pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """With distributed workers the outcomes are counted in the workers: each is scraped (and
    probed for liveness) on its --metrics-port, and the API's /metrics does not have them."""
    port = free_port()
    start_worker(args=("--metrics-port", str(port)))
    api.post("/v1/events", json=finished(1), headers=pro_with_webhook.headers)
    receiver.wait(1, timeout=30)
    sent = 'claude_notify_notifications_total{channel="webhook",outcome="sent"} 1.0'

    def scraped() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.TransportError:
            return None
        return text if sent in text else None

    text = wait_for(scraped, timeout=30, what="the worker's metrics to count the delivery")
    assert 'claude_notify_delivery_latency_seconds_count{channel="webhook"} 1.0' in text
    assert sent not in api.get("/metrics").text


def test_celery_wakes_workers_long_before_their_poll(
    api: TestClient,
    receiver: Receiver,
    pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    start_worker(poll_s=30.0)
    started = time.monotonic()
    api.post("/v1/events", json=finished(1), headers=pro_with_webhook.headers)
    receiver.wait(1, timeout=5)
    assert time.monotonic() - started < 5  # a poll would have taken up to 30 s


def test_a_worker_killed_mid_delivery_loses_nothing(
    api: TestClient,
    api_runtime: Runtime,
    receiver: Receiver,
    pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    victim = start_worker(lease_s=2.0, poll_s=0.2)
    receiver.answer(HANG)  # the first send hangs: the worker is mid-delivery when killed
    sent = api.post("/v1/events", json=finished(1), headers=pro_with_webhook.headers).json()
    receiver.wait(1)
    victim.kill()
    victim.wait(timeout=10)
    assert statuses(api_runtime) == {"sending": 1}
    start_worker(lease_s=2.0, poll_s=0.2)
    calls = receiver.wait(2, timeout=20)
    wait_for(lambda: statuses(api_runtime) == {"sent": 1}, what="the re-send to settle")
    assert calls[0].headers["webhook-id"] == calls[1].headers["webhook-id"]
    got = api.get(
        f"/v1/notifications/{sent['notifications'][0]['id']}", headers=pro_with_webhook.headers
    ).json()
    assert [a["outcome"] for a in got["attempt_log"]] == ["lost", "ok"]


def test_a_broker_that_is_away_costs_a_poll_never_an_event(
    pg_db: str, api_runtime: Runtime, receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """An API replica whose Redis is away: events are still taken at once, and a worker (woken
    by nothing) delivers them on its poll."""
    away = api_runtime.settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    runtime = Runtime.build(away)
    try:
        with TestClient(create_app(runtime=runtime)) as api:
            account = _pro_with_webhook(api, runtime, receiver, "away@example.com")
            started = time.monotonic()
            answer = api.post("/v1/events", json=finished(7), headers=account.headers)
            assert answer.status_code == 202
            assert time.monotonic() - started < 1  # the publish happens off the request's path
            start_worker(poll_s=0.3)
            receiver.wait(1, timeout=20)
    finally:
        runtime.close()


def test_wake_ups_go_to_this_deployments_own_queue(
    api: TestClient, api_runtime: Runtime, receiver: Receiver, pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]], redis_url: str,
) -> None:
    """Deployments (and test databases) sharing one Redis never take each other's wake-ups, and
    a wake-up published while no worker runs is taken by the first to start — not left to its
    poll."""
    broker = redis.Redis.from_url(redis_url)
    ours = queue_name(api_runtime.settings.database_url)
    theirs = queue_name(api_runtime.settings.database_url + "-elsewhere")
    broker.delete(ours, theirs)
    api.post("/v1/events", json=finished(100), headers=pro_with_webhook.headers)
    wait_for(lambda: broker.llen(ours) >= 1, what="a wake-up queued for this deployment")
    assert broker.llen(theirs) == 0
    started = time.monotonic()
    start_worker(poll_s=30.0)
    receiver.wait(1, timeout=10)
    assert time.monotonic() - started < 8  # the queued wake-up, not the 30 s poll
    wait_for(lambda: broker.llen(ours) == 0, what="the wake-up to be taken")


def test_a_burst_is_delivered_on_wake_ups_not_on_the_poll(
    api: TestClient, api_runtime: Runtime, receiver: Receiver, pro_with_webhook: Account,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Hundreds of events in a row: the wake-ups are folded together rather than queued one per
    event (which left the worker consuming stale wake-ups while rows waited for its poll), and a
    send the receiver fumbles is retried when its backoff ends, not at the next poll."""
    start_worker(poll_s=30.0)
    started = time.monotonic()
    for i in range(300):
        api.post("/v1/events", json=finished(1000 + i), headers=pro_with_webhook.headers)
    receiver.wait(300, timeout=25)
    assert time.monotonic() - started < 25  # a poll would have left some for 30 s
    wait_for(lambda: statuses(api_runtime) == {"sent": 300}, what="all 300 recorded as sent")


# Each consumer here makes an app of its own in this one process; Celery registers the wake task
# once (see make_app), which is fine for consumers that do nothing on a wake-up.
_ONE_TASK_PER_PROCESS = pytest.mark.filterwarnings(
    "ignore::celery.exceptions.DuplicateTaskNameWarning")


@_ONE_TASK_PER_PROCESS
def test_a_consumer_stopped_while_it_comes_up_stops_cleanly(
    redis_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker SIGTERMed right after its start stopped its Celery consumer mid-connect or
    mid-declare, and Celery logged "Unrecoverable error" with a traceback (seen in CI). The stops
    are spread over the time a consumer takes to come up on this machine, where that window is."""
    caplog.set_level(logging.ERROR)
    came_up = float("inf")
    for warm_up in range(2):  # the first also pays for Celery's imports
        warm = CeleryConsumer(redis_url, f"postgresql://stop-early/warm{warm_up}", lambda: None)
        began = time.monotonic()
        warm.start()
        assert warm._ready.wait(timeout=60), "a consumer did not come up in 60 s"
        came_up = min(came_up, time.monotonic() - began)
        warm.stop()
    for step in range(12):  # a stop after it came up waits out a ~1 s poll: keep those few
        delay = came_up * step / 10
        consumer = CeleryConsumer(redis_url, f"postgresql://stop-early/{step}", lambda: None)
        consumer.start()
        time.sleep(delay)
        consumer.stop()
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, f"stopped {delay:.4f} s after start: {errors}"


@_ONE_TASK_PER_PROCESS
def test_a_consumer_whose_broker_is_away_stops_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis away the consumer sits in Celery's connect-retry loop; a SIGTERMed worker
    must not wait out that loop (it used to take the full 10 s join)."""
    caplog.set_level(logging.ERROR)
    consumer = CeleryConsumer(f"redis://127.0.0.1:{free_port()}/0", "postgresql://away/x",
                              lambda: None)
    consumer.start()
    wait_for(lambda: consumer._thread is not None and consumer._thread.is_alive(),
             timeout=30, what="the consumer thread")
    consumer.stop()
    assert consumer._thread is not None
    assert not consumer._thread.is_alive(), "the consumer thread outlived stop()"
    assert not [r for r in caplog.records if "Unrecoverable" in r.getMessage()]
