"""Claude Code's ``settings.json`` files: find them, merge our hook entries in and take them out.

These files belong to the user (and to Claude Code, which rewrites them too), so an edit here is
surgical: only handlers whose command runs ``claude-notify … hook`` are ever added, changed or
removed; every other key, hook and ordering stays as it was. Our entries are recognised by their
command, not by a marker key, because Claude Code validates the settings schema and an unknown
key could make it reject the whole file.

The document is edited by pure functions (:func:`install_hooks`, :func:`uninstall_hooks`) that a
property test can drive, and written by :func:`edit`: a broken file is refused untouched, a
timestamped backup is taken, and the new text replaces the old atomically with the same mode.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import shutil
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from claude_notify.errors import ConfigError, UsageError
from claude_notify.fsutil import atomic_write

Scope = Literal["user", "project", "local"]
SCOPES: Final[tuple[Scope, ...]] = ("user", "project", "local")

EVENTS: Final[tuple[str, ...]] = (
    "Notification", "Stop", "StopFailure", "UserPromptSubmit", "PreToolUse", "SubagentStop",
)
"""Every event ``claude-notify hook`` handles, in the order new entries are written."""
DEFAULT_EVENTS: Final[tuple[str, ...]] = EVENTS[:5]
"""``UserPromptSubmit`` and ``PreToolUse`` notify nothing: they time turns and cancel a pending
debounced ``Stop``. ``SubagentStop`` is opt-in: subagents stop often."""

MATCHERS: Final[Mapping[str, str]] = {
    # auth_success, elicitation_complete, … are not moments the user must come back for.
    "Notification": "permission_prompt|idle_prompt|elicitation_dialog",
}
TIMEOUT: Final = 10
"""Seconds. The hook returns in well under one; this caps a wedged one far below the 600 s default.
Not ``async``: Claude Code kills async hooks at teardown under ``-p``, before ours could detach."""

JSONObject = dict[str, Any]


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


def our_handler(command: str) -> JSONObject:
    """The handler object we write, always in this form so a reinstall compares equal."""
    return {"type": "command", "command": command, "timeout": TIMEOUT}


def install_hooks(doc: JSONObject, *, command: str, events: Sequence[str]) -> JSONObject:
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
        _ensure_ours(hooks, event, command)
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


def _ensure_ours(hooks: JSONObject, event: str, command: str) -> None:
    groups: list[Any] = hooks.setdefault(event, [])
    wanted = our_handler(command)
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
        raise ValueError(f"'hooks' is {_kind(hooks)}, expected an object")
    for event, groups in hooks.items():
        where = f"hooks.{event}"
        if not isinstance(groups, list):
            raise ValueError(f"{where!r} is {_kind(groups)}, expected an array")
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise ValueError(f"'{where}[{i}]' is {_kind(group)}, expected an object")
            if "hooks" not in group:
                raise ValueError(f"'{where}[{i}]' has no 'hooks' array")
            if not isinstance(group["hooks"], list):
                raise ValueError(
                    f"'{where}[{i}].hooks' is {_kind(group['hooks'])}, expected an array")
    return hooks


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             type(None): "null", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


# -- reading and writing the file ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """What :func:`edit` did to one file."""

    path: Path
    changed: bool
    """False when the document already was as asked: nothing was written, no backup taken."""
    backup: Path | None = None
    """The copy of the previous bytes; ``None`` if unchanged or the file did not exist."""


def load(path: Path) -> tuple[JSONObject, bytes | None]:
    """The parsed document and the bytes it came from (``{}``, ``None`` if there is no file).

    Everything we could not rewrite faithfully is a :class:`ConfigError` naming the file: not
    UTF-8, not JSON (including ``NaN`` and numbers beyond a double), not an object, or hooks not
    in the documented shape.
    """
    try:
        raw = _read_regular(path)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        doc = (json.loads(text, parse_constant=_no_constant, parse_float=_finite)
               if text.strip() else {})
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level is {_kind(doc)}, expected an object")
    try:
        _hooks(doc)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return doc, raw


MAX_BYTES: Final = 16 << 20
"""Far beyond any real settings file; a bigger one is not read into memory."""


def _read_regular(path: Path) -> bytes:
    """The file's bytes, refusing what is not a regular file: a FIFO would block the read for
    ever (opened non-blocking, it is seen and refused), a device never ends."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES >> 20} MB")
        return f.read(MAX_BYTES + 1)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large to keep")
    return value


