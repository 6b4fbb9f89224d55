"""The hook's half of answering permission requests from the phone: ask the local agent, and
turn its answer into Claude Code's ``PermissionRequest`` decision.

The hook holds no credential: it talks only to the agent running as the same user, over a Unix
socket in a directory only that user can enter (the socket itself 0600). The agent asks the
server and waits; the hook waits on the agent. Whatever goes wrong (no agent, no answer, an
answer for another call) ends in printing nothing, which leaves the decision to the terminal's
dialog as if claude-notify were not there.

Stdlib only, and light to import (``hashlib`` and ``socket`` load only once there is an agent to
ask): the hook runs on every tool call.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

WAIT_CAP_S: Final = 3600.0
"""The hook's own limit on waiting: Claude Code kills it earlier (``approval_timeout`` + 15 s),
and the agent answers at ``approval_timeout``."""
CONNECT_S: Final = 0.5
DIGEST_EVENTS: Final = frozenset({"PostToolUse", "PostToolUseFailure"})
"""Of the events that withdraw (``claude.hook.WITHDRAWING``), those about one call: only that
call's approval is withdrawn; the others withdraw all of the session's."""


def digest(tool_name: str, tool_input: object) -> str:
    """SHA-256 of the call's canonical JSON: an answer is applied only to the call it was for."""
    import hashlib

    canonical = json.dumps([tool_name, tool_input], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the agent listens: ``$CLAUDE_NOTIFY_AGENT_SOCKET``; with a state dir of its own (a
    second setup, the tests) inside it; else ``$XDG_RUNTIME_DIR/claude-notify/agent.sock``
    (private to the user, gone at logout); else in the state dir."""
    env = os.environ if env is None else env
    if explicit := env.get("CLAUDE_NOTIFY_AGENT_SOCKET"):
        return Path(explicit)
    if state := env.get("CLAUDE_NOTIFY_STATE_DIR"):
        return Path(state).expanduser() / "agent.sock"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):  # noqa: PTH117 - the XDG rule, as paths.py reads it
        return Path(runtime) / "claude-notify" / "agent.sock"
    from claude_notify.paths import state_dir

    return state_dir() / "agent.sock"


def _call(request: dict[str, Any], *, wait_s: float, env: Mapping[str, str]) -> dict[str, Any]:
    """One request to the agent and its one-line answer; ``{}`` when there is no agent."""
    if sys.platform == "win32":
        return {}  # no agent socket there: the dialog decides
    else:  # a platform branch: mypy skips it elsewhere
        path = socket_path(env)
        if not path.exists():
            return {}
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(CONNECT_S)
            try:
                conn.connect(str(path))
                conn.sendall(json.dumps(request).encode() + b"\n")
                conn.settimeout(wait_s)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:  # no agent listening, or it went away
                return {}
        try:
            answer = json.loads(data)
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}


def ask(payload: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The decision JSON for a ``PermissionRequest`` answered from the phone, else ``None``."""
    tool_name, tool_input = payload.get("tool_name"), payload.get("tool_input")
    if not isinstance(tool_name, str) or not isinstance(tool_input, dict):
        return None
    own = digest(tool_name, tool_input)
    suggestions = payload.get("permission_suggestions")
    suggestions = suggestions if isinstance(suggestions, list) else []
    answer = _call({"op": "ask", "session_id": payload.get("session_id"),
                    "tool_name": tool_name, "tool_input": tool_input, "digest": own,
                    "suggestions": suggestions, "cwd": payload.get("cwd")},
                   wait_s=WAIT_CAP_S, env=env)
    return decision_output(answer, own=own, suggestions=suggestions)


def decision_output(answer: Mapping[str, Any], *, own: str,
                    suggestions: list[Any]) -> str | None:
    """Claude Code's JSON for the agent's answer, only if it is an answer for this very call."""
    if answer.get("digest") != own:
        return None
    state = answer.get("state")
    if state == "allowed":
        decision: dict[str, Any] = {"behavior": "allow"}
        index = answer.get("suggestion")
        if isinstance(index, int) and not isinstance(index, bool):
            offered = session_suggestions(suggestions)
            if not 0 <= index < len(offered):
                return None  # an "always" we did not offer: not applied, not guessed
            decision["updatedPermissions"] = [offered[index]]
    elif state == "denied":
        by = answer.get("by") if isinstance(answer.get("by"), str) else "the phone"
        note = answer.get("note") if isinstance(answer.get("note"), str) else ""
        message = f"Denied from {by} by the owner" + (f": {note}" if note else "")
        decision = {"behavior": "deny", "message": message}
    else:
        return None
    return json.dumps({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
                                              "decision": decision}})


PICKABLE: Final = frozenset({"addRules", "addDirectories"})
"""The kinds of "always" a phone may pick: a rule or a directory, never a change of the whole
session's permission mode (Claude Code also offers ``setMode``)."""


def session_suggestions(suggestions: list[Any]) -> list[dict[str, Any]]:
    """The ``permission_suggestions`` entries the phone may pick, verbatim: rules or directories
    that last for this session only (a phone should not write the user's settings files)."""
    return [s for s in suggestions if isinstance(s, dict) and s.get("destination") == "session"
            and s.get("type") in PICKABLE]


def withdraw(payload: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Tell the agent the session moved on (cheap: nothing happens without an agent)."""
    event = payload.get("hook_event_name")
    request: dict[str, Any] = {"op": "withdraw", "session_id": payload.get("session_id")}
    if event in DIGEST_EVENTS:
        tool_name, tool_input = payload.get("tool_name"), payload.get("tool_input")
        if not isinstance(tool_name, str):
            return
        request["digest"] = digest(tool_name, tool_input)
    _call(request, wait_s=1.0, env=env)


def pending(payload: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """Whether a permission request of this session is waiting for the phone (its card is the
    phone's notification; nothing when no agent listens)."""
    answer = _call({"op": "pending", "session_id": payload.get("session_id")}, wait_s=1.0,
                   env=env)
    count = answer.get("pending")
    return isinstance(count, int) and count > 0


def agent_listening(env: Mapping[str, str]) -> bool:
    """Whether an agent answers on the socket (for ``claude status``)."""
    return "pending" in _call({"op": "pending", "session_id": ""}, wait_s=1.0, env=env)
