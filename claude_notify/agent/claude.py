"""Continuing a Claude Code conversation from a reply: ``claude -p --resume`` in the session's
directory, the reply on stdin, nothing of the repository's own configuration in force, the
answer back as a notification.

The reply never reaches the argument list (one starting with ``--`` would become an option); the
session id must be a UUID for the same reason. ``-p`` skips the trust dialog, so whatever a
repository holds (say, after a ``git pull``) would apply unasked: ``--setting-sources user``
ignores its ``.claude/settings.json`` and ``settings.local.json`` (their hooks, ``apiKeyHelper``,
``env`` and ``permissions.allow``), ``--strict-mcp-config`` starts none of its ``.mcp.json``
servers (nor any other: the agent passes no ``--mcp-config``), and ``--settings
'{"disableAllHooks":true}'`` keeps hooks off altogether. The permission mode and allowed tools
come from this machine's settings only, and ``bypassPermissions`` is refused. The answer goes
out through the same sinks as any task (desktop, history, cloud) as a "Claude finished" event of
the (possibly new) session id Claude returned, so a reply to it continues again.

With approvals from the phone on (``claude.approvals = "phone"``), the turn runs with our own hook
instead of none (``--settings`` names a file holding only it; see
:mod:`claude_notify.claude.deferral`): a tool call that needs approval is deferred, the run ends
with ``tool_deferred``, the owner is asked, and the session is resumed with the answer — Allow
runs the call once, Deny hands Claude the owner's refusal, no answer in time is a refusal too.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from claude_notify.agent import policy
from claude_notify.agent.store import AgentSettings
from claude_notify.config import CLAUDE_PERMISSION_MODES

MODES: Final = CLAUDE_PERMISSION_MODES
TIMEOUT_S: Final = 3600.0
DEFERRALS: Final = 20
"""Tool calls one relayed turn may put to the owner before it is ended."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """A tool call a relayed turn deferred: what to put to the owner."""

    session_id: str
    tool_use_id: str
    tool_name: str
    tool_input: dict[str, Any]


Approve = Callable[[Deferred], dict[str, Any]]
"""Asks the owner; the server's decision (``state``, ``note``, ``by``), or ``{}`` for none."""


@dataclass(frozen=True, slots=True)
class ClaudeReply:
    """What one resumed turn of ``claude -p`` answered: its text, the (possibly new) session id
    to continue from, or why it failed (``detail``)."""

    ok: bool
    session_id: str
    answer: str
    detail: str = ""


def check(settings: AgentSettings, *, session_id: str, prompt: str, cwd: str) -> str:
    """Why this machine will not continue the session, or ``""``."""
    if not settings.claude:
        return "Claude carry-over is off on this machine (claude-notify agent set --claude)"
    if settings.claude_permission_mode not in MODES:
        return f"permission mode {settings.claude_permission_mode!r} is not allowed for replies"
    try:
        uuid.UUID(session_id)
    except ValueError:
        return "not a Claude Code session id"
    if not prompt.strip():
        return "empty reply"
    if policy.within(cwd, settings.dirs) is None:
        return f"working directory {cwd!r} is not one this agent may use"
    return ""


def build_argv(settings: AgentSettings, session_id: str,
               hook_settings: Path | None = None) -> list[str]:
    """``hook_settings``: the file holding only our deferring hook; without one, no hooks."""
    hooks = str(hook_settings) if hook_settings else json.dumps({"disableAllHooks": True})
    argv = [settings.claude_bin, "-p", "--resume", session_id, "--output-format", "json",
            "--setting-sources", "user", "--strict-mcp-config", "--settings", hooks,
            "--permission-mode", settings.claude_permission_mode]
    if settings.claude_allowed_tools:
        argv += ["--allowedTools", ",".join(settings.claude_allowed_tools)]
    return argv


def deferring_settings() -> dict[str, Any]:
    """Claude Code settings with only our hook, on the two events a relayed turn needs."""
    command = f"{shlex.quote(sys.executable)} -m claude_notify hook"
    handler = {"type": "command", "command": command, "timeout": 30}
    return {"hooks": {"PreToolUse": [{"hooks": [handler]}],
                      "PermissionRequest": [{"hooks": [handler]}]}}


