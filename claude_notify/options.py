"""The options of ``claude-notify run``, defined once.

``run`` sits in front of every command a user wraps, so it has a lean parser built from this
table that needs nothing but the stdlib; the click command (``--help``, and every other
subcommand) is built from the same table. Whenever the lean parser meets something it does not
handle plainly — ``--help``, an unknown or malformed option — it steps aside and click parses the
whole command line, so help text and error messages exist in exactly one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class RunOption:
    """One ``run`` option. ``setting`` names the config key a value overrides, if any."""

    dest: str
    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    """``None`` for on/off flags that take no value."""
    choices: tuple[str, ...] | None = None
    setting: str | None = None


RUN_OPTIONS: Final[tuple[RunOption, ...]] = (
    RunOption("title", ("--title",), "Title template, e.g. '{status}: {cmd}'.", "TEMPLATE",
              setting="title"),
    RunOption("message", ("--message",), "Body template, e.g. '{tail}'.", "TEMPLATE",
              setting="message"),
    RunOption("sound", ("--sound",), "A sound file, a sound name, or 'none'.", "PATH|NAME|none",
              setting="sound"),
    RunOption("icon", ("--icon",), "An icon file or icon name.", "PATH|NAME", setting="icon"),
    RunOption("urgency", ("--urgency",),
              "Notification urgency (default: failure_urgency on failure, else normal).",
              "LEVEL", choices=("low", "normal", "critical"), setting="urgency"),
    RunOption("min_duration", ("--min-duration",),
              "Do not notify when the command took less than this.", "DURATION",
              setting="min_duration"),
    RunOption("on", ("--on",), "When to notify.", "WHEN",
              choices=("exit", "success", "failure", "never"), setting="on"),
    RunOption("match", ("--match",),
              "Also notify (rate-limited) when an output line matches this regex.", "REGEX"),
    RunOption("every", ("--every",),
              "Also send a 'still running' notification with the latest output this often.",
              "DURATION"),
    RunOption("log", ("--log",), "Write the full output to this file.", "FILE"),
    RunOption("backend", ("--backend",), "Force a notification backend.", "NAME",
              setting="backend"),
    RunOption("channels", ("--channels",),
              "Cloud channels for this task, e.g. email,telegram (when logged in).", "LIST",
              setting="cloud.channels"),
    RunOption("no_cloud", ("--no-cloud",), "Do not forward this task to the cloud.", None),
    RunOption("stream", ("--stream",),
              "Send the output to the cloud while the task runs (when logged in).", None),
    RunOption("quiet", ("-q", "--quiet"), "Print nothing of our own, even on errors.", None),
    RunOption("exec_", ("--exec",), "Execute the arguments directly, never through a shell.",
              None),
    RunOption("shell", ("--shell",), "Run the arguments through your $SHELL.", None),
    RunOption("no_pty", ("--no-pty",),
              "Never use a pseudo-terminal, even when stdout is a terminal.", None),
)

_BY_FLAG: Final = {flag: opt for opt in RUN_OPTIONS for flag in opt.flags}


@dataclass(frozen=True, slots=True)
class ParsedRun:
    """What the command line said: option values by ``dest`` and the command to run."""

    values: dict[str, str | bool]
    command: tuple[str, ...]


class NotPlain(Exception):
    """The command line needs click's full parser (help, or an error to explain)."""


def parse_run_args(args: Sequence[str]) -> ParsedRun:
    """Parse ``run``'s arguments the way click does for well-formed input, else :class:`NotPlain`.

    Options come first; the first non-option argument or ``--`` starts the command.
    """
    values: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=")
        opt = _BY_FLAG.get(name)
        if opt is None:
            raise NotPlain(arg)
        if opt.metavar is None:
            if eq:
                raise NotPlain(arg)
            values[opt.dest] = True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 2
        else:
            raise NotPlain(arg)
        if opt.choices is not None and value not in opt.choices:
            raise NotPlain(arg)
        values[opt.dest] = value
    command = tuple(args[i:])
    if not command:
        raise NotPlain("missing command")
    return ParsedRun(values, command)
