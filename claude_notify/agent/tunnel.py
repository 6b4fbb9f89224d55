"""The agent's connection: connect, say hello, run what arrives, report, reconnect with backoff.

Each command is started as ``claude-notify run`` in the session's directory with the session's id,
so it gets its own task, log and notification exactly like one typed in that terminal. Before a
command starts, its id goes into the journal (on disk); a command that arrives again (a
reconnect, a restart of either side) is answered from the journal and never run twice. The
messages are those of :mod:`claude_notify.agent.wire`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from claude_notify.agent import policy, wire
from claude_notify.agent.approvals import Broker
from claude_notify.agent.store import AgentSettings, Journal
from claude_notify.errors import Rejected

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

HEARTBEAT_S = 15.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
RESTART_RETRY_S = 0.5
RESTART_WINDOW_S = 60.0
"""After a :data:`~claude_notify.agent.wire.RESTARTING` close, how long the agent retries every
:data:`RESTART_RETRY_S` (jittered, so a replica's agents do not arrive in one instant) before
falling back to its backoff: a new API process takes seconds to start, not minutes."""


def agent_url(server: str) -> str:
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{wire.PATH}"


@dataclass
class Agent:
    server: str
    token: str
    settings: AgentSettings
    journal: Journal
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    heartbeat_s: float = HEARTBEAT_S
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: T201
    running: dict[str, threading.Thread] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    approvals: Broker | None = None
    """Permission requests answered from the phone (``claude.approvals = "phone"``)."""
    _ws: ClientConnection | None = None
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def serve_forever(self) -> None:
        """Stay connected until :attr:`stop` is set; :class:`Rejected` ends it for good."""
        backoff = BACKOFF_MIN_S
        restart_until = 0.0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self._session()
            except Rejected:
                raise
            except Exception as exc:  # the network, the server restarting: try again
                if _restarting(exc):
                    self.log("agent: the server is restarting; reconnecting")
                    restart_until = time.monotonic() + RESTART_WINDOW_S
                else:
                    self.log(f"agent: connection lost ({type(exc).__name__}: {exc}); "
                             "reconnecting")
            if time.monotonic() - started > 60:
                backoff = BACKOFF_MIN_S  # it was up for a while: this is a new outage
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            if time.monotonic() < restart_until:
                self.stop.wait(RESTART_RETRY_S * jitter)
                continue
            self.stop.wait(backoff * jitter)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _session(self) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        host = (urlsplit(self.server).hostname or "").lower()
        loopback = host in ("127.0.0.1", "::1", "localhost")
        try:  # no per-message deflate: a zlib context per idle agent costs the server ~90 KB
            ws = connect(agent_url(self.server), open_timeout=10, ping_interval=None,
                         additional_headers={"Authorization": f"Bearer {self.token}"},
                         proxy=None if loopback else True, user_agent_header="claude-notify",
                         compression=None)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise Rejected("the server refused this machine's agent credential: run "
                               "`claude-notify agent register`") from None
            raise
        with ws:
            self._ws = ws
            try:
                self._converse(ws)
            finally:
                self._ws = None

    def _converse(self, ws: ClientConnection) -> None:
        unconfirmed = self.journal.unacknowledged()  # finished, the result not yet confirmed
        held = [*self.running, *(e["id"] for e in unconfirmed)]
        rules = self.settings
        self._send(wire.hello(
            running=held, sessions=sorted({self.env.get("CLAUDE_NOTIFY_SESSION_ID", "")} - {""}),
            policy={"allow": list(rules.allow), "deny": list(rules.deny),
                    "dirs": list(rules.dirs), "claude": rules.claude}))
        self.log("agent: connected")
        for entry in unconfirmed:
            self._send(_result(entry))
        for asked in self.approvals.pending() if self.approvals is not None else ():
            self._send(asked)
        last_heard = time.monotonic()
        while not self.stop.is_set():
            try:
                raw = ws.recv(timeout=self.heartbeat_s)
            except TimeoutError:
                if time.monotonic() - last_heard > 3 * self.heartbeat_s:
                    raise TimeoutError("no answer to heartbeats") from None
                self._send(wire.ping())
                continue
            last_heard = time.monotonic()
            message = json.loads(raw)
            if not isinstance(message, dict):
                continue
            if message.get("type") == wire.COMMAND:
                self._on_command(message)
            elif message.get("type") == wire.ACK:
                self.journal.record(str(message.get("id")), acked=True)
            elif message.get("type") == wire.DECISION and self.approvals is not None:
                self.approvals.decided(message)

    def _send(self, message: wire.Hello | wire.Started | wire.Result | wire.Ping
              | wire.Approval | wire.Withdraw) -> bool:
        """Send if connected; a result that cannot go now goes after the next hello."""
        ws = self._ws
        if ws is None:
            return False
        try:
            with self._send_lock:
                ws.send(json.dumps(message))
            return True
        except Exception:
            return False

    def _on_command(self, message: dict[str, Any]) -> None:
        command_id = str(message.get("id"))
        known = self.journal.get(command_id)
        if known is not None:  # sent again: never run twice
            if "state" in known:
                self._send(_result(known))
            elif command_id in self.running:
                self._send(wire.started(command_id))
            else:
                self._finish(command_id, state="failed", exit_code=None,
                             detail="the agent stopped during the run")
            return
        command = str(message.get("command") or "")
        cwd = message.get("cwd")
        if not isinstance(cwd, str) or not cwd:
            # Never this agent's own directory instead: the command belongs to its session's.
            detail = "no working directory came with the command"
            shown = "(claude reply)" if message.get("kind") == "claude" else command
            self.log(f"agent: refused {shown!r}: {detail}")
            self.journal.record(command_id, command=shown)
            self._finish(command_id, state="refused", exit_code=None, detail=detail)
            return
        if message.get("kind") == "claude":
            self._on_claude(command_id, message, command, cwd)
            return
        decision = policy.decide(command, cwd=cwd, allow=self.settings.allow,
                                 deny=self.settings.deny, dirs=self.settings.dirs)
        if decision.refused:
            self.log(f"agent: refused {command!r}: {decision.refused}")
            self.journal.record(command_id, command=command)
            self._finish(command_id, state="refused", exit_code=None, detail=decision.refused)
            return
        self.journal.record(command_id, command=command, started=time.time())
        self._send(wire.started(command_id))
        worker = threading.Thread(target=self._run, args=(command_id, message, decision),
                                  name=f"relay-{command_id[:8]}", daemon=True)
        self.running[command_id] = worker
        worker.start()

    def _on_claude(self, command_id: str, message: dict[str, Any], prompt: str,
                   cwd: str) -> None:
        from claude_notify.agent import claude

        session_id = str(message.get("session_id") or "")
        refused = claude.check(self.settings, session_id=session_id, prompt=prompt, cwd=cwd)
        if refused:
            self.log(f"agent: refused a Claude reply: {refused}")
            self.journal.record(command_id, command="(claude reply)")
            self._finish(command_id, state="refused", exit_code=None, detail=refused)
            return
        self.journal.record(command_id, command="(claude reply)", started=time.time())
        self._send(wire.started(command_id))
        where = policy.within(cwd, self.settings.dirs) or cwd
        worker = threading.Thread(target=self._run_claude,
                                  args=(command_id, session_id, prompt, where),
                                  name=f"relay-{command_id[:8]}", daemon=True)
        self.running[command_id] = worker
        worker.start()

    def _run_claude(self, command_id: str, session_id: str, prompt: str, cwd: str) -> None:
        from claude_notify.agent import claude

        self.log(f"agent: continuing Claude session {session_id} in {cwd}")
        began = time.monotonic()
        broker = self.approvals

        def approve(call: claude.Deferred) -> dict[str, Any]:
            """Put a deferred call to the owner (its id is the call's: asked again, say after
            a restart, the server answers with how it was decided)."""
            from claude_notify.agent.approvals import display
            from claude_notify.claude.approval import digest

            assert broker is not None  # noqa: S101 - passed only with one
            self.log(f"agent: asking the owner about {call.tool_name} ({call.tool_use_id})")
            return broker.wait_for(wire.approval(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{call.session_id}/{call.tool_use_id}")),
                session_id=call.session_id, tool_use_id=call.tool_use_id,
                tool_name=call.tool_name, digest=digest(call.tool_name, call.tool_input),
                display=display(call.tool_name, call.tool_input), cwd=cwd, suggestions=[],
                timeout_s=broker.timeout_s))

        try:
            turn = claude.resume(self.settings, session_id=session_id, prompt=prompt, cwd=cwd,
                                 env=self.env, approve=approve if broker is not None else None)
            claude.notify(turn, cwd=cwd, env=self.env, duration_s=time.monotonic() - began)
            self._finish(command_id, state="done" if turn.ok else "failed",
                         exit_code=0 if turn.ok else 1,
                         detail=f"session {turn.session_id}" if turn.ok else turn.detail)
        finally:
            self.running.pop(command_id, None)

    def _run(self, command_id: str, message: dict[str, Any], decision: policy.Decision) -> None:
        self.log(f"agent: running {message.get('command')!r} in {decision.cwd}")
        argv = [sys.executable, "-m", "claude_notify", "run"]
        argv += list(decision.argv) if decision.through_shell else ["--exec", "--", *decision.argv]
        env = dict(self.env)
        env["CLAUDE_NOTIFY_SESSION_ID"] = str(message.get("session_id") or "")
        env["CLAUDE_NOTIFY_RELAY_COMMAND_ID"] = command_id
        try:
            code = subprocess.run(argv, cwd=decision.cwd, env=env, stdin=subprocess.DEVNULL,
                                  check=False).returncode
        except OSError as exc:
            self._finish(command_id, state="failed", exit_code=None, detail=str(exc))
        else:
            self._finish(command_id, state="done" if code == 0 else "failed", exit_code=code,
                         detail=None if code == 0 else f"exit code {code}")
        finally:
            self.running.pop(command_id, None)

    def _finish(self, command_id: str, *, state: str, exit_code: int | None,
                detail: str | None) -> None:
        self.journal.record(command_id, state=state, exit_code=exit_code, detail=detail)
        entry = self.journal.get(command_id)
        if entry is not None:
            self._send(_result(entry))


def _restarting(exc: Exception) -> bool:
    """Whether the server closed the connection because it is restarting."""
    from websockets.exceptions import ConnectionClosed

    return (isinstance(exc, ConnectionClosed) and exc.rcvd is not None
            and exc.rcvd.code == wire.RESTARTING)


def _result(entry: dict[str, Any]) -> wire.Result:
    return wire.result(id=entry["id"], state=entry.get("state"),
                       exit_code=entry.get("exit_code"), detail=entry.get("detail"))
