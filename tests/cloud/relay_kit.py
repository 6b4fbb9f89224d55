"""Real processes for the relay tests: the server (`claude-notify server`), a user's CLI
environment logged in to it, and the agent (`claude-notify agent`) as a child process.

A module may share one server among its tests (started once per database, which saves a
process start of seconds per test): each test then signs up its own user (:func:`email`), so
what one test does is invisible to the next, and :meth:`Server.running` brings the server back
for the next test if one stopped it."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cloud_kit import Mailbox, free_port, wait_for

CLI = [sys.executable, "-m", "claude_notify"]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def make(cls, db_url: str, smtp: Mailbox, **extra: str) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
        env.update({"DATABASE_URL": db_url, "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE": "1",
                    "CLAUDE_NOTIFY_SERVER_SMTP_HOST": smtp.host,
                    "CLAUDE_NOTIFY_SERVER_SMTP_PORT": str(smtp.port),
                    "CLAUDE_NOTIFY_SERVER_SMTP_CA_FILE": smtp.ca_file,
                    "CLAUDE_NOTIFY_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "CLAUDE_NOTIFY_SERVER_RETRY_DELAYS_S": "0.2,0.5",
                    "CLAUDE_NOTIFY_SERVER_WORKER_POLL_S": "0.1",
                    "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                    "CLAUDE_NOTIFY_SERVER_RELAY_POLL_S": "1",
                    "CLAUDE_NOTIFY_SERVER_LOG_KEYS": "k1:" + base64.b64encode(b"k" * 32).decode()})
        env.update(extra)
        return cls(f"http://127.0.0.1:{port}", env, port)

    def start(self) -> None:
        self.proc = subprocess.Popen([*CLI, "server", "--port", str(self.port)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for(self._up, timeout=90, what="the server to answer /readyz")
        except BaseException:
            self.stop()  # not left running (and warned about) into the next tests
            raise

    def running(self) -> Server:
        """This server, started again if a test stopped it (for a server shared by tests)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self.start()
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):  # it died already
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
            self.proc = None

    def admin(self, *args: str) -> str:
        out = subprocess.run([*CLI, "server", *args], env=self.env, capture_output=True,
                             check=True, timeout=60)
        return out.stdout.decode().strip()


def email(who: str = "dev") -> str:
    """A new user's address: tests sharing a server never share an account."""
    return f"{who}-{uuid.uuid4().hex[:10]}@example.com"


def user_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_NOTIFY", "DBUS_", "SSH_")) and k != "DISPLAY"}
    env.update({"CLAUDE_NOTIFY_CONFIG": str(home / "config.toml"),
                "CLAUDE_NOTIFY_STATE_DIR": str(home / "state"),
                "CLAUDE_NOTIFY_DATA_DIR": str(home / "data"),
                "XDG_DATA_HOME": str(home / "xdg-data"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                "CLAUDE_NOTIFY_BACKEND": "terminal", "CLAUDE_NOTIFY_QUIET": "1"})
    env.update(extra)
    return env


def cli(args: list[str], env: dict[str, str], *, cwd: Path | None = None,
        stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([*CLI, *args], env=env, input=stdin, capture_output=True,
                            timeout=60, check=False, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: {result.returncode} {result.stderr.decode()}")
    return result


@dataclass
class AgentProc:
    """``claude-notify agent`` as a child process; its output goes to a file to read back."""

    env: dict[str, str]
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.proc = subprocess.Popen([*CLI, "agent"], env=self.env, cwd=self.cwd, stdout=out,
                                     stderr=out, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        wait_for(lambda: self.text().count("agent: connected") >= self.starts, timeout=30,
                 what="the agent to connect")

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None


def api(server: Server, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=10, **kwargs)
