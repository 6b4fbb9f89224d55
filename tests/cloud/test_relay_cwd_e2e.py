"""Where relayed commands run, end to end with real processes on SQLite and PostgreSQL: the
server (`claude-notify server`), the agent (`claude-notify agent`, started in a directory of its
own that its rules also allow), the CLI and the Telegram stand-in.

Replies to one task's notification, each sent the moment the previous relayed command finished,
all run in that task's directory. Each relayed command is a task of the same session, registered
when it starts and given its directory only by its first event, which may arrive after its
result: a reply queued in between once read the session's directory from that task, found none,
and the agent ran it in its own directory instead. A command that reaches the agent without a
directory (queued by a server before this fix) is refused by the agent, never run elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, wait_for
from relay_kit import AgentProc, Server, api, cli, email, user_env
from sqlalchemy import create_engine, insert, select
from standins.telegram import TOKEN, TelegramStandIn
from tg_kit import update

from claude_notify.cloud.server.db.models import Task, User
from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

SESSION = "tty:/dev/pts/3:3131"
HOOK_SECRET = "cwd-hook-secret_1"  # noqa: S105 - the test bot's webhook secret
HOOK = {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
CHAT = 5151
REPLIES = {"sqlite": 12, "postgres": 12}
"""Back-to-back replies per database; the old code sent most of them to the agent's own
directory, from the third on, on either database (with 12 it failed in each of five tries, at
the 3rd to 9th reply; with 8, one try in three passed). Each reply runs for 1.2 s, so more
only made the suite slower."""
MARK = "#!/bin/sh\nsleep 1.2\ntouch \"ran-$1\"\n"
"""Runs past the CLI's one-second registration delay, so each task is registered while it runs
and its event (with the directory) comes after its result: the window a reply fell into."""


@pytest.fixture(scope="module")
def telegram(module_db_url: str) -> Iterator[TelegramStandIn]:
    """The stand-in the module's shared server talks to, one per database (one test links)."""
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
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=HOOK_SECRET,
                      CLAUDE_NOTIFY_SERVER_RELAY_PER_MINUTE="1000")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


class Setup:
    def __init__(self, server: Server, tmp_path: Path, db_url: str) -> None:
        self.server, self.db_url = server, db_url
        self.email = email("cwd")
        self.token = server.admin("create-user", self.email, "--plan", "pro")
        self.env = user_env(tmp_path / "user")
        cli(["login", "--server", server.url, "--token"], self.env,
            stdin=self.token.encode() + b"\n")
        self.project, self.own = tmp_path / "project", tmp_path / "agent-home"
        for where in (self.project, self.own):
            where.mkdir()
            (where / "mark.sh").write_text(MARK)
            (where / "mark.sh").chmod(0o755)
        cli(["agent", "--register"], self.env)
        # Both directories are allowed: a command sent to the wrong one would run there.
        cli(["agent", "--allow", "./mark.sh *", "--allow", "touch *", "--dir", str(tmp_path)],
            self.env)
        self.agent = AgentProc(self.env, self.own, tmp_path / "agent.log")

    def audit(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = api(self.server, self.token, "GET", "/v1/audit",
                                         params={"limit": 500}).json()
        return rows

    def hook(self, body: dict[str, Any]) -> int:
        return httpx.post(f"{self.server.url}/v1/telegram/webhook", json=body, headers=HOOK,
                          timeout=10).status_code


@pytest.fixture
def setup(server: Server, tmp_path: Path, module_db_url: str) -> Iterator[Setup]:
    made = Setup(server, tmp_path, module_db_url)
    yield made
    made.agent.stop()


@pytest.mark.timeout(600)
def test_back_to_back_replies_all_run_in_the_tasks_directory(
    setup: Setup, server: Server, telegram: TelegramStandIn
) -> None:
    made = api(server, setup.token, "POST", "/v1/channels",
               json={"type": "telegram", "config": {}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    code = api(server, setup.token, "POST", f"/v1/channels/{made.json()['id']}/link").json()
    assert setup.hook(update(code["command"], chat=CHAT)) == 200
    telegram.wait(1)  # "linked"
    cli(["run", "--exec", "--", "true"], {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=setup.project)
    notified = telegram.wait(2)[1].displayed
    wait_for(lambda: any(n["provider_id"] == str(notified["message_id"]) and
                         n["status"] == "sent" for n in
                         api(server, setup.token, "GET", "/v1/notifications").json()["items"]),
             what="the Telegram notification to be recorded")
    setup.agent.start()

    replies = REPLIES["sqlite" if setup.db_url.startswith("sqlite") else "postgres"]
    for i in range(replies):
        assert setup.hook(update(f"./mark.sh {i}", chat=CHAT,
                                 reply_to=notified["message_id"])) == 200
        wait_for(lambda i=i: sum(a["outcome"] in ("done", "failed", "refused")
                                 for a in setup.audit()) > i,
                 timeout=60, what=f"relayed command {i} to finish")
        elsewhere = sorted(p.name for p in setup.own.iterdir() if p.name.startswith("ran-"))
        assert elsewhere == [], f"command {i}: ran in the agent's own directory: {elsewhere}"
    assert sorted(p.name for p in setup.project.iterdir() if p.name.startswith("ran-")) == sorted(
        f"ran-{i}" for i in range(replies))
    outcomes = [a["outcome"] for a in setup.audit()]
    assert outcomes.count("done") == replies and "refused" not in outcomes


def test_a_command_without_a_directory_is_refused_by_the_agent(setup: Setup) -> None:
    """A row queued by an older server, which sent commands without a directory."""
    cli(["run", "--exec", "--", "true"], {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=setup.project)
    wait_for(lambda: api(setup.server, setup.token, "GET", "/v1/tasks").json()["items"],
             what="the session's task")
    engine = create_engine(Settings(database_url=setup.db_url).sqlalchemy_url)
    now, command_id = utcnow(), uuid.uuid4()
    with engine.begin() as conn:
        user_id, machine_id = conn.execute(
            select(Task.user_id, Task.machine_id).join(User).where(
                Task.session_id == SESSION, User.email == setup.email)).one()
        conn.execute(insert(RelayCommand).values(
            id=command_id, user_id=user_id, machine_id=machine_id, session_id=SESSION,
            command="touch here", cwd=None, source="api", kind="shell", state="queued",
            deliveries=0, created_at=now, expires_at=now + timedelta(seconds=600)))
    engine.dispose()
    setup.agent.start()
    done = wait_for(lambda: (c := api(setup.server, setup.token, "GET",
                                      f"/v1/commands/{command_id}").json())["state"]
                    in ("done", "failed", "refused") and c, timeout=60, what="the result")
    assert done["state"] == "refused" and "directory" in done["detail"], done
    assert not (setup.own / "here").exists() and not (setup.project / "here").exists()
