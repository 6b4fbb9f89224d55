"""Which program a shell command line runs, and what the shell settings say about it.

The ignore list, the allow list and the per-command thresholds name programs (``vim``) or word
prefixes (``git log``). A command line names its program after wrappers that only change how it
runs — ``sudo -u root make``, ``env CC=clang make``, ``nice -n 5 make``, ``\\make`` — so those
are skipped: the user thinks of all of these as "make". An alias is resolved by the shell, which
passes its expansion along; a rule matches if it matches what was typed or what it expanded to.

The shell snippet runs a cheap superset of :func:`threshold_for` before it starts a process, so
every rule here must be a function of the words of the line (see ``shell/__init__.py``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

WRAPPERS: Final[Mapping[str, frozenset[str]]] = {
    "sudo": frozenset({"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "-R"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "-S", "--unset", "--chdir", "--split-string"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "-n", "-p", "-P", "-u"}),
    "nohup": frozenset(),
    "time": frozenset({"-f", "-o", "--format", "--output"}),
    "command": frozenset(),
    "builtin": frozenset(),
    "exec": frozenset({"-a"}),
    "noglob": frozenset(),
    "nocorrect": frozenset(),
    "caffeinate": frozenset({"-t", "-w"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "chronic": frozenset(),
}
"""Programs that run the rest of the line, with the options of theirs that take a value."""

_OPENERS: Final = frozenset({"(", "{", "!", "then", "do", "else", "if", "while", "until"})


def split_words(line: str) -> list[str]:
    """The words of the first command of ``line``, quotes removed (up to ``;``, ``|``, ``&&``).

    Unbalanced quotes (a line the shell will reject anyway) fall back to splitting on spaces.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    try:
        for token in lexer:
            if token and all(ch in "();<>|&" for ch in token):
                if words or token not in ("(", "{"):
                    break
                continue
            words.append(token)
    except ValueError:
        return line.split()
    return words


def program_words(line: str) -> list[str]:
    """The program and its arguments, wrappers and ``VAR=value`` assignments skipped.

    ``sudo -u root /usr/bin/make -j4`` → ``["make", "-j4"]``; the program is named by its
    base name so ``/usr/bin/vim`` is ``vim``.
    """
    words = split_words(line)
    i = 0
    while i < len(words):
        word = words[i].lstrip("\\")
        if word in _OPENERS or _is_assignment(word):
            i += 1
            continue
        if word in WRAPPERS:
            i = _skip_options(words, i + 1, WRAPPERS[word], timeout=False)
            continue
        if word == "timeout":
            i = _skip_options(words, i + 1, frozenset({"-k", "-s", "--signal", "--kill-after"}),
                              timeout=True)
            continue
        return [_basename(word), *words[i + 1:]]
    return []


def _skip_options(words: Sequence[str], i: int, with_value: frozenset[str], *,
                  timeout: bool) -> int:
    while i < len(words) and words[i].startswith("-") and words[i] != "-":
        if words[i] == "--":
            return i + 1
        i += 2 if words[i] in with_value else 1
    if timeout and i < len(words):
        i += 1  # timeout DURATION COMMAND
    return i


def _is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.replace("_", "a").isalnum() and not name[0].isdigit()


def _basename(word: str) -> str:
    return word.rstrip("/").rsplit("/", 1)[-1] or word


def rule_words(entry: str) -> list[str]:
    """An ignore, allow or threshold entry as words, its program named by its base name."""
    words = entry.split()
    return [_basename(words[0]), *words[1:]] if words else []


def matches(words: Sequence[str], entry: str) -> bool:
    """Whether ``entry`` (``vim``, ``git log``) is a word prefix of the program words."""
    wanted = rule_words(entry)
    return bool(wanted) and list(words[: len(wanted)]) == wanted


def candidates(typed: str, expanded: str = "") -> list[list[str]]:
    """Program words of what was typed and of its alias expansion, if the shell gave one."""
    found = [program_words(typed)]
    if expanded.strip() and expanded != typed:
        found.append(program_words(expanded))
    return [words for words in found if words]


def ignored(cands: Iterable[Sequence[str]], *, ignore: Iterable[str],
            allow: Iterable[str]) -> bool:
    """Ignored when any candidate matches the ignore list and none matches the allow list."""
    cands = list(cands)
    allow = list(allow)
    if any(matches(words, entry) for words in cands for entry in allow):
        return False
    return any(matches(words, entry) for words in cands for entry in ignore)


def threshold_for(cands: Iterable[Sequence[str]], *, default: float,
                  overrides: Mapping[str, float]) -> float:
    """The most specific per-command threshold that matches (most words wins), else ``default``."""
    best: tuple[int, float] | None = None
    for words in cands:
        for entry, seconds in overrides.items():
            if matches(words, entry):
                size = len(rule_words(entry))
                if best is None or size > best[0]:
                    best = (size, seconds)
    return default if best is None else best[1]
