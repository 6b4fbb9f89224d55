"""Claude Code's ``settings.json`` files: find them, merge our hook entries in and take them out.

These files belong to the user (and to Claude Code, which rewrites them too), so an edit here is
surgical: only handlers whose command runs ``claude-notify … hook`` are ever added, changed or
removed; every other key, hook and ordering stays as it was. Our entries are recognised by their
command, not by a marker key, because Claude Code validates the settings schema and an unknown
key could make it reject the whole file.

The document is edited by pure functions (:func:`install_hooks`, :func:`uninstall_hooks`) that a
property test can drive, and written by :mod:`claude_notify.claude.jsonfile`: a broken file is
refused untouched, a timestamped backup is taken, and the new text replaces the old atomically
with the same mode.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from claude_notify.claude import jsonfile
from claude_notify.claude.jsonfile import Edit, JSONObject, kind
from claude_notify.errors import ConfigError, UsageError

Scope = Literal["user", "project", "local"]
SCOPES: Final[tuple[Scope, ...]] = ("user", "project", "local")

EVENTS: Final[tuple[str, ...]] = (
    "Notification", "Stop", "StopFailure", "UserPromptSubmit", "PreToolUse", "SubagentStop",
    "PermissionRequest", "PostToolUse", "PostToolUseFailure", "SessionEnd",
)
"""Every event ``claude-notify hook`` handles, in the order new entries are written."""
DEFAULT_EVENTS: Final[tuple[str, ...]] = EVENTS[:5]
"""``UserPromptSubmit`` and ``PreToolUse`` notify nothing: they time turns and cancel a pending
debounced ``Stop``. ``SubagentStop`` is opt-in: subagents stop often."""
APPROVAL_EVENTS: Final[tuple[str, ...]] = EVENTS[6:]
"""Added with ``claude.approvals = "phone"``: ``PermissionRequest`` waits for the phone; the
others tell the agent the session moved on (the dialog was answered at the terminal)."""

MATCHERS: Final[Mapping[str, str]] = {
    # auth_success, elicitation_complete, … are not moments the user must come back for.
    "Notification": "permission_prompt|idle_prompt|elicitation_dialog",
}
TIMEOUT: Final = 10
"""Seconds. The hook returns in well under one; this caps a wedged one far below the 600 s default.
Not ``async``: Claude Code kills async hooks at teardown under ``-p``, before ours could detach."""
APPROVAL_GRACE: Final = 15
"""Seconds ``PermissionRequest``'s own timeout adds to ``claude.approval_timeout``: the agent
answers (or gives up) first, and Claude Code's default, which has changed between versions, is
never relied on."""


def approval_hook_timeout(approval_timeout: float) -> int:
    return int(approval_timeout) + APPROVAL_GRACE



# -- where the files are --------------------------------------------------------------------------


def settings_path(
    scope: Scope, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path:
    """The file Claude Code reads for ``scope``; the user file honours ``$CLAUDE_CONFIG_DIR``."""
    env = os.environ if env is None else env
    if scope == "user":
        base = env.get("CLAUDE_CONFIG_DIR")
        return (Path(base).expanduser() if base else Path.home() / ".claude") / "settings.json"
    name = "settings.json" if scope == "project" else "settings.local.json"
    return (cwd or Path.cwd()) / ".claude" / name


def hook_command(
    *,
    scope: Scope = "user",
    executable: str = sys.executable,
    which: Callable[..., str | None] = shutil.which,
) -> str:
    """The shell command Claude Code should run for our hook.

    An absolute path, so it works when Claude Code's ``PATH`` lacks the venv or pipx bin dir:
    first the script installed beside this interpreter (the copy that is running now), then the
    one on ``PATH``, then ``python -m claude_notify``. The project file is shared through git, so
    it gets the bare name, which works on every teammate's machine that has claude-notify.
    """
    if scope == "project":
        return "claude-notify hook"
    script = which("claude-notify", path=str(Path(executable).parent)) or which("claude-notify")
    if script:
        return f"{shlex.quote(str(Path(script).absolute()))} hook"
    return f"{shlex.quote(executable)} -m claude_notify hook"


# -- recognising our entries -------------------------------------------------------------------


_OUR_PROGRAMS: Final = frozenset({"claude-notify", "claude-notify.exe"})


def is_ours(handler: object) -> bool:
    """True for a command handler that runs ``claude-notify hook`` in any spelling we write.

    Accepted: ``claude-notify hook``, an absolute or quoted path to it (``/`` or ``\\``), with
    ``.exe``, ``python -m claude_notify hook``. The command is split without POSIX escapes so a
    Windows path survives; a user's own script that merely mentions claude-notify is not ours.
    """
    if not isinstance(handler, dict) or handler.get("type", "command") != "command":
        return False
    command = handler.get("command")
    if not isinstance(command, str):
        return False
    try:
        words = [w.strip("'\"") for w in shlex.split(command, posix=False)]
    except ValueError:
        words = command.split()
    if len(words) < 2 or words[-1] != "hook":
        return False
    program = re.split(r"[/\\]", words[-2])[-1].lower()
    return program in _OUR_PROGRAMS or words[-3:-1] == ["-m", "claude_notify"]


def installed_events(doc: JSONObject) -> dict[str, list[str]]:
    """``{event: [our commands]}`` for every event that has one of our handlers."""
    found: dict[str, list[str]] = {}
    for event, groups in _hooks(doc).items():
        for group in groups:
            for handler in group["hooks"]:
                if is_ours(handler):
                    found.setdefault(event, []).append(handler["command"])
    return found


# -- the pure edits ------------------------------------------------------------------------------


def our_handler(command: str, timeout: int = TIMEOUT) -> JSONObject:
    """The handler object we write, always in this form so a reinstall compares equal."""
    return {"type": "command", "command": command, "timeout": timeout}


def install_hooks(doc: JSONObject, *, command: str, events: Sequence[str],
                  timeouts: Mapping[str, int] | None = None) -> JSONObject:
    """A copy of ``doc`` with exactly one handler of ours for each of ``events``, none elsewhere.

    An existing entry of ours is updated where it stands, so installing twice changes nothing
    and a reinstall after an upgrade keeps the user's ordering. New entries go last.
    """
    doc = copy.deepcopy(doc)
    hooks = _hooks(doc)
    for event in list(hooks):
        if event not in events:
            _remove_ours(hooks, event)
    for event in events:
        _ensure_ours(hooks, event, our_handler(command, (timeouts or {}).get(event, TIMEOUT)))
    if hooks and "hooks" not in doc:
        doc["hooks"] = hooks
    return doc


def uninstall_hooks(doc: JSONObject) -> JSONObject:
    """A copy of ``doc`` without our handlers, and without the groups, arrays and ``hooks`` object
    that our removal emptied; the user's own empty ones (holding nothing of ours) stay."""
    doc = copy.deepcopy(doc)
    hooks = _hooks(doc)
    emptied = [event for event in list(hooks) if _remove_ours(hooks, event)]
    if emptied and not hooks and "hooks" in doc:
        del doc["hooks"]
    return doc


