"""``claude-notify agent``'s subcommands against a real server: ``register`` keeps a credential
that ``serve`` connects with (the keyring here, a file where there is none), the relay is off
until ``allow``, and a retired credential ends ``serve`` in one line."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloud_kit import Mailbox, wait_for
from helpers import CLI
from relay_kit import AgentProc, Server, cli, email, user_env


@pytest.fixture
def server(db_url: str, smtp_server: Mailbox) -> Iterator[Server]:
    srv = Server.make(db_url, smtp_server)
    srv.start()
    yield srv
    srv.stop()


class Serve(AgentProc):
    """``claude-notify agent serve`` rather than the bare ``agent``."""

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*CLI, "agent", "serve"], env=self.env, cwd=self.cwd,
                                         stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_for(lambda: self.text().count("agent: connected") >= self.starts, timeout=30,
                 what="the agent to connect")


@pytest.mark.parametrize("keyring", ["keyrings.alt.file.PlaintextKeyring",
                                     "keyring.backends.fail.Keyring"])
def test_register_allow_serve_and_a_retired_credential(server: Server, tmp_path: Path,
                                                      keyring: str) -> None:
    user = email("sub")
    token = server.admin("create-user", user, "--plan", "pro")
    env = user_env(tmp_path / "u", PYTHON_KEYRING_BACKEND=keyring)
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    registered = cli(["agent", "register"], env)
    where = "keyring" if "alt" in keyring else "file"
    assert registered.stdout.decode() == (f"registered this machine with {server.url} "
                                          f"(agent credential kept in the {where})\n")
    credential = tmp_path / "u/state/agent-token"
    assert credential.exists() == (where == "file")
    if where == "file":
        assert stat.S_IMODE(credential.stat().st_mode) == 0o600

    off = cli(["agent", "serve"], env, check=False)
    assert off.returncode == 2 and b"the relay is off on this machine" in off.stderr

    cli(["agent", "allow", "make *", "--dir", str(tmp_path)], env)
    agent = Serve(env=env, cwd=tmp_path, log=tmp_path / "agent.log")
    agent.start()  # connected with the credential register kept
    assert agent.proc is not None
    os.killpg(agent.proc.pid, signal.SIGTERM)
    assert agent.proc.wait(timeout=15) == 0

    server.admin("revoke", "--user", user)
    retired = cli(["agent", "serve"], env, check=False)
    assert retired.returncode == 1
    assert retired.stderr.count(b"\n") == 1
    assert b"refused this machine's agent credential" in retired.stderr
