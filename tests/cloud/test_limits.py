"""Per-token and per-user limits, each set in ``Settings`` and checked with the real app."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloud_kit import Account, Receiver
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent


@pytest.fixture
def limited(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """The app with some limits changed (the same database as ``make_user``)."""
    opened: list[tuple[Runtime, Any]] = []

    def start(**limits: int) -> TestClient:
        runtime = Runtime.build(settings.replace(**limits))
        client = TestClient(create_app(runtime=runtime))
        opened.append((runtime, client.__enter__()))
        return client

    yield start
    for runtime, client in opened:
        client.__exit__(None, None, None)
        runtime.close()


def _event(task_id: str = "t-1") -> dict[str, Any]:
    return TaskEvent(type="finished", source="run", task_id=task_id, machine_id="m-1",
                     status="success", exit_code=0, command="make").to_dict()


def _webhook(client: TestClient, user: Account, url: str) -> Any:
    return client.post("/v1/channels", headers=user.headers, json={
        "type": "webhook", "config": {"url": url}, "rules": {"on": ["finished"]}})


def test_events_per_minute_per_token_answer_429_with_retry_after(
    limited: Callable[..., TestClient], runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    client = limited(events_per_minute=3)
    user = make_user(plan="pro")
    codes = [client.post("/v1/events", json=_event(f"t-{n}"), headers=user.headers).status_code
             for n in range(3)]
    assert codes == [202, 202, 202]
    refused = client.post("/v1/events", json=_event("t-3"), headers=user.headers)
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "3 events a minute" in error["message"]
    with runtime.sessions.begin() as session:  # another token of the same account is counted
        account = session.get(User, user.user_id)  # on its own
        assert account is not None
        other = auth.issue_token(session, account, scopes=["events:write"], name="ci").secret
    again = client.post("/v1/events", json=_event("t-4"), headers={"Authorization":
                                                                   f"Bearer {other}"})
    assert again.status_code == 202, again.text
    tasks = client.get("/v1/tasks", headers=user.headers).json()
    assert {t["task_id"] for t in tasks["items"]} == {"t-0", "t-1", "t-2", "t-4"}


def test_channels_per_user(
    limited: Callable[..., TestClient], make_user: Callable[..., Account], receiver: Receiver,
) -> None:
    client = limited(max_channels_per_user=2)
    user, other = make_user(plan="pro"), make_user(plan="pro")
    made = [_webhook(client, user, receiver.url) for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201]
    third = _webhook(client, user, receiver.url)
    assert third.status_code == 403, third.text
    assert "at most 2 channels" in third.json()["error"]["message"]
    assert _webhook(client, other, receiver.url).status_code == 201  # per user
    deleted = client.delete(f"/v1/channels/{made[0].json()['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert _webhook(client, user, receiver.url).status_code == 201


def test_agents_per_user(
    limited: Callable[..., TestClient], make_user: Callable[..., Account],
) -> None:
    client = limited(max_agents_per_user=1)
    user = make_user(plan="pro")

    def register(machine: str) -> Any:
        return client.post("/v1/agents", json={"machine_id": machine}, headers=user.headers)

    assert register("machine-aaaa").status_code == 201
    second = register("machine-bbbb")
    assert second.status_code == 403, second.text
    assert "at most 1 agent" in second.json()["error"]["message"]
    assert register("machine-aaaa").status_code == 201  # the same machine replaces its own


def test_sockets_per_user(
    limited: Callable[..., TestClient], make_user: Callable[..., Account],
) -> None:
    client = limited(max_sockets_per_user=1)
    user = make_user(plan="pro")
    tokens = [client.post("/v1/agents", json={"machine_id": f"machine-{n}aaaa"},
                          headers=user.headers).json()["token"] for n in range(2)]

    def connect(token: str) -> Any:
        return client.websocket_connect("/v1/agent",
                                        headers={"Authorization": f"Bearer {token}"})

    hello = {"type": "hello", "sessions": [], "running": []}
    with connect(tokens[0]) as first:
        first.send_json(hello)
        first.send_json({"type": "ping"})
        assert first.receive_json() == {"type": "pong"}  # connected and counted
        with connect(tokens[1]) as second:
            with pytest.raises(WebSocketDisconnect) as closed:
                second.send_json(hello)
                second.receive_json()
            assert closed.value.code == 1013  # try again later: the agent backs off, not quits
            assert "agent connections" in closed.value.reason
    with connect(tokens[1]) as second:  # the first is gone: a slot is free again
        second.send_json(hello)
        second.send_json({"type": "ping"})
        assert second.receive_json() == {"type": "pong"}


def test_sends_per_event(
    limited: Callable[..., TestClient], make_user: Callable[..., Account], receiver: Receiver,
) -> None:
    client = limited(max_sends_per_event=2)
    user = make_user(plan="pro")
    for _ in range(3):
        assert _webhook(client, user, receiver.url).status_code == 201
    sent = client.post("/v1/events", json=_event(), headers=user.headers)
    assert sent.status_code == 202, sent.text
    planned = sent.json()["notifications"]
    assert [n["status"] for n in planned] == ["pending", "pending", "rejected"]
    assert planned[2]["reason"] == "at most 2 notifications are sent for one event"
    receiver.wait(2)
    assert uuid.UUID(planned[2]["id"])


@pytest.mark.parametrize(("name", "value"), [("EVENTS_PER_MINUTE", "-1"),
                                             ("MAX_CHANNELS_PER_USER", "0"),
                                             ("MAX_SENDS_PER_EVENT", "many")])
def test_limits_are_read_from_the_environment_and_checked(name: str, value: str) -> None:
    from claude_notify.errors import ConfigError

    env = {"CLAUDE_NOTIFY_SERVER_MAX_AGENTS_PER_USER": "4",
           "CLAUDE_NOTIFY_SERVER_EVENTS_PER_MINUTE": "0"}
    assert Settings.from_env(env).validate().max_agents_per_user == 4
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({f"CLAUDE_NOTIFY_SERVER_{name}": value}).validate()
