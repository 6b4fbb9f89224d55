"""Issue #19, what a team shares when its members' machines report: the workspace's channels
(a team Feishu group gets everyone's events) but never a member's personal ones, and one quota
(free: three e-mails a day across all members' machines, even when they all finish at once),
kept apart from each member's own workspace. And the migration that made every account a
workspace (0019): nothing lost on the way up, and down and up again works.

Through the real app, worker and database (SQLite and PostgreSQL), the Feishu stand-in, a real
webhook receiver and a real SMTP server; the burst goes through a real uvicorn."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from alembic import command
from cloud_kit import Account, Mailbox, Receiver, mail_text, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import Date, column, func, insert, select, table
from standins.feishu import FeishuStandIn
from standins.kit import event, feishu, provider_settings
from test_teams_relay import join

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.migrate import alembic_config, migrate
from claude_notify.cloud.server.db.models import Delivery, Role
from claude_notify.cloud.server.db.types import JSONType, UTCDateTime
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["feishu"]


@pytest.fixture
def settings(settings: Settings, feishu: FeishuStandIn) -> Settings:
    return settings.replace(**provider_settings(feishu=feishu.base_url))


def _runtime(client: TestClient | Any) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


def _settled(runtime: Runtime) -> bool:
    with runtime.sessions() as session:
        busy = session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.status.in_(("pending", "sending"))))
    return busy == 0


def _report(client: TestClient | httpx.Client, who: Account, task: str, *,
            machine: str) -> dict[str, Any]:
    body = event(task_id=task, machine_id=machine, command=f"make {task}")
    body.pop("event_id")
    sent = client.post("/v1/events", json=body, headers=who.headers)
    assert sent.status_code == 202, sent.text
    answer: dict[str, Any] = sent.json()
    return answer


# --------------------------------------------------------------------------- shared, personal


def _channel(client: TestClient, who: Account, kind: str, config: dict[str, Any],
             **fields: Any) -> dict[str, Any]:
    made = client.post("/v1/channels", json={"type": kind, "config": config, **fields},
                       headers=who.headers)
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


def test_a_shared_feishu_group_gets_everyones_events_a_personal_channel_only_its_owners(
    client: TestClient, make_user: Callable[..., Account], feishu: FeishuStandIn,
    receiver: Receiver,
) -> None:
    owner = make_user(plan="pro")
    runtime = _runtime(client)
    admin, member = join(runtime, owner, Role.ADMIN), join(runtime, owner, Role.MEMBER)
    group = _channel(client, admin, "feishu", {"webhook_url": feishu.url()})
    assert group["personal"] is False  # an admin's channel is the workspace's by default
    mine = _channel(client, member, "webhook", {"url": receiver.url + "?member"})
    theirs = _channel(client, admin, "webhook", {"url": receiver.url + "?admin"},
                      personal=True)
    assert (mine["personal"], theirs["personal"]) == (True, True)

    _report(client, member, "m-build", machine="machine-of-m")
    _report(client, admin, "a-build", machine="machine-of-a")
    _report(client, member, "m-test", machine="machine-of-m")
    wait_for(lambda: len(feishu.accepted()) >= 3 and receiver.count() >= 3,
             what="the Feishu group and the webhooks")
    wait_for(lambda: _settled(runtime), what="all deliveries to settle")

    shown = sorted(r.displayed["text"].splitlines()[0] for r in feishu.accepted())
    assert len(shown) == 3 and all(what in " ".join(shown)
                                   for what in ("make m-build", "make a-build", "make m-test"))
    got: dict[str, set[str]] = {}
    with runtime.sessions() as session:
        for call in receiver.received:
            delivery = session.get(Delivery, uuid.UUID(call.headers["webhook-id"][4:]))
            assert delivery is not None
            got.setdefault(str(delivery.channel_id), set()).add(
                json.loads(call.body)["data"]["task_id"])
    assert got == {mine["id"]: {"m-build", "m-test"}, theirs["id"]: {"a-build"}}
    assert receiver.count() == 3 and len(feishu.accepted()) == 3  # nothing twice

    # The member sees the workspace's group and their own channel, never the admin's own one.
    listed = client.get("/v1/channels", headers=member.headers).json()
    ids = {c["id"] for c in (listed["items"] if isinstance(listed, dict) else listed)}
    assert ids == {group["id"], mine["id"]}
    assert client.get(f"/v1/channels/{theirs['id']}", headers=member.headers).status_code == 404
    for how in ("patch", "delete"):
        poked = client.request(how, f"/v1/channels/{theirs['id']}", headers=member.headers,
                               json={"name": "mine now"} if how == "patch" else None)
        assert poked.status_code == 404, poked.text
    # ... and may not add, change or delete what the workspace shares.
    shared = client.post("/v1/channels", headers=member.headers, json={
        "type": "webhook", "config": {"url": receiver.url}, "personal": False})
    assert shared.status_code == 403, shared.text
    assert shared.json()["error"]["code"] == "role_refused"
    renamed = client.patch(f"/v1/channels/{group['id']}", json={"name": "hijacked"},
                           headers=member.headers)
    assert renamed.status_code == 403, renamed.text
    repointed = client.patch(f"/v1/channels/{group['id']}",
                             json={"config": {"webhook_url": feishu.url("hook-2")}},
                             headers=member.headers)
    assert repointed.status_code == 403, repointed.text
    assert client.delete(f"/v1/channels/{group['id']}",
                         headers=member.headers).status_code == 403
    kept = client.get(f"/v1/channels/{group['id']}", headers=admin.headers).json()
    assert (kept["name"], kept["config"]["webhook_url"]) == (group["name"], feishu.url())

    # Nor do the member's deliveries show where the admin's own events went.
    seen = client.get("/v1/notifications", params={"limit": 200}, headers=member.headers).json()
    channels = {n["channel_id"] for n in seen["items"]}
    assert theirs["id"] not in channels and {group["id"], mine["id"]} <= channels


# --------------------------------------------------------------------------- one quota


def test_a_free_team_sends_three_emails_a_day_across_members_even_all_at_once(
    live_server: str, runtime: Runtime, smtp_server: Mailbox,
    make_user: Callable[..., Account], verified_email: Callable[..., str],
) -> None:
    owner = make_user(plan="pro")  # a team is made on Pro, then goes back to free
    first, second = join(runtime, owner, Role.MEMBER), join(runtime, owner, Role.MEMBER)
    with httpx.Client(base_url=live_server, timeout=60) as http:
        wait_for(lambda: _settled(runtime), what="the invites to be sent")  # mails between
        for who in (first, second):
            verified_email(http, who, who.email)
        with runtime.sessions.begin() as session:
            assert auth.set_plan(session, owner.email, "free").id == owner.user_id
        wait_for(lambda: _settled(runtime), what="the confirmations to be sent")
        before = smtp_server.count()
        start = threading.Barrier(20)

        def post(i: int) -> int:
            who = (first, second)[i % 2]
            body = event(task_id=f"burst-{i}", machine_id=f"machine-{i % 2}")
            body.pop("event_id")
            start.wait()
            return http.post("/v1/events", json=body, headers=who.headers).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(pool.map(post, range(20)))
        assert codes == [202] * 20
        wait_for(lambda: _settled(runtime), what="all deliveries to settle")

        day = datetime.now(timezone.utc).date().isoformat()
        with runtime.sessions() as session:
            rows = session.execute(select(Delivery.user_id, Delivery.status, Delivery.reason)
                                   .where(Delivery.kind == "event")).all()
        assert len(rows) == 20
        assert sorted(status for _, status, _ in rows) == ["rejected"] * 17 + ["sent"] * 3
        assert {reason for _, status, reason in rows if status == "rejected"} == {
            f"daily notification quota of 3 reached for {day}"}
        assert {user for user, _, _ in rows} == {first.user_id, second.user_id}
        assert smtp_server.count() - before == 3  # exactly three mails left the server
        sent_to = [m.rcpt_tos for m in smtp_server.messages[before:]]
        assert all(to in ([first.email], [second.email]) for to in sent_to)
        for who in (first, second):
            usage = http.get("/v1/usage", headers=who.headers).json()
            assert (usage["notifications_sent"], usage["notifications_limit"]) == (3, 3)

        # A member's own workspace keeps its own three: the team's are used up, theirs are not.
        own = _own_token(runtime, first)
        assert http.get("/v1/usage", headers=own.headers).json()["notifications_sent"] == 0
        verified_email(http, own, f"home-{first.email}")
        before = smtp_server.count()
        home = _report(http, own, "at-home", machine="machine-0")
        [planned] = home["notifications"]
        assert (planned["status"], planned["reason"]) == ("pending", None)
        smtp_server.wait(before + 1)
        assert "make at-home" in mail_text(smtp_server.messages[before])
        assert http.get("/v1/usage", headers=own.headers).json()["notifications_sent"] == 1
        team = http.get("/v1/usage", headers=second.headers).json()
        assert team["notifications_sent"] == 3


def _own_token(runtime: Runtime, who: Account) -> Account:
    """A token of ``who``'s acting in their own workspace."""
    from claude_notify.cloud.server.db.models import User

    with runtime.sessions.begin() as session:
        user = session.get(User, who.user_id)
        assert user is not None
        token = auth.issue_token(session, user, workspace_id=who.user_id)
        return Account(who.email, token.secret, who.user_id)


