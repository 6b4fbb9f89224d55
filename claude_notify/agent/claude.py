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
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from claude_notify.agent import policy
from claude_notify.agent.store import AgentSettings
from claude_notify.config import CLAUDE_PERMISSION_MODES

MODES: Final = CLAUDE_PERMISSION_MODES
TIMEOUT_S: Final = 3600.0


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


def build_argv(settings: AgentSettings, session_id: str) -> list[str]:
    argv = [settings.claude_bin, "-p", "--resume", session_id, "--output-format", "json",
            "--setting-sources", "user", "--strict-mcp-config",
            "--settings", json.dumps({"disableAllHooks": True}),
            "--permission-mode", settings.claude_permission_mode]
    if settings.claude_allowed_tools:
        argv += ["--allowedTools", ",".join(settings.claude_allowed_tools)]
    return argv


def resume(settings: AgentSettings, *, session_id: str, prompt: str, cwd: str,
           env: Mapping[str, str]) -> ClaudeReply:
    """Run one turn; the result object's answer and session id."""
    try:
        done = subprocess.run(build_argv(settings, session_id), input=prompt.encode(), cwd=cwd,
                              env=dict(env), capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ClaudeReply(ok=False, session_id=session_id, answer="", detail=f"claude: {exc}")
    try:
        result: Any = json.loads(done.stdout)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        tail = done.stderr.decode(errors="replace").strip()[-300:]
        return ClaudeReply(ok=False, session_id=session_id, answer="",
                           detail=f"claude exited {done.returncode} without a result: {tail}")
    answer = str(result.get("result") or "")
    new_id = result.get("session_id")
    ok = done.returncode == 0 and not result.get("is_error")
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