def edit(path: Path, change: Callable[[JSONObject], JSONObject]) -> Edit:
    """Apply ``change`` to the document in ``path`` and write it back safely.

    Refuses a broken file untouched. If the file changes under us (Claude Code writes it too), the
    edit starts over from the new content instead of overwriting it.
    """
    try:  # keep a dotfiles symlink a symlink
        target = path.resolve(strict=True) if path.is_symlink() else path
    except FileNotFoundError:
        target = path.resolve()  # a dangling link: write where it points
    except (OSError, RuntimeError):  # a loop: RuntimeError before Python 3.13, then OSError
        raise ConfigError(f"{path}: a loop of symbolic links; fix it by hand, nothing was "
                          "changed") from None
    for _attempt in range(5):
        try:
            doc, raw = load(target)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message}; fix it by hand, nothing was changed") from None
        new = change(doc)
        # json.dumps, not ==: key order counts for the user, and == takes 1 for true.
        if raw is not None and json.dumps(new) == json.dumps(doc):
            return Edit(path, changed=False)
        like = raw.decode("utf-8") if raw and raw.strip() else None
        done = _commit(target, _dump(new, like=like), expected=raw, backup_beside=path)
        if done is not None:
            return done
    raise ConfigError(f"{path}: keeps changing while we edit it; try again")


def _dump(doc: JSONObject, *, like: str | None) -> str:
    """JSON text in the style of ``like`` (the old text): its indent, line ends, final newline."""
    indent: int | str = 2
    if like is not None:
        m = re.match(r"\s*\{[ \t]*\r?\n([ \t]+)\S", like)
        if m:
            indent = m.group(1)
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    if like is None or like.endswith("\n"):
        text += "\n"
    if like is not None and "\r\n" in like:
        text = text.replace("\n", "\r\n")
    return text


def _commit(target: Path, text: str, *, expected: bytes | None, backup_beside: Path) -> Edit | None:
    """Write ``text`` to a temporary file; then, if ``target`` still holds ``expected``, back the
    old bytes up and ``os.replace`` the new file in. ``None`` (nothing changed) if it moved on."""
    # A new settings file may soon hold tokens (`env`, `apiKeyHelper`); an old one keeps its mode.
    mode = 0o600 if expected is None else target.stat().st_mode & 0o777
    backup: list[Path] = []

    def unchanged_since_read() -> bool:
        current = target.read_bytes() if target.exists() else None
        if current != expected:
            return False
        if expected is not None:
            backup.append(_backup(backup_beside, expected, mode))
        return True

    try:
        if not atomic_write(target, text, mode=mode, before_replace=unchanged_since_read):
            return None
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return Edit(backup_beside, changed=True, backup=backup[0] if backup else None)


def _backup(path: Path, data: bytes, mode: int) -> Path:
    """``settings.json.20261124-042659.bak`` beside ``path``, never overwriting an older one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        candidate = path.with_name(f"{path.name}.{stamp}{'' if n == 1 else f'-{n}'}.bak")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return candidate
    raise ConfigError(f"{path}: too many backups from this second; try again")


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
                chosen.update(EVENTS)
            elif word.lower() in by_lower:
                chosen.add(by_lower[word.lower()])
            else:
                raise UsageError(
                    f"unknown event {word!r}; choose from {', '.join(EVENTS)}, default or all")
    if not chosen:
        raise UsageError("--events names no event")
    return tuple(e for e in EVENTS if e in chosen)


def install(path: Path, *, command: str, events: Sequence[str]) -> Edit:
    """Merge our handlers for ``events`` into ``path`` (created if missing)."""
    return edit(path, lambda doc: install_hooks(doc, command=command, events=events))


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
