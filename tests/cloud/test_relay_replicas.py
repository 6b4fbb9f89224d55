"""Two API replicas on PostgreSQL and Redis, as real processes: a command posted to one reaches the
agent connected to the other at once (a Redis wake-up, not the agents' minute-long poll)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from cloud_kit import wait_for
from relay_kit import AgentProc, Server, api, cli, user_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
SESSION = "tty:/dev/pts/9:99"


def test_a_command_posted_to_one_replica_runs_on_an_agent_of_the_other(
    replicas: tuple[Server, Server], tmp_path: Path
) -> None:
    posted_to, connected_to = replicas
    token = posted_to.admin("create-user", "dev@example.com", "--plan", "pro")
    env = user_env(tmp_path / "user")
    cli(["login", "--server", connected_to.url, "--token"], env, stdin=token.encode() + b"\n")
    project = tmp_path / "project"
    project.mkdir()
    cli(["run", "--exec", "--", "true"], {**env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=project)
    cli(["sync"], env)
    wait_for(lambda: api(posted_to, token, "GET", "/v1/tasks").json()["items"],
             what="the session's task")
    cli(["agent", "--register"], env)
    cli(["agent", "--allow", "touch *", "--dir", str(project)], env)
    agent = AgentProc(env, project, tmp_path / "agent.log")
    agent.start()
    try:
        posted = time.monotonic()
        made = httpx.post(f"{posted_to.url}/v1/commands", timeout=10,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"session_id": SESSION, "command": "touch across"})
        assert made.status_code == 202, made.text
        wait_for(lambda: (project / "across").exists(), timeout=30, what="the command to run")
        assert time.monotonic() - posted < 30  # the agents' own poll is two minutes
        done = wait_for(lambda: (c := api(posted_to, token, "GET",
                                          f"/v1/commands/{made.json()['id']}").json())
                        ["state"] == "done" and c, what="the result")
        assert done["exit_code"] == 0
    finally:
        agent.stop()
