"""From a task event to the words a person reads: titles, bodies, templates.

Templates use ``str.format`` placeholders (``{cmd}``, ``{status}``…), but only bare names from
:data:`PLACEHOLDERS`: attribute or index access (``{cmd.__class__}``), conversions and format
specs are refused, so a template from a config file can neither reach Python internals nor ask
for a billion-character padding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from claude_notify.errors import UsageError
from claude_notify.events import TaskEvent

PLACEHOLDERS: Final[Mapping[str, str]] = {
    "cmd": "the command, shortened",
    "command": "the whole command",
    "status": "succeeded, failed, interrupted, running…",
    "mark": "a one-character status mark",
    "exit_code": "the exit code (empty when killed by a signal)",
    "signal": "the signal that ended it, if any",
    "duration": "how long it ran, e.g. 2m 03s",
    "tail": "the last lines of output",
    "host": "the host name",
    "cwd": "the working directory",
    "project": "the last component of the working directory",
    "match": "the output line that matched --match",
}

_MARKS: Final = {"success": "✓", "failure": "✗", "interrupted": "⚠", "running": "…",
                 "needs_input": "?", "ended": "■"}
_WORDS: Final = {"success": "succeeded", "failure": "failed", "interrupted": "interrupted",
                 "running": "running", "needs_input": "needs input", "ended": "ended"}


def check_template(template: str, *, option: str) -> str:
    """Return the template if every placeholder is allowed, else raise :class:`UsageError`."""
    import string

    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"{option}: bad template: {exc}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise UsageError(f"{option}: unknown placeholder {{{field}}} (known: {known})")
        if spec or conversion:
            raise UsageError(f"{option}: placeholder {{{field}}} takes no format spec")
    return template


def fields_of(event: TaskEvent, *, tail_lines: int) -> dict[str, str]:
    """The placeholder values for one event."""
    cwd = event.cwd
    return {
        "cmd": shorten(event.command, 48),
        "command": event.command,
        "status": _WORDS.get(event.status, event.status),
        "mark": _MARKS.get(event.status, ""),
        "exit_code": "" if event.exit_code is None else str(event.exit_code),
        "signal": event.signal or "",
        "duration": format_duration(event.duration_s),
        "tail": last_lines(event.tail, tail_lines),
        "host": event.host,
        "cwd": cwd,
        "project": cwd.rstrip("/\\").rsplit("/", 1)[-1].rsplit("\\", 1)[-1] if cwd else "",
        "match": event.match or "",
    }


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a template that :func:`check_template` accepted."""
    return template.format_map(values)


def default_title(event: TaskEvent, values: Mapping[str, str]) -> str:
    """``✓ make test · 2m 03s``, ``✗ make test · exit 2 · 5s``, ``⚠ make · SIGINT · 3s``."""
    if event.title:
        return event.title
    parts = [f"{values['mark']} {values['cmd']}".strip()]
    if event.type == "match":
        parts.append("matched")
    elif event.type == "progress":
        parts.append("still running")
    elif event.status == "failure" and event.exit_code is not None:
        parts.append(f"exit {event.exit_code}")
    elif event.status == "interrupted":
        parts.append(event.signal or "interrupted")
    elif event.status == "ended":
        parts.append("ended")
    if values["duration"]:
        parts.append(values["duration"])
    return " · ".join(parts)


def default_body(event: TaskEvent, values: Mapping[str, str]) -> str:
    """The matching line, or the last lines of output, or a plain sentence when there is none."""
    if event.type == "match" and values["match"]:
        return values["match"]
    if values["tail"]:
        return values["tail"]
    if event.message:
        return event.message
    return f"{values['cmd']} {values['status']} on {values['host']}"


def format_duration(seconds: float | None) -> str:
    """Read at a glance: ``850ms``, ``12s``, ``2m 03s``, ``1h 04m``, ``2d 3h``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, with an ellipsis in the middle when cut."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    keep = limit - 1
    return line[: keep - keep // 3] + "…" + line[len(line) - keep // 3 :]


def last_lines(text: str, count: int, *, width: int = 200) -> str:
    """The last ``count`` non-blank lines, each cut to ``width`` characters."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    picked = lines[-count:] if count > 0 else []
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in picked)


# CSI, OSC/DCS/APC/PM/SOS strings (ended by BEL or ST), and two-byte escapes. Public, with
# CONTROLS, for the web app's colour renderer, which must remove exactly what this removes.
ESCAPES: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
CONTROLS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_output(raw: bytes) -> str:
    """Terminal output as plain text: escapes and control bytes gone, ``\\r`` overwrites honoured.

    A progress bar that redraws a line with ``\\r`` keeps only its last state.
    """
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    text = ESCAPES.sub("", text)
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return CONTROLS.sub("", text)


_UNPRINTABLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    """Text from elsewhere (a server's answer, another person's input) made safe to print on one
    terminal line: control characters (ESC, BEL, C1 controls such as CSI, newlines) and the
    format characters that reorder or hide text (bidirectional overrides, zero-width spaces)
    are shown escaped — ``\\x1b``, ``\\u202e`` — instead of acting on the terminal."""
    return _UNPRINTABLE.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)
