"""Spec §9 quota: free is e-mail only and three a day, pro is unlimited but for SMS fair use."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any

import httpx
from cloud_kit import Account, Mailbox, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from claude_notify.cloud.server import auth, quota
from claude_notify.cloud.server.channels.base import SendResult
from claude_notify.cloud.server.db.models import Channel, Delivery, UsageCounter
from claude_notify.cloud.server.delivery import engine
from claude_notify.cloud.server.fanout import Acting
from claude_notify.cloud.server.ingest import record_event
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import TaskEvent, utcnow


def finished(task_id: str) -> dict[str, Any]:
    return TaskEvent(
        type="finished",
        source="run",
        task_id=task_id,
        machine_id="m",
        status="success",
        exit_code=0,
        command="make",
    ).to_dict()


def statuses(client: TestClient, account: Account) -> list[tuple[str, str, str | None]]:
    items = client.get("/v1/notifications", params={"limit": 200}, headers=account.headers)
    return sorted(
        (n["channel_type"], n["status"], n["reason"])
        for n in items.json()["items"]
        if n["kind"] == "event"
    )


def test_free_plan_is_email_only_and_three_a_day(
    client: TestClient,
    smtp_server: Mailbox,
    make_user: Callable[..., Account],
    verified_email: Callable[..., str],
) -> None:
    user = make_user(plan="pro")
    verified_email(client, user, "free@example.com")
    client.post(
        "/v1/channels",
        json={"type": "webhook", "config": {"url": "https://hooks.example.com/x"}},
        headers=user.headers,
    )
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions.begin() as session:
        auth.set_plan(session, user.email, "free")  # free refuses to add one; kept, it refuses
    for i in range(5):
        assert (
            client.post("/v1/events", json=finished(f"t{i}"), headers=user.headers).status_code
            == 202
        )
    got = statuses(client, user)
    day = datetime.now(timezone.utc).date().isoformat()
    over = ("email", "rejected", f"daily notification quota of 3 reached for {day}")
    no_webhooks = ("webhook", "rejected", "the free plan sends e-mail only; webhook needs pro")
    assert got.count(over) == 2
    assert got.count(no_webhooks) == 5
    assert len([g for g in got if g[0] == "email" and g[2] is None]) == 3
    smtp_server.wait(4)  # the confirmation and three notifications
    usage = client.get("/v1/usage", headers=user.headers).json()
    assert (usage["notifications_sent"], usage["notifications_limit"]) == (3, 3)
    assert usage["channels_allowed"] == ["email"]


def test_pro_plan_is_unlimited(
    client: TestClient, make_user: Callable[..., Account], verified_email: Callable[..., str]
) -> None:
    user = make_user(plan="pro")
    verified_email(client, user, "pro@example.com")
    for i in range(6):
        client.post("/v1/events", json=finished(f"t{i}"), headers=user.headers)
    assert all(status != "rejected" for _, status, _ in statuses(client, user))
    assert client.get("/v1/usage", headers=user.headers).json()["notifications_sent"] == 6


def test_pro_sms_fair_use_is_thirty_a_day(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user(plan="pro")
    day = date(2025, 7, 1)
    with runtime.sessions.begin() as session:
        results = [
            quota.take(
                session,
                workspace_id=account.user_id,  # their own workspace: it has their id
                plan="pro",
                channel_type="sms",
                day=day,
                settings=runtime.settings,
            )
            for _ in range(31)
        ]
        assert (
            quota.take(
                session,
                workspace_id=account.user_id,  # their own workspace: it has their id
                plan="pro",
                channel_type="email",
                day=day,
                settings=runtime.settings,
            )
            is None
        )
    assert results[:30] == [None] * 30
    assert results[30] == "SMS fair-use limit of 30 reached for 2025-07-01"


def test_the_quota_day_follows_the_users_time_zone() -> None:
    late_utc = datetime(2025, 7, 1, 23, 30, tzinfo=timezone.utc)
    assert quota.quota_day(late_utc, "UTC") == date(2025, 7, 1)
    assert quota.quota_day(late_utc, "Asia/Shanghai") == date(2025, 7, 2)
    assert quota.quota_day(late_utc, "America/Los_Angeles") == date(2025, 7, 1)
    assert quota.quota_day(late_utc, "Not/AZone") == date(2025, 7, 1)


def test_a_hundred_concurrent_finishes_of_a_free_user_send_exactly_three_emails(
    live_server: str,
    runtime: Runtime,
    smtp_server: Mailbox,
    make_user: Callable[..., Account],
    verified_email: Callable[..., str],
) -> None:
    user = make_user()
    with httpx.Client(base_url=live_server, headers=user.headers, timeout=60) as http:
        verified_email(http, user, "burst@example.com")
        start = threading.Barrier(100)

        def post(i: int) -> int:
            start.wait()
            return http.post("/v1/events", json=finished(f"burst-{i}")).status_code

        with ThreadPoolExecutor(max_workers=100) as pool:
            codes = list(pool.map(post, range(100)))
    assert codes == [202] * 100

    def settled() -> bool:
        with runtime.sessions() as session:
            busy = session.scalar(
                select(func.count()).where(Delivery.status.in_(("pending", "sending")))
            )
        return busy == 0

    wait_for(settled, timeout=30, what="all deliveries to settle")
    with runtime.sessions() as session:
        counts = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.kind == "event")
                .group_by(Delivery.status)
            ).all()
        )
    assert counts == {"sent": 3, "rejected": 97}
    assert smtp_server.count() == 1 + 3  # the confirmation, then exactly three notifications


def test_the_user_sets_the_time_zone_of_the_quota_day(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    assert client.get("/v1/account", headers=user.headers).json()["timezone"] == "UTC"
    bad = client.patch("/v1/account", json={"timezone": "Mars/Olympus"}, headers=user.headers)
    assert bad.status_code == 422
    done = client.patch("/v1/account", json={"timezone": "Asia/Shanghai"}, headers=user.headers)
    assert done.json()["timezone"] == "Asia/Shanghai"
    usage = client.get("/v1/usage", headers=user.headers).json()
    assert usage["timezone"] == "Asia/Shanghai"
    assert usage["day"] == quota.quota_day(datetime.now(timezone.utc), "Asia/Shanghai").isoformat()


def test_a_dead_letter_gives_its_slot_back(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    """The quota counts notifications sent: an e-mail the provider refused for good is not one."""
    account = make_user()  # free: three e-mails a day
    with runtime.sessions.begin() as session:
        now = utcnow()
        session.add(Channel(id=uuid.uuid4(), user_id=account.user_id,
                            workspace_id=account.user_id, type="email", name="",
                            config={"address": "bounce@example.com"}, rules={"on": ["finished"]},
                            enabled=True, verified_at=now, created_at=now, updated_at=now))

    def ingest(n: int) -> str:
        with runtime.sessions.begin() as session:
            user = Acting(user_id=account.user_id, workspace_id=account.user_id, plan="free",
                          timezone="UTC")  # the account in its own workspace
            done = record_event(session, user=user, event=TaskEvent.from_dict(finished(f"d{n}")),
                                now=utcnow(), settings=runtime.settings)
        return done.notifications[0].status

    def used() -> int:
        with runtime.sessions() as session:
            return sum(session.scalars(select(UsageCounter.count).where(
                UsageCounter.workspace_id == account.user_id)))

    assert [ingest(n) for n in range(3)] == ["pending"] * 3
    assert used() == 3
    claimed, prepared = engine.claim_and_prepare(runtime.sessions, limit=10, lease_s=30,
                                                 reply_token_ttl_s=60)
    assert claimed == 3 and len(prepared) == 3
    refused = SendResult(ok=False, detail="550 mailbox unavailable")  # permanent
    outcomes = [(prepared[0], refused, 5)] + [(p, SendResult(ok=True), 5) for p in prepared[1:]]
    statuses = engine.settle_many(runtime.sessions, outcomes, settings=runtime.settings,
                                  rng=random.Random(1))
    assert statuses == ["dead", "sent", "sent"]
    assert used() == 2  # two were sent; the dead one gave its slot back
    with runtime.sessions() as session:
        day = quota.quota_day(utcnow(), "UTC")
        counted = quota.usage(session, workspace_id=account.user_id, day=day, tz_name="UTC")
    assert counted["all"] == 2
    assert ingest(3) == "pending"  # the freed slot is usable
    assert ingest(4) == "rejected"
