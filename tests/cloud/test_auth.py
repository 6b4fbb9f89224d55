"""Tokens: stored only as hashes, scoped, revocable; no user can reach another's rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import ApiToken, User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.errors import UsageError
from claude_notify.events import TaskEvent, utcnow


def finished(task_id: str = "t-1", **extra: object) -> dict[str, object]:
    event = TaskEvent(
        type="finished",
        source="run",
        task_id=task_id,
        machine_id="m-1",
        status="success",
        exit_code=0,
        command="make test",
    )
    return {**event.to_dict(), **extra}


def test_only_the_hash_of_a_token_is_stored(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user()
    with runtime.sessions() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.user_id == account.user_id)).one()
    assert account.token.startswith("cnt_")
    assert row.token_hash == auth.hash_token(account.token)
    assert account.token not in (row.token_hash, row.prefix)
    assert set(row.scopes.split()) == set(auth.ACCOUNT_SCOPES)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer cnt_"],
    ids=["missing", "empty", "garbage", "basic", "bare-prefix"],
)
def test_bad_credentials_are_401_in_the_error_shape(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/v1/tasks", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_tampered_token_is_401(client: TestClient, make_user: Callable[..., Account]) -> None:
    token = make_user().token
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (
        client.get("/v1/tasks", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    )


def test_revoked_and_expired_tokens_are_401(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user()
    assert client.get("/v1/tasks", headers=account.headers).status_code == 200
    with runtime.sessions.begin() as session:
        assert auth.revoke_tokens(session, token=account.token) == 1
    assert client.get("/v1/tasks", headers=account.headers).status_code == 401

    with runtime.sessions.begin() as session:
        user = session.get(User, account.user_id)
        assert user is not None
        expired = auth.issue_token(session, user, expires_at=utcnow() - timedelta(seconds=1))
    headers = {"Authorization": f"Bearer {expired.secret}"}
    assert client.get("/v1/tasks", headers=headers).status_code == 401


def test_revoking_by_email_revokes_every_token(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user()
    with runtime.sessions.begin() as session:
        user = session.get(User, account.user_id)
        assert user is not None
        second = auth.issue_token(session, user, scopes=["events:write"])
    with runtime.sessions.begin() as session:
        assert auth.revoke_tokens(session, email=account.email.upper()) == 2
    for secret in (account.token, second.secret):
        assert (
            client.get("/v1/usage", headers={"Authorization": f"Bearer {secret}"}).status_code
            == 401
        )


def test_an_event_token_can_only_send_events(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user()
    with runtime.sessions.begin() as session:
        user = session.get(User, account.user_id)
        assert user is not None
        machine = auth.issue_token(session, user, scopes=["events:write"], name="laptop")
    headers = {"Authorization": f"Bearer {machine.secret}"}
    assert client.post("/v1/events", json=finished(), headers=headers).status_code == 202
    assert client.post("/v1/tasks", json={"cmd": "make"}, headers=headers).status_code == 201
    for method, path in [("GET", "/v1/tasks"), ("GET", "/v1/channels"), ("GET", "/v1/usage")]:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden"
    denied = client.post(
        "/v1/channels",
        json={"type": "webhook", "config": {"url": "https://example.com"}},
        headers=headers,
    )
    assert denied.status_code == 403


def test_admin_functions(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        user, token = auth.create_user(session, " Ops@Example.COM ", plan="pro")
    assert user.email == "ops@example.com"
    with runtime.sessions.begin() as session, pytest.raises(UsageError, match="already exists"):
        auth.create_user(session, "ops@example.com")
    with runtime.sessions.begin() as session:
        assert auth.set_plan(session, "OPS@example.com", "free").plan == "free"
    with runtime.sessions.begin() as session, pytest.raises(UsageError, match="unknown plan"):
        auth.set_plan(session, "ops@example.com", "gold")
    with runtime.sessions.begin() as session, pytest.raises(UsageError, match="no user"):
        auth.set_plan(session, "ghost@example.com", "pro")
    with runtime.sessions.begin() as session:
        assert auth.revoke_tokens(session, token=str(token.id)) == 1


def test_no_user_can_reach_another_users_rows(
    client: TestClient, make_user: Callable[..., Account], receiver: object
) -> None:
    owner, intruder = make_user(plan="pro"), make_user(plan="pro")
    hook = client.post(
        "/v1/channels",
        json={"type": "webhook", "config": {"url": "https://hooks.example.com/x"}},
        headers=owner.headers,
    ).json()
    sent = client.post("/v1/events", json=finished("owned-task"), headers=owner.headers).json()
    notification_id = sent["notifications"][0]["id"]
    channel_id = hook["id"]
    attempts = [
        ("GET", "/v1/tasks/owned-task", None),
        ("GET", f"/v1/channels/{channel_id}", None),
        ("PATCH", f"/v1/channels/{channel_id}", {"name": "mine now"}),
        ("DELETE", f"/v1/channels/{channel_id}", None),
        ("POST", f"/v1/channels/{channel_id}/test", None),
        ("POST", f"/v1/channels/{channel_id}/verify", {"code": "x"}),
        ("POST", f"/v1/channels/{channel_id}/verification", None),
        ("GET", f"/v1/notifications/{notification_id}", None),
        ("POST", f"/v1/notifications/{notification_id}/replay", None),
        ("GET", f"/v1/notifications/{uuid.uuid4()}", None),
    ]
    for method, path, body in attempts:
        response = client.request(method, path, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    # Lists show nothing of the owner's, and the owner's rows are untouched.
    assert client.get("/v1/tasks", headers=intruder.headers).json()["items"] == []
    assert client.get("/v1/channels", headers=intruder.headers).json() == []
    assert client.get("/v1/notifications", headers=intruder.headers).json()["items"] == []
    assert client.get(f"/v1/channels/{channel_id}", headers=owner.headers).json()["name"] == ""
    # The same event id from another user is a different event, not a replay of the owner's.
    theirs = client.post(
        "/v1/events",
        json=finished("owned-task", event_id=sent["event_id"]),
        headers=intruder.headers,
    ).json()
    assert theirs["duplicate"] is False


def test_a_tokens_last_use_is_recorded_at_most_once_per_interval(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    account = make_user()

    def last_used() -> object:
        with runtime.sessions() as session:
            return session.scalar(select(ApiToken.last_used_at)
                                  .where(ApiToken.user_id == account.user_id))

    assert last_used() is None
    assert client.get("/v1/account", headers=account.headers).status_code == 200
    first = last_used()
    assert first is not None
    for _ in range(3):  # within the interval: no write
        client.post("/v1/events", json=finished(f"t-{uuid.uuid4().hex}"),
                    headers=account.headers)
    assert last_used() == first
    with runtime.sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.user_id == account.user_id)
                        .values(last_used_at=utcnow() - auth.TOUCH_EVERY - timedelta(seconds=1)))
    client.post("/v1/events", json=finished(f"t-{uuid.uuid4().hex}"), headers=account.headers)
    latest = last_used()
    assert isinstance(latest, type(first)) and latest > first  # type: ignore[operator]