def resume(settings: AgentSettings, *, session_id: str, prompt: str, cwd: str,
           env: Mapping[str, str], approve: Approve | None = None) -> ClaudeReply:
    """Run one turn; the result object's answer and session id. With ``approve``, calls that
    need approval are deferred and put to the owner, and the turn resumed with the answer."""
    if approve is None:
        return _interpret(*_run(build_argv(settings, session_id), prompt, cwd, env),
                          session_id=session_id)
    from claude_notify.claude.approval import digest
    from claude_notify.claude.deferral import ALLOWED_ENV, DECISIONS_ENV, write_decision

    with tempfile.TemporaryDirectory(prefix="claude-notify-relay-") as scratch:
        where = Path(scratch)  # 0700, this user's: the decisions are not for other users
        hooks = where / "settings.json"
        hooks.write_text(json.dumps(deferring_settings()), encoding="utf-8")
        run_env = {**env, DECISIONS_ENV: str(where / "decisions"),
                   ALLOWED_ENV: json.dumps(list(settings.claude_allowed_tools))}
        (where / "decisions").mkdir(mode=0o700)
        asked: set[str] = set()
        current, text = session_id, prompt
        for _ in range(DEFERRALS + 1):
            code, out, err = _run(build_argv(settings, current, hooks), text, cwd, run_env)
            call = _deferred(out)
            if call is None:
                return _interpret(code, out, err, session_id=current)
            if call.tool_use_id in asked:  # the same call again: its answer did not apply
                return ClaudeReply(ok=False, session_id=call.session_id, answer="",
                                   detail=f"{call.tool_name} was deferred again after an answer")
            asked.add(call.tool_use_id)
            answer = approve(call)
            state = answer.get("state")
            note = answer.get("note") if isinstance(answer.get("note"), str) else ""
            by = answer.get("by") if isinstance(answer.get("by"), str) else "the phone"
            message = (f"Denied from {by} by the owner" + (f": {note}" if note else "")
                       if state == "denied" else "Not approved from the phone in time")
            write_decision(where / "decisions", tool_use_id=call.tool_use_id,
                           call_digest=digest(call.tool_name, call.tool_input),
                           state="allowed" if state == "allowed" else "denied",
                           message=None if state == "allowed" else message)
            current, text = call.session_id, ""
        return ClaudeReply(ok=False, session_id=current, answer="",
                           detail=f"more than {DEFERRALS} tool calls asked for approval")


def _run(argv: list[str], prompt: str, cwd: str,
         env: Mapping[str, str]) -> tuple[int | None, bytes, str]:
    try:
        done = subprocess.run(argv, input=prompt.encode(), cwd=cwd, env=dict(env),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, b"", f"claude: {exc}"
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


def _deferred(out: bytes) -> Deferred | None:
    """The call a run deferred (``terminal_reason: "tool_deferred"``), else ``None``."""
    try:
        result = json.loads(out)
    except ValueError:
        return None
    if not isinstance(result, dict) or "tool_deferred" not in (
            result.get("terminal_reason"), result.get("stop_reason")):
        return None
    call, session_id = result.get("deferred_tool_use"), result.get("session_id")
    if not (isinstance(call, dict) and isinstance(call.get("id"), str)
            and isinstance(call.get("name"), str) and isinstance(session_id, str)):
        return None
    given = call.get("input")
    tool_input: dict[str, Any] = given if isinstance(given, dict) else {}
    return Deferred(session_id=session_id, tool_use_id=call["id"], tool_name=call["name"],
                    tool_input=tool_input)


def _interpret(code: int | None, out: bytes, err: str, *, session_id: str) -> ClaudeReply:
    if code is None:
        return ClaudeReply(ok=False, session_id=session_id, answer="", detail=err)
    try:
        result: Any = json.loads(out)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return ClaudeReply(ok=False, session_id=session_id, answer="",
                           detail=f"claude exited {code} without a result: {err.strip()[-300:]}")
    answer = str(result.get("result") or "")
    new_id = result.get("session_id")
    ok = code == 0 and not result.get("is_error")
    detail = "" if ok else f"claude: {result.get('subtype')}: {answer[:300]}"
    continued = new_id if isinstance(new_id, str) and new_id else session_id
    return ClaudeReply(ok=ok, session_id=continued, answer=answer, detail=detail)


def notify(turn: ClaudeReply, *, cwd: str, env: Mapping[str, str], duration_s: float) -> None:
    """Claude's answer as the next "Claude finished" notification (desktop, history, cloud),
    for the session id Claude returned, so a reply to it continues the conversation."""
    from dataclasses import replace
    from pathlib import Path

    from claude_notify import config as config_mod
    from claude_notify.dispatch import Dispatcher
    from claude_notify.events import TaskEvent, host_name, new_id, utcnow
    from claude_notify.identity import machine_id

    project = Path(cwd).name or "Claude Code"
    text = (turn.answer or turn.detail).strip()
    event = TaskEvent(type="finished", source="claude-code", session_id=turn.session_id,
                      machine_id=machine_id(), task_id=new_id(), cwd=cwd, host=host_name(),
                      command=f"claude · {project}", ended_at=utcnow(), duration_s=duration_s,
                      status="success" if turn.ok else "failure",
                      message=text if len(text) <= 400 else text[:399].rstrip() + "…")
    mark = "✓ Claude answered" if turn.ok else "✗ Claude could not answer"
    event = replace(event, title=f"{mark} in {project}")
    dispatcher = Dispatcher(config_mod.load(env), env, quiet=True)
    dispatcher.emit(event, on="always", min_duration=0.0)
