"""Settings: defaults, the TOML file, ``CLAUDE_NOTIFY_*`` variables and flags, in that order.

Precedence is flag > env > file > default, and every value remembers where it came from so
``config show`` can say it. The file is read with ``tomllib`` (``tomli`` before 3.11), the fastest
correct parser and one that costs nothing to import when no file exists; ``tomlkit`` is imported
only to write, because it keeps the user's comments and layout.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from claude_notify.errors import ConfigError, UsageError
from claude_notify.paths import config_path


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``500ms``, ``30s``, ``5m``, ``2h`` or ``1h30m``."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0 or value != value:  # NaN is not a duration
            raise ValueError(f"not a duration: {text!r}")
        return value
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(raw) or pos == 0:
        raise ValueError(f"not a duration: {text!r} (try 30s, 5m, 1h30m)")
    return total


_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise ValueError("expected true or false")


_BOOL_WORDS: Final = {"1": True, "true": True, "yes": True, "on": True,
                      "0": False, "false": False, "no": False, "off": False}


def as_duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration such as 30s or 5m")


def _as_size(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(b|kb|k|kib|mb|m|mib)?\s*", value.lower())
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2) or "b"]
    raise ValueError("expected a size such as 10240 or 10KB")


_SIZE_UNITS: Final = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024,
                      "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def _quiet_hours(value: object) -> str:
    from claude_notify.mute import parse_hours

    text = _as_str(value)
    parse_hours(text)
    return text.strip()


def _as_list(value: object) -> tuple[str, ...]:
    """A TOML array of strings, or a comma-separated string (how env variables spell it)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def _as_thresholds(value: object) -> dict[str, float]:
    """Per-command thresholds: ``{make = "0s", cargo = "1m"}`` or ``make=0s,cargo=1m``."""
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("expected NAME=DURATION pairs, e.g. make=0s,cargo=1m")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ValueError("expected a table of command = duration")
    return {str(k): as_duration(v) for k, v in value.items()}


