"""The hook inside a relayed ``claude -p`` turn (the agent continuing a session from a reply):
tool calls that need the owner's approval are deferred, and answered on resume.

The agent runs ``claude -p`` with ``CLAUDE_NOTIFY_RELAY_DECISIONS`` naming a private directory.
There, ``claude-notify hook`` does only this:

* ``PreToolUse`` of a call nobody has decided on: ``defer`` — the run ends with
  ``terminal_reason: "tool_deferred"`` and nothing ran; the agent puts the call to the owner.
  Read-only tools and calls the machine's ``claude_allowed_tools`` or the user's own
  ``permissions.allow`` cover are not deferred: silence leaves them to Claude Code's own check,
  which is never more permissive than it would be without us.
* ``PreToolUse`` again, on resume, for the same ``tool_use_id``: with the owner's Deny stored
  for it, ``deny`` with the owner's words; with Allow, nothing — and the ``PermissionRequest``
  that Claude Code's own check may then raise is answered ``allow`` once, for a call with that
  digest only. ``PreToolUse`` never answers ``allow``: that would skip deny rules and the mode.
* Everything else (``Stop`` and the rest): nothing; the agent notifies the answer itself.

A decision is a file ``<tool_use_id>.json`` the agent wrote: ``{"digest", "state", "message"}``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from claude_notify.claude.approval import digest

DECISIONS_ENV: Final = "CLAUDE_NOTIFY_RELAY_DECISIONS"
ALLOWED_ENV: Final = "CLAUDE_NOTIFY_RELAY_ALLOWED"
NOT_DEFERRED: Final = frozenset({"Read", "Glob", "Grep", "LS", "NotebookRead", "TodoWrite",
                                 "TodoRead", "Task", "Agent", "ToolSearch"})
"""Tools that read or plan: left to Claude Code's own check (which asks for reads outside the
project, and is then refused in ``-p`` as before)."""
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_RULE = re.compile(r"^([A-Za-z0-9_.:-]+)(?:\((.*)\))?$", re.DOTALL)


def handle(payload: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    where = Path(env[DECISIONS_ENV])
    event = payload.get("hook_event_name")
    tool_name, tool_input = payload.get("tool_name"), payload.get("tool_input")
    if not isinstance(tool_name, str):
        return None
    own = digest(tool_name, tool_input)
    if event == "PreToolUse":
        return _pre_tool_use(where, payload, tool_name, tool_input, own, env)
    if event == "PermissionRequest" and _take(where / f"allow-{own}"):
        return _output("PermissionRequest", decision={"behavior": "allow"})
    return None


def _pre_tool_use(where: Path, payload: Mapping[str, Any], tool_name: str, tool_input: object,
                  own: str, env: Mapping[str, str]) -> str | None:
    tool_use_id = payload.get("tool_use_id")
    decided = _read(where / f"{_SAFE.sub('_', str(tool_use_id))[:128]}.json")
    if decided.get("digest") == own and decided.get("state") == "denied":
        return _output("PreToolUse", permissionDecision="deny",
                       permissionDecisionReason=str(decided.get("message") or "Denied"))
    if decided.get("digest") == own and decided.get("state") == "allowed":
        # Once: Claude Code's own check may ask; our PermissionRequest answer is waiting there.
        (where / f"allow-{own}").write_text("", encoding="utf-8")
        return None
    if tool_name in NOT_DEFERRED or covered(tool_name, tool_input, _rules(env)):
        return None
    return _output("PreToolUse", permissionDecision="defer")


def covered(tool_name: str, tool_input: object, rules: list[str]) -> bool:
    """Whether an allow rule (Claude Code's syntax: ``Tool``, ``Bash(prefix:*)``,
    ``Bash(git diff *)``, ``Edit(src/**)``) covers the call. Approximate on purpose, and only
    ever used to *not* defer: Claude Code's own check still applies to what is not deferred."""
    values = tool_input if isinstance(tool_input, dict) else {}
    subject = next((values[k] for k in ("command", "file_path", "path", "url", "pattern")
                    if isinstance(values.get(k), str)), None)
    for rule in rules:
        match = _RULE.match(rule.strip())
        if match is None or match.group(1) != tool_name:
            continue
        spec = match.group(2)
        if spec is None:
            return True
        if subject is None:
            continue
        if spec.endswith(":*") and subject.startswith(spec[:-2]):
            return True
        if subject == spec or ("*" in spec and fnmatch.fnmatchcase(subject, spec)):
            return True
    return False


def _rules(env: Mapping[str, str]) -> list[str]:
    """The machine's ``claude_allowed_tools`` (from the agent) and the user's own allow rules."""
    try:
        rules = json.loads(env.get(ALLOWED_ENV) or "[]")
    except ValueError:
        rules = []
    base = env.get("CLAUDE_CONFIG_DIR")
    home = Path(base).expanduser() if base else Path(env.get("HOME") or Path.home()) / ".claude"
    user = _read(home / "settings.json").get("permissions")
    allow = user.get("allow") if isinstance(user, dict) else None
    found = [*(rules if isinstance(rules, list) else []), *(allow or [])]
    return [r for r in found if isinstance(r, str)]


def _take(path: Path) -> bool:
    """Consume a one-shot file: of two hooks racing for it, one gets it."""
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _output(event: str, **fields: Any) -> str:
    return json.dumps({"hookSpecificOutput": {"hookEventName": event, **fields}})


def write_decision(where: Path, *, tool_use_id: str, call_digest: str, state: str,
                   message: str | None = None) -> None:
    """The agent's side: record the owner's answer for the resumed run's hook."""
    name = f"{_SAFE.sub('_', tool_use_id)[:128]}.json"
    tmp = where / f".{name}.tmp"
    tmp.write_text(json.dumps({"digest": call_digest, "state": state, "message": message}),
                   encoding="utf-8")
    tmp.replace(where / name)
