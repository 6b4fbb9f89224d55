"""The agent tunnel's timers, in-process on SQLite and PostgreSQL: an idle connection holds no
task of its own, so its silence limit, its periodic queue re-read and its wake-ups are callbacks;
these tests pin what they must still do.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

MACHINE = "machine-tunnel-0123"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(relay_poll_s=0.3, relay_idle_s=1.0, relay_per_minute=100)


def _session(client: TestClient, user: Account, session_id: str) -> str:
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": uuid.uuid4().hex,
                                "machine_id": MACHINE, "session_id": session_id,
                                "status": "success", "exit_code": 0, "command": "make",
                                "cwd": "/srv/project"}).to_dict()
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202
    return session_id


def _agent(client: TestClient, user: Account) -> Any:
    made = client.post("/v1/agents", json={"machine_id": MACHINE}, headers=user.headers)
    assert made.status_code == 201, made.text
    return client.websocket_connect(
        "/v1/agent", headers={"Authorization": f"Bearer {made.json()['token']}"})


def _queue(client: TestClient, user: Account, session_id: str, command: str = "make") -> str:
    made = client.post("/v1/commands", json={"session_id": session_id, "command": command},
                       headers=user.headers)
    assert made.status_code == 202, made.text
    command_id: str = made.json()["id"]
    return command_id


def test_a_silent_agent_is_disconnected_and_a_heartbeating_one_is_not(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    with pytest.raises(WebSocketDisconnect) as closed, _agent(client, user) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # 2.5 idle limits, each heartbeat answered
            time.sleep(0.25)
            quiet = time.monotonic()
            ws.send_json({"type": "ping"})
            assert ws.receive_json() == {"type": "pong"}
        ws.receive_json()  # silent from now on: the server closes the connection
    assert closed.value.code == 1001
    assert 0.9 <= time.monotonic() - quiet < 10


def test_a_lost_wake_up_costs_latency_never_the_command(
    client: TestClient, make_user: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user(plan="pro")
    session_id = _session(client, user, "tty:/dev/pts/3:1")
    monkeypatch.setattr(relay_of(client.app.state).hub, "wake", lambda key: None)
    with _agent(client, user) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        for _ in range(3):  # each one found by a periodic re-read, not a wake-up
            command_id = _queue(client, user, session_id)
            pushed = ws.receive_json()
            assert pushed["type"] == "command" and pushed["id"] == command_id
            ws.send_json({"type": "started", "id": command_id})
            ws.send_json({"type": "result", "id": command_id, "state": "done", "exit_code": 0})
            assert ws.receive_json() == {"type": "ack", "id": command_id}


def test_a_burst_of_wake_ups_hands_each_command_over_once(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    relay = relay_of(client.app.state)  # the agent stays quiet while the test queues
    relay.policy = dataclasses.replace(relay.policy, idle_s=60.0)
    sessions = [_session(client, user, f"tty:/dev/pts/4:{i}") for i in range(25)]
    with _agent(client, user) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        queued = {_queue(client, user, s, f"make part{i}") for i, s in enumerate(sessions)}
        received = [ws.receive_json() for _ in queued]
        assert sorted(m["id"] for m in received) == sorted(queued)
        time.sleep(0.7)  # two periodic re-reads go by: nothing is handed over again
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    rows = [client.get(f"/v1/commands/{c}", headers=user.headers).json() for c in queued]
    assert {r["state"] for r in rows} == {"delivered"}