def _ensure_ours(hooks: JSONObject, event: str, wanted: JSONObject) -> None:
    groups: list[Any] = hooks.setdefault(event, [])
    matcher = MATCHERS.get(event)
    home = next((g for g in groups if any(is_ours(h) for h in g["hooks"])), None)
    if home is not None and len(home["hooks"]) == 1:
        # Alone in its group: the group is ours too, so its matcher can follow ours.
        home["hooks"][0] = wanted
        if matcher is None:
            home.pop("matcher", None)
        else:
            home["matcher"] = matcher
        kept = home
    else:
        # Absent, or sharing a group with the user's handlers, whose matcher is not ours to set.
        kept = {"matcher": matcher, "hooks": [wanted]} if matcher else {"hooks": [wanted]}
        groups.append(kept)
    _remove_ours(hooks, event, keep=kept)


def _remove_ours(hooks: JSONObject, event: str, *, keep: object = None) -> bool:
    """Drop our handlers under ``event`` (except in group ``keep``), then the groups and the
    array they emptied. True if the event's array was deleted."""
    groups = hooks[event]
    remaining = []
    for group in groups:
        if group is keep:
            remaining.append(group)
            continue
        handlers = [h for h in group["hooks"] if not is_ours(h)]
        if handlers or len(handlers) == len(group["hooks"]):
            group["hooks"] = handlers
            remaining.append(group)
    if len(remaining) == len(groups):
        return False
    if remaining:
        groups[:] = remaining
        return False
    del hooks[event]
    return True


