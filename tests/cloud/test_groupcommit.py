"""Group commit: events arriving together share transactions, and one bad job costs no one else."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cloud_kit import Account
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import Delivery, Event, User
from claude_notify.cloud.server.groupcommit import GroupCommit, Memo
from claude_notify.cloud.server.runtime import Runtime


def _event(n: int, task: str) -> dict[str, Any]:
    return {"type": "finished", "source": "run", "task_id": task, "machine_id": "m1",
            "status": "failure" if n % 2 else "success", "exit_code": n % 2,
            "command": f"job {n}", "event_id": str(uuid.uuid4())}


def test_concurrent_events_share_transactions_and_every_one_lands(
    runtime: Runtime, live_server: str, make_user: Callable[..., Account]
) -> None:
    account = make_user(plan="pro")
    with httpx.Client(base_url=live_server, headers=account.headers) as client:
        hook = {"type": "webhook", "config": {"url": "http://127.0.0.1:9/"}}
        assert client.post("/v1/channels", json=hook).status_code == 201
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        if threading.current_thread().name.startswith("group-commit"):  # not the worker's
            commits += 1

    event.listen(runtime.engine, "commit", count)
    # Several events of one task in flight at once: the same row upserted within one batch.
    bodies = [_event(n, f"task-{n % 7}") for n in range(120)]

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server, headers=account.headers) as client:
            return await asyncio.gather(*(client.post("/v1/events", json=b) for b in bodies))

    try:
        answers = asyncio.run(post_all())
    finally:
        event.remove(runtime.engine, "commit", count)
    assert [a.status_code for a in answers] == [202] * len(bodies)
    with runtime.sessions() as session:
        stored = session.scalar(
            select(func.count()).select_from(Event).where(Event.user_id == account.user_id)
        )
        queued = session.scalar(
            select(func.count()).select_from(Delivery)
            .where(Delivery.user_id == account.user_id, Delivery.kind == "event")
        )
    assert stored == len(bodies)
    assert queued == len(bodies)  # one webhook notification per finished event
    assert {a.json()["notifications"][0]["id"] for a in answers} == {
        str(i) for i in _notification_ids(runtime, account)
    }
    # Fewer transactions than requests: the writers took several events at a time.
    assert commits < len(bodies), commits


def _notification_ids(runtime: Runtime, account: Account) -> list[uuid.UUID]:
    with runtime.sessions() as session:
        return list(session.scalars(
            select(Delivery.id).where(Delivery.user_id == account.user_id)
        ))


def test_a_failing_job_rolls_back_alone(runtime: Runtime) -> None:
    writes = GroupCommit(runtime.sessions, writers=1)
    gate = threading.Event()
    emails = [f"gc-{uuid.uuid4().hex[:8]}-{n}@example.com" for n in range(5)]
    doomed = f"gc-doomed-{uuid.uuid4().hex[:8]}@example.com"

    def hold(session: Session, memo: Memo) -> str:
        gate.wait(10)  # keeps the one writer busy until everything else is queued
        return "held"

    def create(email: str) -> Callable[[Session, Memo], str]:
        def job(session: Session, memo: Memo) -> str:
            auth.create_account(session, email)
            session.flush()
            return email

        return job

    def fail(session: Session, memo: Memo) -> str:
        auth.create_account(session, doomed)
        session.flush()
        raise RuntimeError("this job breaks after writing")

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(writes.run(hold))
        await asyncio.sleep(0)  # let the writer pick the gate job up first
        jobs = [create(emails[0]), create(emails[1]), fail, *map(create, emails[2:])]
        rest = [asyncio.ensure_future(writes.run(job)) for job in jobs]
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
    finally:
        writes.close()
    assert results[0] == "held"
    assert results[1:3] == emails[:2] and results[4:] == emails[2:]
    assert isinstance(results[3], RuntimeError)
    with runtime.sessions() as session:
        stored = set(session.scalars(select(User.email).where(User.email.like("gc-%"))))
    assert stored == set(emails)  # every good job committed; the failing one left nothing


@pytest.mark.parametrize("header", [None, "Bearer cnt_not-a-real-token"])
def test_refused_requests_do_not_disturb_their_batch(
    runtime: Runtime, live_server: str, make_user: Callable[..., Account], header: str | None
) -> None:
    account = make_user(plan="pro")
    bad_headers = {"Authorization": header} if header else {}

    async def mixed() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server) as client:
            good = [client.post("/v1/events", json=_event(n, f"t{n}"), headers=account.headers)
                    for n in range(30)]
            bad = [client.post("/v1/events", json=_event(n, "x"), headers=bad_headers)
                   for n in range(10)]
            invalid = [client.post("/v1/events", json={"type": "finished"},
                                   headers=account.headers) for _ in range(5)]
            return await asyncio.gather(*good, *bad, *invalid)

    answers = asyncio.run(mixed())
    assert [a.status_code for a in answers[:30]] == [202] * 30
    assert [a.status_code for a in answers[30:40]] == [401] * 10
    assert [a.status_code for a in answers[40:]] == [422] * 5
    with runtime.sessions() as session:
        stored = session.scalar(
            select(func.count()).select_from(Event).where(Event.user_id == account.user_id)
        )
    assert stored == 30
