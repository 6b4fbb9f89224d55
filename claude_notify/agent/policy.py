"""What the agent may run: matched on the argument list, run without a shell.

A command is split as a POSIX shell would (:func:`shlex.split`) and executed directly, so
``make test; curl … | sh`` is never two commands. Anything a shell would treat specially
(``; | & < > ( ) $ ` * ? [ ] { } ~``, newlines) means the command needs a shell: it runs only
when an allow-list entry is that exact string (an entry whose only special characters are the
globs ``* ? [ ]`` is a pattern, never a shell command). Allow and deny patterns are argument
lists too: each word is a glob for the word at the same place (``pytest tests/*``), and a last
word ``*`` on its own stands for any further arguments (``make *``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

SHELL_CHARS: Final = frozenset(";|&<>()$`*?[]{}~\n\r\x00\\")
GLOB_CHARS: Final = frozenset("*?[]")
"""In an allow-list entry, these alone make it a pattern (``make *``), not a shell command."""


@dataclass(frozen=True, slots=True)
class Decision:
    """``argv`` to execute (``through_shell``: one string for the user's shell), or why not."""

    argv: tuple[str, ...] = ()
    through_shell: bool = False
    cwd: str = ""
    refused: str = ""


def needs_shell(command: str) -> bool:
    return any(ch in SHELL_CHARS for ch in command)


def _words(text: str) -> list[str] | None:
    try:
        return shlex.split(text)
    except ValueError:
        return None


def matches(pattern: str, argv: Sequence[str]) -> bool:
    words = _words(pattern)
    if not words:
        return False
    if words[-1] == "*":
        head = words[:-1]
        return len(argv) >= len(head) and all(map(fnmatchcase, argv[: len(head)], head))
    return len(argv) == len(words) and all(map(fnmatchcase, argv, words))


def within(cwd: str, dirs: Sequence[str]) -> str | None:
    """``cwd`` resolved, if it is an existing directory inside one of ``dirs``."""
    try:
        path = Path(cwd).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_dir():
        return None
    for allowed in dirs:
        try:
            root = Path(allowed).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if path == root or root in path.parents:
            return str(path)
    return None


def decide(command: str, *, cwd: str, allow: Sequence[str], deny: Sequence[str],
           dirs: Sequence[str]) -> Decision:
    """Whether and how to run ``command`` in ``cwd`` under this machine's rules."""
    where = within(cwd, dirs)
    if where is None:
        return Decision(refused=f"working directory {cwd!r} is not one this agent may use")
    if command.strip() != command or not command:
        return Decision(refused="empty command, or spaces around it")
    if needs_shell(command):
        if command in allow and any(ch in SHELL_CHARS - GLOB_CHARS for ch in command):
            return Decision(argv=(command,), through_shell=True, cwd=where)
        return Decision(refused="needs a shell (; | & $ ` or a newline…): allowed only when the "
                                "allow-list names this exact command")
    argv = _words(command)
    if not argv:
        return Decision(refused="cannot be split into arguments")
    if any(matches(p, argv) for p in deny):
        return Decision(refused="matches this agent's deny-list")
    if not any(matches(p, argv) for p in allow):
        return Decision(refused="not in this agent's allow-list")
    return Decision(argv=tuple(argv), cwd=where)
