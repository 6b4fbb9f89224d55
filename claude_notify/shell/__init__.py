"""Shell integration: a prompt hook that notifies when an interactive command ran long.

The work is split so that the prompt never waits for Python:

- the snippet (``bash.sh``, ``zsh.zsh``, ``fish.fish`` beside this file, filled in by
  :func:`snippet`) times each command with the shell's own clock and, only when it ran at least
  as long as the lowest threshold in the settings, starts ``claude-notify shell-done`` in the
  background. The thresholds are baked into the snippet when it is generated, so the shell can
  decide alone: a settings change needs the snippet evaluated again;
- per-command thresholds below the default (``make = 0``) are checked in the shell by a word
  match that is a superset of the Python rules, so a short ``ls`` still starts no process;
- ``shell-done`` (:mod:`claude_notify.shell.done`) applies the exact rules — ignore and allow
  lists, per-command thresholds, the focus check — and hands the event to the dispatcher.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from claude_notify.shell.commandline import rule_words

SHELLS: Final = ("bash", "zsh", "fish")

_PROGRAM_START: Final = r"[/ \\]"
"""What may precede a program's name in a line: a space, a ``/`` (a path), a ``\\`` (no alias)."""


def snippet(shell: str, *, threshold: float, overrides: Mapping[str, float],
            argv: Sequence[str] | None = None, state_dir: Path | None = None) -> str:
    """The hook code for ``shell`` with the thresholds and our own command line baked in.

    ``state_dir`` is where bash may read its history line back without a fork when the login
    has no private runtime directory (it is used only if it exists and is ours).
    """
    if shell not in SHELLS:
        raise ValueError(f"unsupported shell {shell!r}")
    argv = list(argv) if argv is not None else self_argv()
    lower = {k: v for k, v in overrides.items() if v < threshold and rule_words(k)}
    minimum = min([threshold, *lower.values()])
    ext = {"bash": "sh", "zsh": "zsh", "fish": "fish"}[shell]
    template = (Path(__file__).parent / f"{shell}.{ext}").read_text(encoding="utf-8")
    if shell == "fish":
        values = {"ARGV": " ".join(fish_quote(a) for a in argv),
                  "MIN_MS": str(_ms(minimum)), "DEFAULT_MS": str(_ms(threshold)),
                  "OVERRIDES": _fish_overrides(lower)}
    else:
        values = {"ARGV": " ".join(shlex.quote(a) for a in argv),
                  "MIN_US": str(_us(minimum)), "DEFAULT_US": str(_us(threshold)),
                  "OVERRIDES": _posix_overrides(lower),
                  "STATE": shlex.quote(str(state_dir)) if state_dir is not None else "''"}
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)


def self_argv() -> list[str]:
    """How the background process should start this very installation of claude-notify.

    The console script when we were started through it; otherwise this interpreter with
    ``-m`` (the snippet changes to ``/`` first, so no ``claude_notify`` in the user's current
    directory can shadow ours).
    """
    script = Path(sys.argv[0])
    if script.name in ("claude-notify", "claude-notify.exe") and script.is_file():
        return [str(script.absolute())]
    return [sys.executable, "-m", "claude_notify"]


def fish_quote(text: str) -> str:
    """A fish single-quoted word (only ``\\`` and ``'`` are special inside)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _posix_overrides(lower: Mapping[str, float]) -> str:
    """``[[ $2 == *[/\\ \\\\]'make '* ]] && (( $1 >= 0 )) && return 0`` per entry.

    ``$2`` is the line with separators turned into spaces and padded with one on each side; the
    program may follow a space, a ``/`` (a path) or a ``\\`` (alias bypass).
    """
    lines = []
    for entry, seconds in sorted(lower.items()):
        first, *rest = rule_words(entry)
        tests = [f"$2 == *[/\\ \\\\]{shlex.quote(first + ' ')}*"]
        tests += [f"$2 == *{shlex.quote(' ' + word + ' ')}*" for word in rest]
        lines.append(f"    [[ {' && '.join(tests)} ]] && (( $1 >= {_us(seconds)} )) && return 0")
    return "\n".join(lines) if lines else "    :"


def _fish_overrides(lower: Mapping[str, float]) -> str:
    """The same test in fish, whose ``string match`` globs have no brackets: PCRE instead."""
    lines = []
    for entry, seconds in sorted(lower.items()):
        first, *rest = rule_words(entry)
        program = fish_quote(_PROGRAM_START + re.escape(first + " "))
        tests = [f"string match -qr -- {program} $argv[2]"]
        tests += [f"string match -q -- {fish_quote('* ' + _fish_glob(word) + ' *')} $argv[2]"
                  for word in rest]
        lines.append(f"        {'; and '.join(tests)}; and test $argv[1] -ge {_ms(seconds)}; "
                     "and return 0")
    return "\n".join(lines) if lines else "        true"


def _fish_glob(word: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", word)