def _choice(*allowed: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        text = _as_str(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return check


CLAUDE_PERMISSION_MODES: Final = ("default", "acceptEdits", "plan", "dontAsk", "auto")
"""What a relayed Claude reply may run with; never ``bypassPermissions``."""


def _permission_mode(value: object) -> str:
    text = _as_str(value).strip()
    for mode in CLAUDE_PERMISSION_MODES:
        if text.lower() == mode.lower():
            return mode
    if text.lower() == "bypasspermissions":
        raise ValueError("never bypassPermissions: relayed replies keep Claude Code's prompts")
    raise ValueError(f"expected one of {', '.join(CLAUDE_PERMISSION_MODES)}")


def _as_dirs(value: object) -> tuple[str, ...]:
    """Absolute directories (``~`` expanded): a relative one would depend on where the agent
    was started."""
    dirs = []
    for item in _as_list(value):
        path = Path(item).expanduser()
        if not path.is_absolute():
            raise ValueError(f"{item!r} is not an absolute directory")
        dirs.append(os.path.normpath(path))
    return tuple(dict.fromkeys(dirs))


def _non_empty(value: object) -> str:
    text = _as_str(value).strip()
    if not text:
        raise ValueError("expected a non-empty string")
    return text


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: its default, how to read a raw value, and what it is for."""

    key: str
    default: Any
    convert: Callable[[object], Any]
    help: str


SETTINGS: Final[Mapping[str, Setting]] = {
    s.key: s
    for s in (
        Setting("backend", "auto", _as_str, "notification backend, or auto"),
        Setting("on", "exit", _choice("exit", "success", "failure", "never"),
                "when `run` notifies"),
        Setting("min_duration", 0.0, as_duration,
                "do not notify for tasks shorter than this"),
        Setting("urgency", "auto", _choice("auto", "low", "normal", "critical"),
                "auto means failure_urgency on failure, normal otherwise"),
        Setting("failure_urgency", "critical", _choice("low", "normal", "critical"),
                "a failure's urgency when urgency is auto (critical stays until dismissed)"),
        Setting("sound", "none", _as_str, "a sound file, a sound name, or none"),
        Setting("icon", "", _as_str, "an icon file or icon name"),
        Setting("actions", True, _as_bool,
                "offer Show log and a click that focuses the terminal (freedesktop)"),
        Setting("title", "", _as_str, "title template (empty: the default)"),
        Setting("message", "", _as_str, "body template (empty: the default)"),
        Setting("tail_bytes", 10240, _as_size, "output kept for notifications and events"),
        Setting("tail_lines", 6, _as_size, "output lines shown in the notification body"),
        Setting("timeout", 2.0, as_duration, "longest time spent delivering a notification"),
        Setting("match_interval", 30.0, as_duration,
                "least time between two --match notifications"),
        Setting("quiet_hours", "", _quiet_hours, "local hours with no notifications, 22:00-07:00"),
        Setting("history.keep", 5000, _as_size, "tasks kept in the history (0 turns it off)"),
        Setting("shell.threshold", 30.0, as_duration,
                "shell integration: notify for commands longer than this"),
        Setting("shell.commands", {}, _as_thresholds,
                "per-command thresholds, e.g. {make = \"0s\"} to always notify for make"),
        Setting("shell.ignore", ("vim", "vi", "nvim", "nano", "emacs", "less", "more", "man",
                                 "ssh", "mosh", "tmux", "screen", "top", "htop", "btop",
                                 "watch", "claude", "fg", "bg", "git log"),
                _as_list, "commands never notified by the shell integration"),
        Setting("shell.allow", (), _as_list,
                "commands notified even when they match shell.ignore"),
        Setting("shell.failure_urgency", "normal", _choice("low", "normal", "critical"),
                "a failed command's urgency from the shell integration, which notifies "
                "without being asked each time"),
        Setting("shell.unfocused_only", True, _as_bool,
                "notify only when the terminal is not focused, where that can be told"),
        Setting("claude.debounce", 3.0, as_duration,
                "wait this long after Claude stops before notifying"),
        Setting("claude.min_duration", 0.0, as_duration,
                "do not notify for Claude turns shorter than this"),
        Setting("claude.subagents", False, _as_bool, "also notify when a subagent stops"),
        Setting("claude.approvals", "off", _choice("off", "phone"),
                "answer Claude's permission requests from the phone too (needs the agent)"),
        Setting("claude.approval_timeout", 600.0, as_duration,
                "how long a permission request waits for the phone before the terminal decides"),
        Setting("cloud.enabled", True, _as_bool,
                "forward events to the hosted backend once logged in"),
        Setting("cloud.channels", (), _as_list,
                "channels the backend should use (empty: your channels' own rules)"),
        Setting("agent.allow", (), _as_list,
                "command relay: commands this machine runs (`make *`, `./next.sh`); turns it on"),
        Setting("agent.deny", (), _as_list,
                "command relay: commands never run, even when allowed"),
        Setting("agent.dirs", (), _as_dirs,
                "command relay: directories commands may run in (and below)"),
        Setting("agent.claude", False, _as_bool,
                "command relay: a reply to \"Claude finished\" continues that session"),
        Setting("agent.claude_bin", "claude", _non_empty,
                "command relay: the claude executable"),
        Setting("agent.claude_permission_mode", "default", _permission_mode,
                "command relay: Claude Code's permission mode for replies"),
        Setting("agent.claude_allowed_tools", (), _as_list,
                "command relay: Claude Code's --allowedTools for replies"),
        Setting("terminal.sequence", "auto", _choice("auto", "99", "777", "9", "bell"),
                "escape sequence for the terminal backend"),
        Setting("terminal.bell", True, _as_bool, "ring the bell with terminal notifications"),
    )
}


@dataclass(frozen=True, slots=True)
class Value:
    """A resolved setting and where it came from."""

    value: Any
    source: str
    """``default``, ``env CLAUDE_NOTIFY_X``, ``<path>:<line>`` or ``flag --x``."""


def env_name(key: str) -> str:
    """``terminal.bell`` is set by ``CLAUDE_NOTIFY_TERMINAL_BELL``."""
    return "CLAUDE_NOTIFY_" + key.replace(".", "_").upper()


class Config:
    """Resolved settings with their sources. Built once per command."""

    def __init__(self, values: dict[str, Value], path: Path,
                 problems: tuple[str, ...] = ()) -> None:
        self._values = values
        self.path = path
        self.problems = problems
        """What a lenient :func:`load` left at its default, one line each."""

    def __getitem__(self, key: str) -> Any:
        return self._values[key].value

    def source(self, key: str) -> str:
        return self._values[key].source

    def items(self) -> list[tuple[str, Value]]:
        return sorted(self._values.items())

    def with_flags(self, flags: Mapping[str, tuple[object, str]]) -> Config:
        """A copy with command-line values on top: ``{key: (raw value, "--flag")}``."""
        values = dict(self._values)
        for key, (raw, flag) in flags.items():
            try:
                values[key] = Value(SETTINGS[key].convert(raw), f"flag {flag}")
            except ValueError as exc:
                raise UsageError(f"{flag}: {exc}") from None
        return Config(values, self.path, self.problems)


def load(env: Mapping[str, str] | None = None, *, lenient: bool = False) -> Config:
    """Resolve every setting from defaults, the file and the environment.

    A broken file, key or value is a :class:`ConfigError`; ``lenient`` instead keeps the default
    for what is broken and lists it in :attr:`Config.problems` — ``run`` must run the command
    whatever a typo in the file says (flags are still checked: they were typed for this run).
    """
    env = os.environ if env is None else env
    path = config_path(env)
    values = {key: Value(s.default, "default") for key, s in SETTINGS.items()}
    problems: list[str] = []

    def broken(message: str) -> None:
        if not lenient:
            raise ConfigError(message)
        problems.append(message)

    try:
        document = read_file(path)
    except ConfigError as exc:
        broken(str(exc))
        document = {}
    text: str | None = None
    for key, raw in flatten(document).items():
        setting = SETTINGS.get(key)
        if text is None:
            text = path.read_text(encoding="utf-8", errors="replace")
        where = f"{path}:{_line_of(text, key)}"
        if setting is None:
            broken(f"{where}: {unknown_key(key)}")
            continue
        try:
            values[key] = Value(setting.convert(raw), where)
        except ValueError as exc:
            broken(f"{where}: bad value for {key!r}: {exc}")
    _from_env(values, env, broken)
    return Config(values, path, tuple(problems))


def _from_env(values: dict[str, Value], env: Mapping[str, str],
              broken: Callable[[str], None]) -> None:
    """``CLAUDE_NOTIFY_<KEY>`` over what the file and the defaults said."""
    for key, setting in SETTINGS.items():
        name = env_name(key)
        raw_env = env.get(name)
        if raw_env is None or raw_env == "":
            continue
        try:
            values[key] = Value(setting.convert(raw_env), f"env {name}")
        except ValueError as exc:
            broken(f"{name}={raw_env!r}: {exc}")


def unknown_key(key: str) -> str:
    """``unknown key 'tiemout' (did you mean 'timeout'?)``, or where to look if none is near."""
    import difflib

    near = difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}?" if near else "see `claude-notify config show`"
    return f"unknown key {key!r} ({hint})"


def read_file(path: Path) -> dict[str, Any]:
    """The parsed file, ``{}`` when it does not exist; a broken file is a :class:`ConfigError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        return document
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and prefix + key not in SETTINGS:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _line_of(text: str, dotted_key: str) -> int:
    """Best-effort line number of a key, for error messages (tomllib gives no positions)."""
    table, _, leaf = dotted_key.rpartition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1)
            continue
        key = re.match(r"([A-Za-z0-9_.\"-]+)\s*=", stripped)
        if key is None:
            continue
        name = key.group(1).strip('"')
        full = f"{current}.{name}" if current else name
        if full == dotted_key or (current == table and name == leaf):
            return number
    return 1
