"""The agent's half of answering permission requests from the phone.

The hook (:mod:`claude_notify.claude.approval`) connects to a Unix socket the agent listens on
(its directory 0700, the socket 0600: only this user's processes reach it), sends one request
and waits for one answer. For ``ask`` the agent files an approval over its tunnel and waits for
the server's decision, at most ``claude.approval_timeout``; for ``withdraw`` it tells the server
the session moved on and lets go of any hook still waiting there. Not connected, or nothing
decided in time: the answer is empty, and the terminal's dialog decides.

What the phone shows is built here from the tool's input, literally: the command, or the file
and a summary of the change; never the model's description of it.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from claude_notify.agent import wire
from claude_notify.claude.approval import (
    PLAN,
    QUESTION,
    digest,
    questions_of,
    session_suggestions,
)

DISPLAY_CHARS: Final = 2000
LABEL_CHARS: Final = 100
HEADER_CHARS: Final = 40
REQUEST_BYTES: Final = 4 * 1024 * 1024
HANGUP_POLL_S: Final = 0.25
"""How often a waiting request checks that its hook is still there."""


def display(tool_name: str, tool_input: dict[str, Any]) -> str:
    """What the call does, for the owner to judge: literal, bounded."""
    def text(key: str) -> str:
        value = tool_input.get(key)
        return value if isinstance(value, str) else ""

    if tool_name == PLAN:
        shown = text("plan") or "(Claude wrote no plan: it asks to stop planning)"
    elif tool_name == QUESTION and (questions := questions_of(tool_input)) is not None:
        shown = "\n\n".join(_question(n, q, many=len(questions) > 1)
                             for n, q in enumerate(questions, 1))
    elif tool_name == "Bash" and text("command"):
        shown = text("command")
    elif tool_name in ("Edit", "MultiEdit") and text("file_path"):
        edits = tool_input.get("edits") if tool_name == "MultiEdit" else [tool_input]
        lines = [text("file_path")]
        for edit in edits if isinstance(edits, list) else []:
            if isinstance(edit, dict):
                old, new = str(edit.get("old_string") or ""), str(edit.get("new_string") or "")
                lines += list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                   lineterm="", n=1))[2:]
        shown = "\n".join(lines)
    elif tool_name == "Write" and text("file_path"):
        content = text("content")
        shown = (f"{text('file_path')}\n(write {len(content.splitlines())} lines)\n"
                 + content[:600])
    else:
        shown = json.dumps(tool_input, ensure_ascii=False, sort_keys=True, indent=1)
    return shown if len(shown) <= DISPLAY_CHARS else shown[:DISPLAY_CHARS - 1] + "…"


def _question(n: int, question: dict[str, Any], *, many: bool) -> str:
    """One question as the owner reads it: its text, then its options numbered, each with
    Claude's description of it."""
    header = question["header"] if isinstance(question["header"], str) else ""
    head = (f"{n}. " if many else "") + (f"[{header}] " if header else "") + question["question"]
    lines = [head + (" (choose any)" if question["multiSelect"] else "")]
    for i, option in enumerate(question["options"], 1):
        described = option.get("description")
        lines.append(f"  {i}) {option['label']}" + (
            f" — {described}" if isinstance(described, str) and described else ""))
    return "\n".join(lines)


def shape(tool_name: str, tool_input: dict[str, Any]) -> list[wire.Question] | None:
    """What the phone needs to offer a question's options as buttons (short labels only; the
    questions themselves are in ``display``); ``None`` for any other call."""
    questions = questions_of(tool_input) if tool_name == QUESTION else None
    if questions is None:
        return None
    return [wire.question(header=(q["header"] if isinstance(q["header"], str) else "")[
        :HEADER_CHARS], options=[label[:LABEL_CHARS] for label in q["labels"]],
        multi=q["multiSelect"]) for q in questions]


def label(suggestion: dict[str, Any]) -> str:
    """A one-line label for an "always" answer Claude offered."""
    rules = suggestion.get("rules")
    if isinstance(rules, list):
        names = [f"{r.get('toolName')}({r.get('ruleContent')})" if r.get("ruleContent")
                 else str(r.get("toolName")) for r in rules if isinstance(r, dict)]
        return ", ".join(names)[:200]
    if isinstance(suggestion.get("directories"), list):
        return "directories " + ", ".join(map(str, suggestion["directories"]))[:180]
    return str(suggestion.get("type") or "always")[:200]


