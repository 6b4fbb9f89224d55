"""The relay's server side in-process, on SQLite and PostgreSQL: who may queue and who may connect,
the state machine a command goes through, per-session order, redelivery on reconnect, expiry,
rate limit, banlist and the audit log. The agent here is the test speaking the protocol; the real
agent process is in ``test_relay_e2e.py``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.websockets import WebSocketDisconnect

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

MACHINE = "machine-0123456789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(relay_poll_s=0.2, relay_per_minute=20)


def _limits(client: TestClient, **changes: Any) -> None:
    """Change this app's relay limits (its settings' ``relay_*`` values) from now on."""
    relay = relay_of(client.app.state)
    relay.policy = dataclasses.replace(relay.policy, **changes)


def _session(client: TestClient, user: Account, session_id: str = "tty:/dev/pts/1:42",
             machine: str = MACHINE, cwd: str = "/srv/project") -> str:
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": uuid.uuid4().hex,
                                "machine_id": machine, "session_id": session_id,
                                "status": "success", "exit_code": 0, "command": "make",
                                "cwd": cwd}).to_dict()
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202
    return session_id


def _agent_token(client: TestClient, user: Account, machine: str = MACHINE) -> str:
    made = client.post("/v1/agents", json={"machine_id": machine}, headers=user.headers)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def _queue(client: TestClient, user: Account, command: str,
           session_id: str = "tty:/dev/pts/1:42") -> Any:
    return client.post("/v1/commands", json={"session_id": session_id, "command": command},
                       headers=user.headers)


def _connect(client: TestClient, token: str) -> Any:
    return client.websocket_connect("/v1/agent", headers={"Authorization": f"Bearer {token}"})


def _state(client: TestClient, user: Account, command_id: str) -> str:
    state: str = client.get(f"/v1/commands/{command_id}", headers=user.headers).json()["state"]
    return state


def _audit(client: TestClient, user: Account) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get("/v1/audit", headers=user.headers).json()
    return rows


def test_a_queued_command_reaches_the_agent_and_runs_once(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    queued = _queue(client, user, "./next.sh --fast")
    assert queued.status_code == 202, queued.text
    command_id = queued.json()["id"]
    assert queued.json()["state"] == "queued"
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        pushed = ws.receive_json()
        assert pushed == {"type": "command", "id": command_id, "session_id": "tty:/dev/pts/1:42",
                          "command": "./next.sh --fast", "cwd": "/srv/project", "source": "api",
                          "kind": "shell"}
        assert _state(client, user, command_id) == "delivered"
        ws.send_json({"type": "started", "id": command_id})
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        assert _state(client, user, command_id) == "running"
        ws.send_json({"type": "result", "id": command_id, "state": "done", "exit_code": 0})
        assert ws.receive_json() == {"type": "ack", "id": command_id}
    done = client.get(f"/v1/commands/{command_id}", headers=user.headers).json()
    assert (done["state"], done["exit_code"]) == ("done", 0)
    outcomes = [row["outcome"] for row in reversed(_audit(client, user))]
    assert outcomes == ["queued", "started", "done"]


def test_a_delivered_command_is_sent_again_after_a_reconnect_and_a_started_one_is_not(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    first = _queue(client, user, "make one").json()["id"]
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        assert ws.receive_json()["id"] == first  # then the connection drops before "started"
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        assert ws.receive_json()["id"] == first
        ws.send_json({"type": "started", "id": first})
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    with _connect(client, token) as ws:  # still running on the agent: not sent a third time
        ws.send_json({"type": "hello", "sessions": [], "running": [first]})
        ws.send_json({"type": "result", "id": first, "state": "failed", "exit_code": 2})
        assert ws.receive_json() == {"type": "ack", "id": first}
    assert _state(client, user, first) == "failed"


def test_an_agent_that_died_mid_run_fails_its_command_instead_of_blocking_the_session(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    first = _queue(client, user, "make one").json()["id"]
    second = _queue(client, user, "make two").json()["id"]
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        assert ws.receive_json()["id"] == first
        ws.send_json({"type": "started", "id": first})
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        assert ws.receive_json()["id"] == second
    assert _state(client, user, first) == "failed"


def test_commands_for_one_session_go_one_at_a_time_in_order(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user, "s-a")
    _session(client, user, "s-b")
    token = _agent_token(client, user)
    a1 = _queue(client, user, "echo a1", "s-a").json()["id"]
    a2 = _queue(client, user, "echo a2", "s-a").json()["id"]
    b1 = _queue(client, user, "echo b1", "s-b").json()["id"]
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": ["s-a", "s-b"], "running": []})
        got = {ws.receive_json()["id"], ws.receive_json()["id"]}
        assert got == {a1, b1}  # the heads of both sessions, not a2
        ws.send_json({"type": "started", "id": a1})
        ws.send_json({"type": "result", "id": a1, "state": "done", "exit_code": 0})
        assert ws.receive_json() == {"type": "ack", "id": a1}
        assert ws.receive_json()["id"] == a2  # sent as soon as a1 finished


def test_a_command_posted_while_connected_is_pushed_at_once(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        command_id = _queue(client, user, "make").json()["id"]
        assert ws.receive_json()["id"] == command_id


def test_a_command_for_an_offline_agent_expires(
    client: TestClient, make_user: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(client, ttl_s=0.0)
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    stale = _queue(client, user, "make").json()["id"]
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}  # nothing was pushed before the pong
    assert _state(client, user, stale) == "expired"
    assert _audit(client, user)[0]["outcome"] == "expired"


@pytest.mark.parametrize("which", ["account", "events", "wrong", "revoked", "unbound"])
def test_only_a_machine_bound_relay_token_opens_the_tunnel(
    client: TestClient, make_user: Callable[..., Account], runtime: Runtime, which: str
) -> None:
    user = make_user(plan="pro")
    with runtime.sessions.begin() as session:
        owner = session.get(auth.User, user.user_id)
        assert owner is not None
        events = auth.issue_token(session, owner, scopes=["events:write"]).secret
        unbound = auth.issue_token(session, owner, scopes=["relay"]).secret
    token = {"account": user.token, "events": events, "wrong": "cnt_" + "x" * 43,
             "unbound": unbound, "revoked": _agent_token(client, user)}[which]
    if which == "revoked":
        _agent_token(client, user)  # registering the machine again retires the old credential
    with pytest.raises(WebSocketDisconnect) as refused, _connect(client, token) as ws:
        ws.receive_json()
    assert refused.value.code == 1008


def test_an_agent_token_cannot_queue_and_an_events_token_cannot_register(
    client: TestClient, make_user: Callable[..., Account], runtime: Runtime
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    agent = Account(user.email, _agent_token(client, user), user.user_id)
    assert _queue(client, agent, "make").status_code == 403
    with runtime.sessions.begin() as session:
        owner = session.get(auth.User, user.user_id)
        assert owner is not None
        events = Account(user.email, auth.issue_token(session, owner, scopes=["events:write"])
                         .secret, user.user_id)
    assert client.post("/v1/agents", json={"machine_id": MACHINE},
                       headers=events.headers).status_code == 403


def test_refusals_are_audited_and_nothing_is_queued(
    client: TestClient, make_user: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(client, per_minute=5)
    user, other, free = make_user(plan="pro"), make_user(plan="pro"), make_user(plan="free")
    _session(client, user)
    _agent_token(client, user)
    _session(client, other, "theirs")
    _session(client, free)
    assert _queue(client, free, "make").status_code == 403  # a pro feature
    assert _queue(client, user, "make", "theirs").status_code == 404  # another user's session
    banned = _queue(client, user, "sudo shutdown -h now")
    assert (banned.status_code, "banned keyword" in banned.text) == (403, True)
    assert _queue(client, user, "make").status_code == 202
    assert _queue(client, user, "make").status_code == 202
    assert _queue(client, user, "make").status_code == 202
    limited = _queue(client, user, "make")
    assert limited.status_code == 429
    rows = _audit(client, user)
    assert [r["outcome"] for r in rows] == ["refused", "queued", "queued", "queued", "refused",
                                            "refused"]
    assert "in a minute" in (rows[0]["reason"] or "")
    assert all(r["source"] == "api" and r["actor"].startswith("token ") for r in rows)
    assert _audit(client, other) == []


@pytest.mark.parametrize("first", ["not json", '{"type": "started", "id": "x"}', "[1, 2]"])
def test_an_agent_that_does_not_say_hello_is_disconnected(
    client: TestClient, make_user: Callable[..., Account], first: str
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    command_id = _queue(client, user, "make").json()["id"]
    with pytest.raises(WebSocketDisconnect) as closed, _connect(client, token) as ws:
        ws.send_text(first)
        ws.receive_json()
    assert closed.value.code == 1002
    assert _state(client, user, command_id) == "queued"  # nothing was handed over


def test_a_failed_claude_turn_s_detail_is_sealed_at_rest_and_read_back_in_clear(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    """A relayed Claude turn that fails reports Claude's own words as its detail: command output,
    which is sealed at rest like an event's tail, in the command row and in the audit log."""
    user = make_user(plan="pro")
    _session(client, user)
    token = _agent_token(client, user)
    command_id = _queue(client, user, "make").json()["id"]
    said = "claude: error_max_turns: I read /srv/project/.env and SECRET-ANSWER-TEXT"
    with _connect(client, token) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        assert ws.receive_json()["id"] == command_id
        ws.send_json({"type": "started", "id": command_id})
        ws.send_json({"type": "result", "id": command_id, "state": "failed", "exit_code": None,
                      "detail": said})
        assert ws.receive_json() == {"type": "ack", "id": command_id}
    with runtime.engine.connect() as conn:
        raw = [*conn.execute(text("SELECT detail FROM relay_commands")).scalars(),
               *conn.execute(text("SELECT reason FROM relay_audit")).scalars()]
    assert [v for v in raw if v and "SECRET-ANSWER-TEXT" in v] == []
    assert any(v and v.startswith("sealed:v1:") for v in raw)
    shown = client.get(f"/v1/commands/{command_id}", headers=user.headers).json()
    assert shown["detail"] == said
    assert [r["reason"] for r in _audit(client, user) if r["outcome"] == "failed"] == [said]
