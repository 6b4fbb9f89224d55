"""The agent's approval socket and the hook's half, on a real Unix socket, with the tunnel
replaced by a recording one (what would go to the server, and the server's answers fed back).

Proves: the socket is 0600; the hook prints nothing, quickly, when no agent listens, the agent
is not connected, or the request is malformed; an answer reaches the hook only for its own call;
a withdrawal from the session lets a waiting hook go silently; a hook that goes away withdraws
its request; no answer in time withdraws it as expired. What it does not prove: the server's
side (tests/cloud/test_approvals.py) or Claude Code's (tests/cloud/test_approvals_e2e.py).
"""

from __future__ import annotations

import json
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_notify.agent import wire
from claude_notify.agent.approvals import Broker
from claude_notify.claude import approval

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")
SESSION = "0b8e4a52-3c1d-4f7e-9a61-2f4d5e6c7b80"
PAYLOAD = {"session_id": SESSION, "hook_event_name": "PermissionRequest", "cwd": "/srv/p",
           "tool_name": "Bash", "tool_input": {"command": "make deploy"}}


class Tunnel:
    """Stands in for the agent's connection: records what it sends; ``up`` says connected."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.up = True
        self.cond = threading.Condition()

    def send(self, message: wire.Approval | wire.Withdraw) -> bool:
        with self.cond:
            if self.up:
                self.sent.append(dict(message))
                self.cond.notify_all()
            return self.up

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.sent) >= n, timeout), self.sent
            return list(self.sent)


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """Short: a Unix socket's path has a ~100-byte limit, and pytest's tmp paths can be long."""
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="cn-"))
    yield {"CLAUDE_NOTIFY_AGENT_SOCKET": str(where / "s" / "agent.sock")}
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def broker(env: dict[str, str]) -> Iterator[tuple[Broker, Tunnel]]:
    tunnel = Tunnel()
    made = Broker(path=Path(env["CLAUDE_NOTIFY_AGENT_SOCKET"]), timeout_s=30, send=tunnel.send,
                  log=lambda line: None)
    made.start()
    yield made, tunnel
    made.close()


def _ask(env: dict[str, str], payload: dict[str, Any] = PAYLOAD) -> tuple[list[str | None],
                                                                          threading.Thread]:
    out: list[str | None] = []
    thread = threading.Thread(target=lambda: out.append(approval.ask(payload, env)))
    thread.start()
    return out, thread


def test_the_socket_is_private_and_an_answer_applies_to_its_own_call_only(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    made, tunnel = broker
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.path.parent.stat().st_mode) == 0o700
    out, thread = _ask(env)
    [filed] = tunnel.wait(1)
    assert (filed["type"], filed["display"], filed["session_id"]) == ("approval", "make deploy",
                                                                      SESSION)
    assert filed["digest"] == approval.digest("Bash", {"command": "make deploy"})
    # An answer made for another call (a mixed-up server, a stale answer): not printed.
    made.decided(wire.decision(id=filed["id"], state="allowed", digest="0" * 64))
    thread.join(10)
    assert out == [None]

    out, thread = _ask(env)
    [_, again] = tunnel.wait(2)
    made.decided(wire.decision(id=again["id"], state="denied", digest=again["digest"],
                               note="not now", by="Telegram"))
    thread.join(10)
    assert json.loads(out[0] or "{}") == {"hookSpecificOutput": {
        "hookEventName": "PermissionRequest",
        "decision": {"behavior": "deny", "message": "Denied from Telegram by the owner: not now"}}}


def test_the_terminal_moving_on_lets_the_hook_go_silently(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    _, tunnel = broker
    out, thread = _ask(env)
    [filed] = tunnel.wait(1)
    began = time.monotonic()
    approval.withdraw({"hook_event_name": "PostToolUse", "session_id": SESSION,
                       "tool_name": "Bash", "tool_input": {"command": "make deploy"}}, env)
    thread.join(10)
    assert out == [None] and time.monotonic() - began < 2
    withdrawn = tunnel.wait(2)[1]
    assert (withdrawn["type"], withdrawn["session_id"], withdrawn["digest"]) == (
        "withdraw", SESSION, filed["digest"])
    # Another call's PostToolUse withdraws nothing.
    out, thread = _ask(env)
    tunnel.wait(3)
    approval.withdraw({"hook_event_name": "PostToolUse", "session_id": SESSION,
                       "tool_name": "Bash", "tool_input": {"command": "ls"}}, env)
    assert thread.is_alive() and len(tunnel.sent) == 3
    approval.withdraw({"hook_event_name": "Stop", "session_id": SESSION}, env)  # all of them
    thread.join(10)
    assert out == [None]


def test_a_hook_that_goes_away_withdraws_and_no_answer_in_time_expires(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    made, tunnel = broker
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(env["CLAUDE_NOTIFY_AGENT_SOCKET"])
        conn.sendall(json.dumps({"op": "ask", **PAYLOAD}).encode() + b"\n")
        tunnel.wait(1)
    gone = tunnel.wait(2)[1]  # closed: Claude Code ended the hook
    assert (gone["type"], gone["reason"]) == ("withdraw", "terminal")

    made.timeout_s = 0.5
    began = time.monotonic()
    out, thread = _ask(env)
    thread.join(10)
    assert out == [None] and 0.5 <= time.monotonic() - began < 5
    expired = tunnel.wait(4)[3]
    assert (expired["type"], expired["reason"]) == ("withdraw", "expired")


def test_no_agent_or_not_connected_is_a_quick_silence(
    broker: tuple[Broker, Tunnel], env: dict[str, str], tmp_path: Path
) -> None:
    made, tunnel = broker
    tunnel.up = False
    began = time.monotonic()
    assert approval.ask(PAYLOAD, env) is None
    assert approval.ask(PAYLOAD, {"CLAUDE_NOTIFY_AGENT_SOCKET": str(tmp_path / "none")}) is None
    stale = tmp_path / "stale.sock"  # an agent killed without cleaning up
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))
    assert approval.ask(PAYLOAD, {"CLAUDE_NOTIFY_AGENT_SOCKET": str(stale)}) is None
    assert time.monotonic() - began < 1.0
    for bad in (b"not json\n", b"[]\n", json.dumps({"op": "ask"}).encode() + b"\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(made.path))
            conn.sendall(bad)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            assert conn.recv(100) in (b"{}\n", b"")
    assert tunnel.sent == []