@dataclass
class _Waiter:
    digest: str
    session_id: str
    message: wire.Approval
    tool_name: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Broker:
    """The socket and the approvals waiting on the server's answer."""

    path: Path
    timeout_s: float
    send: Callable[[wire.Approval | wire.Withdraw], bool]
    """Send over the tunnel; ``False`` when not connected."""
    log: Callable[[str], None]
    waiting: dict[str, _Waiter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    def start(self) -> None:
        """Listen (a stale socket of an agent that died is replaced; the agent lock makes sure
        no other agent of this state is running)."""
        if sys.platform == "win32":
            self.log("agent: approvals from the phone need Unix sockets; off on this system")
        else:  # a platform branch: mypy skips it elsewhere
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                server.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)  # noqa: PTH101 - the socket, whatever the umask did
            server.listen(64)
            self._server = server
            threading.Thread(target=self._accept, name="approvals", daemon=True).start()
            self.log(f"agent: approvals from the phone on ({self.path})")

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
        with self._lock:
            for waiter in self.waiting.values():
                waiter.done.set()

    def _accept(self) -> None:
        server = self._server
        while server is not None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n") and len(data) < REQUEST_BYTES:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                answer = self.handle(request, gone=lambda: _hung_up(conn)) if isinstance(
                    request, dict) else {}
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except (OSError, ValueError) as exc:
                self.log(f"agent: approval request: {type(exc).__name__}: {exc}")

    def handle(self, request: dict[str, Any], *,
               gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        if request.get("op") == "withdraw":
            return self.withdraw(request)
        if request.get("op") == "ask":
            return self.ask(request, gone=gone)
        if request.get("op") == "pending":
            with self._lock:
                count = sum(w.session_id == request.get("session_id")
                            for w in self.waiting.values())
            return {"pending": count}
        return {}

    def ask(self, request: dict[str, Any], *,
            gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """File the request and wait for its answer (``{}``: none; the dialog decides)."""
        tool_name, tool_input = request.get("tool_name"), request.get("tool_input")
        session_id = request.get("session_id")
        if not (isinstance(tool_name, str) and isinstance(tool_input, dict)
                and isinstance(session_id, str)):
            return {}
        raw = request.get("suggestions")
        # Approving a plan or answering a question never comes with "always": it changes no rule.
        offered = session_suggestions(raw if isinstance(raw, list) and tool_name not in (
            PLAN, QUESTION) else [])
        questions = shape(tool_name, tool_input)
        if tool_name == QUESTION and questions is None:
            return {}  # beyond what the phone can answer: the terminal asks
        cwd = request.get("cwd")
        message = wire.approval(
            id=str(uuid.uuid4()), session_id=session_id, tool_use_id=None, tool_name=tool_name,
            digest=digest(tool_name, tool_input), display=display(tool_name, tool_input),
            cwd=cwd if isinstance(cwd, str) else None,
            suggestions=[label(s) for s in offered], timeout_s=self.timeout_s,
            questions=questions)
        return self.wait_for(message, gone=gone)

    def wait_for(self, message: wire.Approval, *,
                 gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """File ``message`` and wait for the server's decision (``{}``: none in time, not
        connected, or ``gone()`` said the asker left)."""
        approval_id = message["id"]
        waiter = _Waiter(message["digest"], message["session_id"], message,
                         message["tool_name"])
        with self._lock:
            self.waiting[approval_id] = waiter
        try:
            if not self.send(message):
                return {}  # not connected: nobody can answer from a phone now
            deadline = time.monotonic() + self.timeout_s
            while not waiter.done.wait(min(HANGUP_POLL_S, max(deadline - time.monotonic(), 0))):
                if time.monotonic() >= deadline:
                    self.send(wire.withdraw(id=approval_id, reason="expired"))
                    return {}
                if gone():  # Claude Code ended the hook (Esc at the dialog, the session quit)
                    self.send(wire.withdraw(id=approval_id, reason="terminal"))
                    return {}
            return waiter.answer
        finally:
            with self._lock:
                self.waiting.pop(approval_id, None)

    def withdraw(self, request: dict[str, Any]) -> dict[str, Any]:
        """The session moved on at the terminal: tell the server, let its waiting hooks go."""
        session_id = request.get("session_id")
        wanted = request.get("digest")
        tool = request.get("tool_name")
        if not isinstance(session_id, str):
            return {}
        wanted = wanted if isinstance(wanted, str) else None
        tool = tool if isinstance(tool, str) and wanted is None else None
        with self._lock:
            mine = [w for w in self.waiting.values() if w.session_id == session_id
                    and (wanted is None or w.digest == wanted)
                    and (tool is None or w.tool_name == tool)]
        if not mine:
            return {"withdrawn": 0}
        self.send(wire.withdraw(session_id=session_id, digest=wanted, tool_name=tool))
        for waiter in mine:
            waiter.done.set()  # answer nothing: the terminal decided
        return {"withdrawn": len(mine)}

    def decided(self, message: Mapping[str, Any]) -> None:
        """The server's :data:`~claude_notify.agent.wire.DECISION`."""
        with self._lock:
            waiter = self.waiting.get(str(message.get("id")))
        if waiter is None:
            return
        if message.get("state") == "unavailable":
            self.log(f"agent: no phone to ask: {message.get('detail')}")
        waiter.answer = dict(message)
        waiter.done.set()

    def pending(self) -> list[wire.Approval]:
        """What is still waiting, to file again after a reconnect (the server files an id
        once, and answers at once one that was decided meanwhile)."""
        with self._lock:
            return [w.message for w in self.waiting.values() if not w.done.is_set()]


def _hung_up(conn: socket.socket) -> bool:
    """Whether the hook closed its end (it sends one request, then only waits)."""
    import select

    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
