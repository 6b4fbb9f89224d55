"""The relay end to end with real processes, on SQLite and PostgreSQL: the server
(`claude-notify server`), the agent (`claude-notify agent`) and the CLI a user runs, with the
notifications arriving at a real webhook receiver on loopback.

A command queued with ``POST /v1/commands`` runs on the agent through ``claude-notify run`` (its
own task and notification, in the same session); refused commands never run; an agent that was
offline runs what waited, once; a server restart in the middle of a run loses nothing and runs
nothing twice.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, Receiver, wait_for
from relay_kit import AgentProc, Server, api, cli, email, user_env
from sqlalchemy import create_engine, select
from standins.telegram import TOKEN, TelegramStandIn

from claude_notify.cloud.server.auth import hash_token
from claude_notify.cloud.server.db.models import ApiToken
from claude_notify.cloud.server.relay.models import RelayAgent

SESSION = "tty:/dev/pts/7:4242"
COUNT = "#!/bin/sh\necho ran >> runs.txt\n"
SLOW = "#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.05; done\necho ran >> runs.txt\n"
HOOK_SECRET = "relay-hook-secret_1"  # noqa: S105 - the test bot's webhook secret
_UPDATE_IDS = itertools.count(10001)
"""Telegram numbers every update; the server handles each number once."""


@pytest.fixture(scope="module")
def telegram(module_db_url: str) -> Iterator[TelegramStandIn]:
    """The stand-in the module's shared server talks to, one per database so that each starts
    empty (a single test here links a chat to it)."""
    standin = TelegramStandIn(per_chat_interval_s=0)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox,
                  telegram: TelegramStandIn) -> Iterator[Server]:
    """One server per database for the module; each test signs up a user of its own."""
    srv = Server.make(module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN=TOKEN,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE=telegram.base_url,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=HOOK_SECRET)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


class Setup:
    def __init__(self, server: Server, tmp_path: Path, receiver: Receiver) -> None:
        self.server, self.receiver = server, receiver
        self.token = server.admin("create-user", email(), "--plan", "pro")
        self.env = user_env(tmp_path / "user")
        cli(["login", "--server", server.url, "--token"], self.env,
            stdin=self.token.encode() + b"\n")
        cli(["channels", "add", "webhook", receiver.url, "--on", "finished"], self.env)
        self.project = tmp_path / "project"
        self.project.mkdir()
        for name, text in (("count.sh", COUNT), ("slow.sh", SLOW)):
            (self.project / name).write_text(text)
            (self.project / name).chmod(0o755)
        # A command run in the session's terminal: the server learns the session's machine.
        cli(["run", "--exec", "--", "true"], {**self.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
            cwd=self.project)
        self.events(1)
        cli(["agent", "--register"], self.env)
        out = cli(["agent", "--allow", "./count.sh", "--allow", "./slow.sh", "--allow", "touch *",
                   "--deny", "touch secret*", "--dir", str(self.project)], self.env)
        assert out.stdout.startswith(b"relay on on this machine; 3 allowed, 1 denied")
        self.agent = AgentProc(self.env, self.project, tmp_path / "agent.log")

    def queue(self, command: str) -> str:
        sent = api(self.server, self.token, "POST", "/v1/commands",
                   json={"session_id": SESSION, "command": command})
        assert sent.status_code == 202, sent.text
        command_id: str = sent.json()["id"]
        return command_id

    def command(self, command_id: str) -> dict[str, Any]:
        got: dict[str, Any] = api(self.server, self.token, "GET",
                                  f"/v1/commands/{command_id}").json()
        return got

    def settled(self, command_id: str, timeout: float = 30) -> dict[str, Any]:
        final = ("done", "failed", "refused", "expired")
        got: dict[str, Any] = wait_for(
            lambda: (c := self.command(command_id))["state"] in final and c, timeout=timeout,
            what=f"command {command_id} to finish")
        return got

    def runs(self) -> int:
        path = self.project / "runs.txt"
        return path.read_text().count("ran") if path.exists() else 0

    def events(self, n: int) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.receiver.wait(n, timeout=30)]


@pytest.fixture
def setup(server: Server, tmp_path: Path, receiver: Receiver) -> Iterator[Setup]:
    made = Setup(server, tmp_path, receiver)
    yield made
    made.agent.stop()


def test_a_queued_command_runs_on_the_agent_and_is_notified(setup: Setup) -> None:
    setup.agent.start()
    done = setup.settled(setup.queue("./count.sh"))
    assert (done["state"], done["exit_code"]) == ("done", 0)
    assert setup.runs() == 1
    event = setup.events(2)[-1]  # the relayed command's own notification, in the same session
    event = event.get("data", event)
    assert (event["command"], event["session_id"], event["exit_code"]) == ("./count.sh",
                                                                           SESSION, 0)
    assert event["cwd"] == str(setup.project)
    audit = api(setup.server, setup.token, "GET", "/v1/audit").json()
    assert [a["outcome"] for a in reversed(audit)] == ["queued", "started", "done"]
    # What the agent reported it may run, for its owner's machines page.
    engine = create_engine(setup.server.env["DATABASE_URL"])
    try:
        with engine.connect() as db:
            mine = select(ApiToken.user_id).where(ApiToken.token_hash == hash_token(setup.token))
            policies = list(db.scalars(select(RelayAgent.policy)
                                       .where(RelayAgent.user_id == mine.scalar_subquery())))
    finally:
        engine.dispose()
    assert policies == [{"allow": ["./count.sh", "./slow.sh", "touch *"],
                         "deny": ["touch secret*"], "dirs": [str(setup.project)],
                         "claude": False}]


@pytest.fixture(scope="module")
def refusing(shared_server: Server, tmp_path_factory: pytest.TempPathFactory,
             module_receiver: Receiver) -> Iterator[Setup]:
    """One user and connected agent per database for every refused command below: a refused
    command runs nothing and leaves nothing, so each test still sees the untouched project (and
    one notification, the first task's); a command that did run would fail its own test."""
    made = Setup(shared_server.running(), tmp_path_factory.mktemp("refusing"), module_receiver)
    made.agent.start()
    yield made
    made.agent.stop()


@pytest.mark.parametrize("command", [
    "touch made; curl http://127.0.0.1:9/x | sh",
    "touch $(id -u)",
    "touch `id -u`",
    "touch made\ntouch smuggled",
    "touch secret-file",
    "rm runs.txt",
])
def test_commands_outside_the_allow_list_or_smuggling_a_second_are_refused(
    refusing: Setup, command: str
) -> None:
    setup = refusing
    setup.server.running()
    assert setup.agent.proc is not None and setup.agent.proc.poll() is None, setup.agent.text()
    refused = setup.settled(setup.queue(command))
    assert refused["state"] == "refused"
    assert sorted(p.name for p in setup.project.iterdir()) == ["count.sh", "slow.sh"]
    audit = api(setup.server, setup.token, "GET", "/v1/audit").json()
    assert (audit[0]["outcome"], audit[0]["actor"]) == ("refused", "agent")
    assert audit[0]["reason"]
    assert len(setup.events(1)) == 1  # only the first task's notification: nothing ran


def test_commands_wait_for_an_offline_agent_and_run_once_each(setup: Setup) -> None:
    first, second = setup.queue("./count.sh"), setup.queue("./count.sh")
    assert setup.command(first)["state"] == "queued"
    setup.agent.start()
    assert [setup.settled(c)["state"] for c in (first, second)] == ["done", "done"]
    assert setup.runs() == 2
    setup.agent.stop()
    setup.agent.start()  # a reconnect: nothing runs again
    third = setup.settled(setup.queue("./count.sh"))
    assert third["state"] == "done"
    assert setup.runs() == 3


def test_a_server_restart_mid_run_loses_nothing_and_runs_nothing_twice(
    setup: Setup, server: Server
) -> None:
    setup.agent.start()
    slow = setup.queue("./slow.sh")
    wait_for(lambda: setup.command(slow)["state"] == "running", timeout=30, what="the run")
    server.stop()
    (setup.project / "go").touch()  # the run ends while the server is down
    wait_for(lambda: "connection lost" in setup.agent.text(), timeout=30, what="a disconnect")
    server.start()
    done = setup.settled(slow)
    assert (done["state"], done["exit_code"]) == ("done", 0)
    assert setup.runs() == 1
    assert setup.agent.text().count("agent: running './slow.sh'") == 1


def test_sigterm_closes_the_agent_with_restarting_and_it_reconnects_at_once(
    setup: Setup, server: Server
) -> None:
    """The API's SIGTERM closes the agent's socket with 1012 ("service restart"): the agent
    retries every half second instead of backing off, so it is back within moments of the new
    process answering, and runs a command queued meanwhile once."""
    setup.agent.start()
    assert server.proc is not None
    proc, server.proc = server.proc, None
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    wait_for(lambda: "agent: the server is restarting" in setup.agent.text(), timeout=30,
             what="the restart close")
    # Six refused attempts: backing off, the agent would now wait 8-16 s before the next.
    wait_for(lambda: setup.agent.text().count("connection lost") >= 6, timeout=30,
             what="the agent to retry")
    server.start()
    up = time.monotonic()
    command = setup.queue("./count.sh")
    wait_for(lambda: setup.agent.text().count("agent: connected") >= 2, timeout=30,
             what="the agent to reconnect")
    assert time.monotonic() - up < 4  # retries every 0.25-0.5 s (generous for a loaded box)
    assert setup.settled(command)["state"] == "done"
    assert setup.runs() == 1


def test_the_agent_is_off_until_allowed_and_stops_on_a_retired_credential(
    server: Server, tmp_path: Path
) -> None:
    off_user = email("off")
    token = server.admin("create-user", off_user, "--plan", "pro")
    env = user_env(tmp_path / "off")
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    cli(["agent", "--register"], env)
    off = cli(["agent"], env, check=False)
    assert off.returncode == 2
    assert b"the relay is off on this machine" in off.stderr
    cli(["agent", "--allow", "make *", "--dir", str(tmp_path)], env)
    server.admin("revoke", "--user", off_user)
    retired = cli(["agent"], env, check=False)
    assert retired.returncode == 1
    assert b"refused this machine's agent credential" in retired.stderr


def test_one_agent_per_machine_and_a_killed_one_does_not_block_the_next(setup: Setup) -> None:
    setup.agent.start()
    assert setup.agent.proc is not None
    second = cli(["agent"], setup.env, cwd=setup.project, check=False)
    assert second.returncode == 1
    assert second.stderr.count(b"\n") == 1, second.stderr
    assert b"already running on this machine" in second.stderr
    assert f"pid {setup.agent.proc.pid};".encode() in second.stderr
    os.killpg(setup.agent.proc.pid, signal.SIGKILL)  # no clean-up: the kernel drops the lock
    setup.agent.proc.wait(timeout=15)
    setup.agent.start()  # waits for "agent: connected"
    setup.settled(setup.queue("./count.sh"))
    assert setup.runs() == 1


def _tg_update(text: str, *, reply_to: int | None = None, sender: int = 777,
               chat_type: str = "private") -> dict[str, Any]:
    chat = {"id": 555, "type": chat_type, "first_name": "Ada"}
    message: dict[str, Any] = {"message_id": 90, "date": 1, "text": text, "chat": chat,
                               "from": {"id": sender, "is_bot": False, "first_name": "Ada"}}
    if reply_to is not None:
        message["reply_to_message"] = {"message_id": reply_to, "date": 1, "chat": chat,
                                       "text": "notification"}
    return {"update_id": next(_UPDATE_IDS), "message": message}


def test_a_telegram_reply_runs_on_the_agent_and_its_completion_reaches_telegram(
    setup: Setup, server: Server, telegram: TelegramStandIn
) -> None:
    hook = {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
    made = api(server, setup.token, "POST", "/v1/channels",
               json={"type": "telegram", "config": {}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    code = api(server, setup.token, "POST", f"/v1/channels/{made.json()['id']}/link").json()
    assert httpx.post(f"{server.url}/v1/telegram/webhook", json=_tg_update(code["command"]),
                      headers=hook, timeout=10).status_code == 200
    telegram.wait(1)  # "linked"
    cli(["run", "--exec", "--", "true"], {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=setup.project)
    notified = telegram.wait(2)[1].displayed
    wait_for(lambda: any(n["provider_id"] == str(notified["message_id"]) and
                         n["status"] == "sent" for n in
                         api(server, setup.token, "GET", "/v1/notifications").json()["items"]),
             what="the Telegram notification to be recorded")
    setup.agent.start()

    def reply(update: dict[str, Any], headers: dict[str, str] = hook) -> int:
        sent = httpx.post(f"{server.url}/v1/telegram/webhook", json=update, headers=headers,
                          timeout=10)
        return sent.status_code

    mid = notified["message_id"]
    assert reply(_tg_update("./count.sh", reply_to=mid, sender=999, chat_type="group")) == 200
    assert reply(_tg_update("./count.sh", reply_to=mid), {}) == 403  # forged: no secret
    assert reply(_tg_update("./count.sh", reply_to=mid)) == 200
    audit = wait_for(lambda: [a for a in api(server, setup.token, "GET", "/v1/audit").json()
                              if a["outcome"] == "done"] and
                     api(server, setup.token, "GET", "/v1/audit").json(), timeout=30,
                     what="the command to run")
    assert [(a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("refused", "telegram:999"), ("queued", "telegram:777"), ("started", "agent"),
        ("done", "agent")]
    assert setup.runs() == 1
    texts = [r.displayed["text"] for r in telegram.wait(4, timeout=30)]
    assert any("Queued on" in t for t in texts)
    done = wait_for(lambda: [t for t in (r.displayed["text"] for r in telegram.accepted())
                             if "./count.sh" in t and "Queued" not in t], timeout=30,
                    what="the relayed command's own notification on Telegram")
    assert done