# --------------------------------------------------------------------------- migration 0019

_CHILDREN = ("api_tokens", "relay_agents", "tasks", "events", "task_logs", "notifications",
             "delivery_attempts", "relay_reply_tokens", "channels", "web_sessions",
             "relay_commands", "billing_changes", "billing_accounts")
"""Tables whose rows 0019 must keep: the ones it changes (SQLite recreates them) and their
children, which a recreated parent's drop would take with it were foreign keys on."""


def _t(name: str, *columns: Any) -> Any:
    return table(name, *(c if not isinstance(c, str) else column(c) for c in columns))


def _uuid(name: str) -> Any:
    from sqlalchemy import Uuid

    return column(name, Uuid)


def _when(name: str) -> Any:
    return column(name, UTCDateTime)


def _json(name: str) -> Any:
    return column(name, JSONType)


def _seed_0018(runtime: Runtime, now: datetime) -> dict[str, uuid.UUID]:
    """Two accounts as a 0018 server kept them: Pro with a Stripe customer, and free."""
    ids = {name: uuid.uuid4() for name in (
        "pro", "free", "pro_token", "free_token", "agent_token", "pro_task", "free_task",
        "event", "channel", "free_channel", "notification", "attempt", "reply", "pro_web",
        "free_web", "command", "change")}
    day = now.date()
    rows: list[tuple[Any, list[dict[str, Any]]]] = [
        (_t("users", _uuid("id"), "email", "plan", "timezone", _when("created_at")), [
            {"id": ids["pro"], "email": "pro@example.com", "plan": "pro",
             "timezone": "Asia/Shanghai", "created_at": now},
            {"id": ids["free"], "email": "free@example.com", "plan": "free", "timezone": "UTC",
             "created_at": now}]),
        (_t("api_tokens", _uuid("id"), _uuid("user_id"), "name", "token_hash", "prefix",
            "scopes", _when("created_at")), [
            {"id": ids[f"{who}_token"], "user_id": ids[who], "name": "account",
             "token_hash": uuid.uuid4().hex * 2, "prefix": "cnt_abcdefgh",
             "scopes": "events:write tasks:read", "created_at": now} for who in ("pro", "free")
        ] + [{"id": ids["agent_token"], "user_id": ids["pro"], "name": "agent",
              "token_hash": uuid.uuid4().hex * 2, "prefix": "cnt_agent000", "scopes": "relay",
              "created_at": now}]),
        (_t("relay_agents", _uuid("token_id"), _uuid("user_id"), "machine_id",
            _when("created_at")), [
            {"token_id": ids["agent_token"], "user_id": ids["pro"], "machine_id": "m-pro-0001",
             "created_at": now}]),
        (_t("tasks", _uuid("id"), _uuid("user_id"), "key", "session_id", "machine_id", "cmd",
            "status", _when("created_at"), _when("updated_at")), [
            {"id": ids[f"{who}_task"], "user_id": ids[who], "key": f"{who}-task",
             "session_id": "s-1", "machine_id": "m-pro-0001", "cmd": "make",
             "status": "finished", "created_at": now, "updated_at": now}
            for who in ("pro", "free")]),
        (_t("events", _uuid("id"), _uuid("user_id"), _uuid("task_id"), "event_id", "type",
            "status", _json("payload"), _when("received_at")), [
            {"id": ids["event"], "user_id": ids["pro"], "task_id": ids["pro_task"],
             "event_id": "e-1", "type": "finished", "status": "success",
             "payload": {"cwd": "/srv"}, "received_at": now}]),
        (_t("task_logs", _uuid("task_id"), _uuid("user_id"), "bytes_total", "bytes_kept",
            "digest", "next_seq", _when("updated_at")), [
            {"task_id": ids["pro_task"], "user_id": ids["pro"], "bytes_total": 5,
             "bytes_kept": 5, "digest": "0" * 64, "next_seq": 1, "updated_at": now}]),
        (_t("channels", _uuid("id"), _uuid("user_id"), "type", "name", _json("config"),
            _json("rules"), "enabled", _when("verified_at"), _when("created_at"),
            _when("updated_at")), [
            {"id": ids[key], "user_id": ids[who], "type": "email", "name": "",
             "config": {"address": f"{who}@example.com"}, "rules": {"on": ["finished"]},
             "enabled": True, "verified_at": now, "created_at": now, "updated_at": now}
            for key, who in (("channel", "pro"), ("free_channel", "free"))]),
        (_t("notifications", _uuid("id"), _uuid("user_id"), _uuid("task_id"),
            _uuid("event_row_id"), _uuid("channel_id"), "channel_type", "kind", "status",
            "attempts", _when("created_at")), [
            {"id": ids["notification"], "user_id": ids["pro"], "task_id": ids["pro_task"],
             "event_row_id": ids["event"], "channel_id": ids["channel"], "channel_type": "email",
             "kind": "event", "status": "sent", "attempts": 1, "created_at": now}]),
        (_t("delivery_attempts", _uuid("id"), _uuid("notification_id"), "number", "outcome",
            _when("started_at")), [
            {"id": ids["attempt"], "notification_id": ids["notification"], "number": 1,
             "outcome": "sent", "started_at": now}]),
        (_t("relay_reply_tokens", _uuid("id"), _uuid("user_id"), _uuid("notification_id"),
            "machine_id", "session_id", "token_hash", _when("created_at"),
            _when("expires_at")), [
            {"id": ids["reply"], "user_id": ids["pro"], "notification_id": ids["notification"],
             "machine_id": "m-pro-0001", "session_id": "s-1", "token_hash": "1" * 64,
             "created_at": now, "expires_at": now + timedelta(days=1)}]),
        (_t("web_sessions", _uuid("id"), _uuid("user_id"), "secret_hash", "form_token",
            "client_ip", "user_agent", _when("created_at"), _when("last_seen_at"),
            _when("expires_at")), [
            {"id": ids[f"{who}_web"], "user_id": ids[who], "secret_hash": uuid.uuid4().hex,
             "form_token": uuid.uuid4().hex, "client_ip": "127.0.0.1", "user_agent": "test",
             "created_at": now, "last_seen_at": now, "expires_at": now + timedelta(days=30)}
            for who in ("pro", "free")]),
        (_t("relay_commands", _uuid("id"), _uuid("user_id"), "machine_id", "session_id",
            "command", "source", "state", "deliveries", "kind", _when("created_at"),
            _when("expires_at")), [
            {"id": ids["command"], "user_id": ids["pro"], "machine_id": "m-pro-0001",
             "session_id": "s-1", "command": "make", "source": "api", "state": "done",
             "deliveries": 1, "kind": "shell", "created_at": now, "expires_at": now}]),
        (_t("usage_counters", _uuid("user_id"), column("day", Date), "kind", "count"), [
            {"user_id": ids["pro"], "day": day, "kind": "sms", "count": 7},
            {"user_id": ids["free"], "day": day, "kind": "all", "count": 2},
            {"user_id": ids["free"], "day": day - timedelta(days=1), "kind": "all",
             "count": 3}]),
        (_t("billing_accounts", _uuid("user_id"), "customer_id", "subscription_id", "status",
            "cancel_at_period_end", "requested", "applied", _when("created_at")), [
            {"user_id": ids["pro"], "customer_id": "cus_pro", "subscription_id": "sub_pro",
             "status": "active", "cancel_at_period_end": False, "requested": 2, "applied": 2,
             "created_at": now}]),
        (_t("billing_changes", _uuid("id"), _uuid("user_id"), _when("at"), "change", "plan",
            "status", "cause"), [
            {"id": ids["change"], "user_id": ids["pro"], "at": now, "change": "upgraded",
             "plan": "pro", "status": "active", "cause": "evt_1"}]),
    ]
    with runtime.sessions.begin() as session:
        for target, values in rows:
            session.execute(insert(target), values)
    return ids


