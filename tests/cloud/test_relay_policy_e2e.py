"""The agent's policy with real processes, on SQLite and PostgreSQL: the server, the agent
(`claude-notify agent`), real make and git. What an allow-list's wildcards may not smuggle in —
a denied target among other words, an option that changes directory or runs code — is refused
by the agent and never runs; an everyday command still runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Mailbox, Receiver, wait_for
from relay_kit import AgentProc, Server, api, cli, user_env

SESSION = "tty:/dev/pts/9:4343"
MAKEFILE = "test:\n\techo ran >> runs.txt\ndeploy:\n\ttouch deployed\n"


@dataclass
class Machine:
    server: Server
    token: str
    project: Path
    elsewhere: Path
    agent: AgentProc

    def run(self, command: str) -> dict[str, Any]:
        """Queue ``command`` for the session; its audit row once the agent has settled it."""
        sent = api(self.server, self.token, "POST", "/v1/commands",
                   json={"session_id": SESSION, "command": command})
        assert sent.status_code == 202, sent.text
        command_id = sent.json()["id"]

        def settled() -> dict[str, Any] | None:
            rows = api(self.server, self.token, "GET", "/v1/audit").json()
            return next((r for r in rows if r["command_id"] == command_id
                         and r["outcome"] in ("done", "failed", "refused")), None)

        row: dict[str, Any] = wait_for(settled, timeout=60, what=f"{command!r} to settle")
        return row


@pytest.fixture
def machine(db_url: str, smtp_server: Mailbox, receiver: Receiver,
            tmp_path: Path) -> Iterator[Machine]:
    """An agent allowed `make *` and `git *` but not `make deploy` in a git project, with a
    makefile next to the project that would leave a marker."""
    server = Server.make(db_url, smtp_server)
    server.start()
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "Makefile").write_text(MAKEFILE)
    (elsewhere / "Makefile").write_text("all:\n\ttouch escaped\n")
    env = user_env(tmp_path / "user")
    subprocess.run(["git", "init", "-q"], cwd=project, env=env, check=True, timeout=60)
    token = server.admin("create-user", "dev@example.com", "--plan", "pro")
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    cli(["channels", "add", "webhook", receiver.url, "--on", "finished"], env)
    cli(["run", "--exec", "--", "true"], {**env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=project)
    receiver.wait(1, timeout=30)  # the server now knows the session's machine
    cli(["agent", "--register"], env)
    cli(["agent", "--allow", "make *", "--allow", "git *", "--deny", "make deploy *",
         "--dir", str(project)], env)
    agent = AgentProc(env, project, tmp_path / "agent.log")
    agent.start()
    yield Machine(server, token, project, elsewhere, agent)
    agent.stop()
    server.stop()


def test_what_a_wildcard_may_not_smuggle_in_is_refused_and_never_runs(machine: Machine) -> None:
    refused = {
        "make -k deploy": "matches the deny pattern 'make deploy *'",
        "make -C ../elsewhere": "make -C can change directory",
        "git -c 'alias.x=!touch pwned' x": "git -c can run another program",
        "make test 'SHELL=touch'": "make NAME=value",
    }
    for command, reason in refused.items():
        row = machine.run(command)
        assert (row["outcome"], row["actor"]) == ("refused", "agent"), row
        assert reason in row["reason"], row
    assert not (machine.project / "deployed").exists()
    assert not (machine.elsewhere / "escaped").exists()
    assert not (machine.project / "pwned").exists()
    assert not (machine.project / "runs.txt").exists()

    done = machine.run("make test")  # the everyday command, after all that
    assert done["outcome"] == "done", done
    assert (machine.project / "runs.txt").read_text() == "ran\n"