def _hooks(doc: JSONObject) -> JSONObject:
    """``doc["hooks"]`` (a new empty object if absent), checked to have the documented shape.

    Raises ``ValueError`` naming the first misshapen place, for :func:`load` to report.
    """
    hooks = doc.get("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError(f"'hooks' is {kind(hooks)}, expected an object")
    for event, groups in hooks.items():
        where = f"hooks.{event}"
        if not isinstance(groups, list):
            raise ValueError(f"{where!r} is {kind(groups)}, expected an array")
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise ValueError(f"'{where}[{i}]' is {kind(group)}, expected an object")
            if "hooks" not in group:
                raise ValueError(f"'{where}[{i}]' has no 'hooks' array")
            if not isinstance(group["hooks"], list):
                raise ValueError(
                    f"'{where}[{i}].hooks' is {kind(group['hooks'])}, expected an array")
    return hooks


# -- reading and writing the file ----------------------------------------------------------------


def load(path: Path) -> tuple[JSONObject, bytes | None]:
    """The parsed document and the bytes it came from (``{}``, ``None`` if there is no file);
    a :class:`ConfigError` for what we could not rewrite faithfully (see
    :func:`jsonfile.load`), hooks not in the documented shape included."""
    return jsonfile.load(path, check=_hooks)


def edit(path: Path, change: Callable[[JSONObject], JSONObject]) -> Edit:
    """Apply ``change`` to the document in ``path`` and write it back safely (see
    :func:`jsonfile.edit`)."""
    return jsonfile.edit(path, change, check=_hooks)


# -- what the commands call ---------------------------------------------------------------------


def parse_events(specs: Sequence[str]) -> tuple[str, ...]:
    """``--events`` values: names or comma lists, any case; ``default`` and ``all`` expand.

    Returned in :data:`EVENTS` order so the file's layout does not depend on the flag's.
    """
    if not specs:
        return DEFAULT_EVENTS
    by_lower = {e.lower(): e for e in EVENTS}
    chosen: set[str] = set()
    for spec in specs:
        for word in filter(None, (w.strip() for w in spec.split(","))):
            if word.lower() == "default":
                chosen.update(DEFAULT_EVENTS)
            elif word.lower() == "all":
                chosen.update(e for e in EVENTS if e not in APPROVAL_EVENTS)
            elif word.lower() in by_lower:
                chosen.add(by_lower[word.lower()])
            else:
                raise UsageError(
                    f"unknown event {word!r}; choose from {', '.join(EVENTS)}, default or all")
    if not chosen:
        raise UsageError("--events names no event")
    return tuple(e for e in EVENTS if e in chosen)


def install(path: Path, *, command: str, events: Sequence[str],
            timeouts: Mapping[str, int] | None = None) -> Edit:
    """Merge our handlers for ``events`` into ``path`` (created if missing)."""
    return edit(path, lambda doc: install_hooks(doc, command=command, events=events,
                                                timeouts=timeouts))


def uninstall(path: Path) -> Edit:
    """Take our handlers out of ``path``; a missing file is left missing."""
    try:
        path.stat()
    except FileNotFoundError:  # absent, or a dangling link: nothing of ours in it
        return Edit(path, changed=False)
    except OSError:
        pass  # a symlink loop: edit() says so
    return edit(path, uninstall_hooks)


@dataclass(frozen=True, slots=True)
class FileStatus:
    """What one settings file holds of ours, for ``claude status``."""

    scope: Scope
    path: Path
    exists: bool
    events: dict[str, list[str]]
    """``{event: [our commands]}``."""
    error: str = ""
    """Why the file cannot be read; empty when it can."""


def inspect(scope: Scope, path: Path) -> FileStatus:
    """Read ``path`` without changing it."""
    try:
        doc, raw = load(path)
    except ConfigError as exc:
        return FileStatus(scope, path, exists=True, events={}, error=exc.message)
    return FileStatus(scope, path, exists=raw is not None, events=installed_events(doc))


def command_missing(command: str) -> str | None:
    """The program of a hook command when it no longer exists (a deleted venv), else ``None``."""
    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        return None
    if os.sep in program or "/" in program:
        return None if Path(program).exists() else program
    return None if shutil.which(program) else program