def _counts(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as session:
        return {name: session.scalar(select(func.count()).select_from(table(name))) or 0
                for name in _CHILDREN}


def _select(runtime: Runtime, name: str, *columns: Any) -> set[tuple[Any, ...]]:
    with runtime.sessions() as session:
        return {tuple(row) for row in session.execute(select(*columns).select_from(
            table(name, *columns)))}


def _check_upgraded(runtime: Runtime, ids: dict[str, uuid.UUID], day: date,
                    seeded: dict[str, int]) -> None:
    pro, free = ids["pro"], ids["free"]
    assert _counts(runtime) == seeded  # no child row went with a recreated parent
    assert _select(runtime, "workspaces", _uuid("id"), column("name"), column("plan"),
                   column("timezone")) == {(pro, "pro@example.com", "pro", "Asia/Shanghai"),
                                           (free, "free@example.com", "free", "UTC")}
    assert _select(runtime, "workspace_members", _uuid("workspace_id"), _uuid("user_id"),
                   column("role")) == {(pro, pro, "owner"), (free, free, "owner")}
    assert _select(runtime, "workspace_usage", _uuid("workspace_id"), column("day", Date),
                   column("kind"), column("count")) == {
        (pro, day, "sms", 7), (free, day, "all", 2), (free, day - timedelta(days=1), "all", 3)}
    assert _select(runtime, "billing_accounts", _uuid("workspace_id"), column("customer_id"),
                   column("subscription_id")) == {(pro, "cus_pro", "sub_pro")}
    assert _select(runtime, "billing_changes", _uuid("id"), _uuid("workspace_id")) == {
        (ids["change"], pro)}
    for name in ("api_tokens", "tasks", "channels", "notifications"):
        rows = _select(runtime, name, _uuid("user_id"), _uuid("workspace_id"))
        assert rows and all(user == space for user, space in rows), name
    assert _select(runtime, "channels", _uuid("id"), column("personal")) == {
        (ids["channel"], False), (ids["free_channel"], False)}
    assert _select(runtime, "web_sessions", _uuid("id"), _uuid("workspace_id")) == {
        (ids["pro_web"], None), (ids["free_web"], None)}  # None: the person's own workspace
    # The foreign keys that point at recreated tables still point where they did.
    assert _select(runtime, "notifications", _uuid("id"), _uuid("channel_id"),
                   _uuid("event_row_id"), _uuid("task_id")) == {
        (ids["notification"], ids["channel"], ids["event"], ids["pro_task"])}
    assert _select(runtime, "relay_agents", _uuid("token_id"), _uuid("user_id")) == {
        (ids["agent_token"], pro)}


def test_migration_0019_keeps_every_row_and_goes_down_and_up_again(runtime: Runtime) -> None:
    config = alembic_config(runtime.engine)
    command.downgrade(config, "0018")
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        ids = _seed_0018(runtime, now)
        seeded = _counts(runtime)
        assert all(seeded.values()), seeded
        migrate(runtime.engine, "0019")
        _check_upgraded(runtime, ids, now.date(), seeded)

        command.downgrade(config, "0018")
        assert _counts(runtime) == seeded
        assert _select(runtime, "users", _uuid("id"), column("plan")) == {
            (ids["pro"], "pro"), (ids["free"], "free")}
        assert _select(runtime, "usage_counters", _uuid("user_id"), column("kind"),
                       column("count")) == {(ids["pro"], "sms", 7), (ids["free"], "all", 2),
                                            (ids["free"], "all", 3)}
        assert _select(runtime, "billing_accounts", _uuid("user_id"),
                       column("customer_id")) == {(ids["pro"], "cus_pro")}

        migrate(runtime.engine, "0019")
        _check_upgraded(runtime, ids, now.date(), seeded)
    finally:
        migrate(runtime.engine)
    # And the server reads what the migration made: the Pro account is Pro, in its zone.
    with runtime.sessions() as session:
        assert auth.plan_of(session, ids["pro"]) == "pro"
        assert auth.person_plan(session, ids["free"]) == "free"
