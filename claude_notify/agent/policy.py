"""What the agent may run: matched on the argument list, run without a shell.

A command is split as a POSIX shell would (:func:`shlex.split`) and executed directly, so
``make test; curl … | sh`` is never two commands. Anything a shell would treat specially
(``; | & < > ( ) $ ` * ? [ ] { } ~``, newlines) means the command needs a shell: it runs only
when an allow-list entry is that exact string (an entry whose only special characters are the
globs ``* ? [ ]`` is a pattern, never a shell command).

Allow patterns are argument lists too: each word is a glob for the word at the same place
(``pytest tests/*``), and a last word ``*`` on its own stands for any further arguments
(``make *``). What the pattern spells out word for word is the owner's choice; every word a
wildcard matched is held to two rules, so ``git *`` does not grant ``git -c alias.x=!sh x``:

- none of the program's entries in :data:`RISKY` (options and subcommands that change
  directory, load config or run code), unless the pattern spells that option out — literally,
  or as ``--option=*``; for shells and programs that run other programs, no argument at all;
- no path outside the ``--dir`` directories: absolute, with ``..`` or through a symlink, also
  after an ``=`` or a short option (``--output=/x``, ``-I/x``).

A deny pattern's words (a last ``*`` aside) refuse a command that holds them in that order
anywhere, whatever options or other words surround them: ``make deploy *`` refuses
``make -k deploy`` and ``make all deploy`` too.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Final

SHELL_CHARS: Final = frozenset(";|&<>()$`*?[]{}~\n\r\x00\\")
GLOB_CHARS: Final = frozenset("*?[]")
"""In an allow-list entry, these alone make it a pattern (``make *``), not a shell command."""

ANY: Final = "…"
"""In :data:`RISKY`: every argument (the program runs whatever it is given)."""
VARIABLE: Final = "NAME=value"
"""In :data:`RISKY`: a ``NAME=value`` word (``make CC='sh -c …'`` runs code)."""

_RUNS = "runs the command or code it is given"
RISKY: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    # program: (why, entries). "-x" is a short option, also inside a cluster (-kx) or with its
    # value attached; "--long" also abbreviated or as --long=value; "-long" (find, go) and a bare
    # word (a subcommand) match exactly.
    **dict.fromkeys(
        ("sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "pwsh", "powershell", "cmd",
         "env", "xargs", "sudo", "doas", "su", "runuser", "nice", "nohup", "timeout", "time",
         "watch", "stdbuf", "setsid", "ionice", "chrt", "taskset", "flock", "strace", "ltrace",
         "gdb", "script", "unbuffer", "parallel", "busybox", "npx", "pnpx", "bunx", "uvx", "pipx",
         "ssh", "docker", "podman"), (_RUNS, (ANY,))),
    "git": ("can run another program or use config and repositories from elsewhere",
            ("-c", "--config-env", "--config", "-C", "--git-dir", "--work-tree", "--namespace",
             "--super-prefix", "--exec-path", "--upload-pack", "-u", "--receive-pack", "--exec",
             "-x", "--extcmd", "--template", "config", "foreach", "bisect", "filter-branch",
             "difftool", "mergetool", "credential", "send-email", "daemon", "instaweb")),
    "make": ("can change directory, read other makefiles or run code",
             ("-C", "--directory", "-f", "--file", "--makefile", "-E", "--eval", "-I",
              "--include-dir", VARIABLE)),
    "npm": ("can change directory, load config or run packages",
            ("-C", "--prefix", "--userconfig", "--globalconfig", "--script-shell",
             "--node-options", "-c", "--call", "exec", "x", "init", "create")),
    "yarn": ("can change directory, load config or run packages",
             ("--cwd", "--use-yarnrc", "dlx", "exec", "node", "create")),
    "pnpm": ("can change directory, load config or run packages",
             ("-C", "--dir", "dlx", "exec", "create")),
    **dict.fromkeys(("uv", "poetry", "pdm", "pipenv", "hatch", "bundle"), (
        "can change directory or run any command",
        ("run", "exec", "tool", "-C", "--directory", "-P", "--project", "-p"))),
    "python": ("runs code given on the command line", ("-c", "-m")),
    "node": ("runs code given on the command line",
             ("-e", "--eval", "-p", "--print", "-r", "--require", "--import", "--loader",
              "--experimental-loader")),
    "perl": ("runs code given on the command line", ("-e", "-E", "-M", "-m")),
    "ruby": ("runs code given on the command line", ("-e", "-r")),
    "php": ("runs code given on the command line", ("-r", "-d")),
    "find": ("runs a command or writes files", ("-exec", "-execdir", "-ok", "-okdir",
                                                "-fprint", "-fprint0", "-fprintf", "-fls")),
    "pytest": ("can load plugins or config from elsewhere",
               ("-p", "-c", "--config-file", "--rootdir", "--confcutdir", "-o",
                "--override-ini")),
    "tar": ("can run a program", ("--to-command", "--use-compress-program", "-I",
                                  "--checkpoint-action", "--rsh-command", "--info-script",
                                  "--new-volume-script", "-F")),
    "rsync": ("can run a program", ("-e", "--rsh", "--rsync-path")),
    "cargo": ("can change directory, load config or run a program",
              ("-C", "--config", "--manifest-path", "-Z")),
    "go": ("can change directory, load config or run a program",
           ("-C", "-exec", "-toolexec", "-modfile", "-overlay")),
}


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


def _is_glob(word: str) -> bool:
    return any(ch in GLOB_CHARS for ch in word)


def matches(pattern: str, argv: Sequence[str]) -> bool:
    """Whether ``argv`` has the pattern's shape (word by word; a last ``*``: anything more)."""
    words = _words(pattern)
    if not words:
        return False
    if words[-1] == "*":
        head = words[:-1]
        return len(argv) >= len(head) and all(map(fnmatchcase, argv[: len(head)], head))
    return len(argv) == len(words) and all(map(fnmatchcase, argv, words))


def denied(pattern: str, argv: Sequence[str]) -> bool:
    """Whether the deny pattern's words (a last ``*`` aside) occur in ``argv`` in order, with
    anything between and around them; a word with a ``/`` is also tried by its last part, so
    ``/usr/bin/make`` is ``make``."""
    words = _words(pattern) or []
    if len(words) > 1 and words[-1] == "*":
        words.pop()
    if not words:
        return False
    at = 0
    for word in argv:
        forms = (word, PurePath(word).name) if "/" in word else (word,)
        if any(fnmatchcase(form, words[at]) for form in forms):
            at += 1
            if at == len(words):
                return True
    return False


def _program(argv0: str) -> tuple[str, str]:
    """The name to show and the :data:`RISKY` key (``/usr/bin/python3.11`` is ``python``)."""
    name = PurePath(argv0).name
    key = name.lower().removesuffix(".exe")
    return name, key if key in RISKY else key.rstrip("0123456789.")


def _hits(entry: str, word: str) -> bool:
    if entry == ANY:
        return True
    if entry == VARIABLE:
        return not word.startswith("-") and "=" in word
    if entry.startswith("--"):
        name = word.partition("=")[0]
        return len(name) > 2 and name.startswith("--") and entry.startswith(name)
    if len(entry) == 2 and entry[0] == "-":
        return word[:1] == "-" and word[1:2] != "-" and entry[1] in word[1:]
    return word == entry


def _named(written: str, word: str) -> bool:
    """Whether the allow pattern's word ``written`` spells out ``word``'s option or variable:
    literally, or up to the ``=`` of ``--option=*``."""
    if not _is_glob(written):
        return True
    name, eq, _ = written.partition("=")
    return bool(eq) and not _is_glob(name) and word.partition("=")[0] == name


def _inside(path: Path, dirs: Sequence[str]) -> bool:
    for allowed in dirs:
        try:
            root = Path(allowed).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if path == root or root in path.parents:
            return True
    return False


def _outside(word: str, cwd: str, dirs: Sequence[str]) -> str:
    """The path in ``word`` (itself, after its ``=``, or after a short option) that leads out
    of ``dirs``, or ``""``. Only words with a ``/`` (or ``..``) are taken for paths."""
    candidates = [word, word.partition("=")[2]]
    if word[:1] == "-" and word[1:2] != "-":
        candidates.append(word[2:])
    for text in candidates:
        path = text.removeprefix("file:")
        if "/" not in path and path != "..":
            continue
        try:
            resolved = (Path(cwd) / path).resolve()
        except (OSError, RuntimeError, ValueError):
            return text
        if not _inside(resolved, dirs):
            return text
    return ""


def refusal(pattern: str, argv: Sequence[str], *, cwd: str, dirs: Sequence[str]) -> str:
    """Why ``argv``, which has the shape of the allow ``pattern``, may still not run — one
    line naming the word and the rule — or ``""``."""
    words = _words(pattern) or []
    head = words[:-1] if words[-1:] == ["*"] else words
    name, key = _program(argv[0])
    why, entries = RISKY.get(key, ("", ()))
    for at, word in enumerate(argv):
        written = head[at] if at < len(head) else "*"
        if not _is_glob(written):
            continue  # spelled out by the owner
        hits = [e for e in entries if _hits(e, word)] if at and not _named(written, word) else []
        if ANY in hits:
            return f"{name} {why}: an --allow pattern must spell out each argument"
        if hits:  # the option as written, if it is one (--exec, not --exec-path)
            entry = next((e for e in hits if e == word.partition("=")[0]), hits[0])
            return f"{name} {entry} {why}: an --allow pattern must spell it out to allow it"
        if path := _outside(word, cwd, dirs):
            return f"{path!r} is outside the directories this agent may use"
    return ""


def warnings(allow: Sequence[str]) -> list[str]:
    """One line for each allow pattern that grants more, or less, than it seems to: a wildcard
    program; a shell or runner with a wildcard (only the arguments spelled out are allowed); a
    risky option spelled out with its value left to the reply."""
    said = []
    for pattern in allow:
        words = _words(pattern)
        if not words or any(ch in SHELL_CHARS - GLOB_CHARS for ch in pattern):
            continue  # an exact shell command: spelled out
        if _is_glob(words[0]):
            said.append(f"--allow {pattern!r} lets a reply run any program its first word "
                        f"matches")
            continue
        name, key = _program(words[0])
        why, entries = RISKY.get(key, ("", ()))
        wild = [at for at, word in enumerate(words) if _is_glob(word)]
        if not wild:
            continue
        if ANY in entries:
            said.append(f"--allow {pattern!r} grants {name} only with the arguments it spells "
                        f"out ({shlex.join(words[:wild[0]])}): {name} {why}")
            continue
        for at, word in enumerate(words[1:], 1):
            opened = at + 1 in wild or (_is_glob(word) and _named(word, word))
            hit = next((e for e in entries if _hits(e, word.split("*")[0])), "")
            if opened and hit:
                said.append(f"--allow {pattern!r} lets a reply choose what follows {name} "
                            f"{hit}, which {why}")
                break
    return said


def within(cwd: str, dirs: Sequence[str]) -> str | None:
    """``cwd`` resolved, if it is an existing directory inside one of ``dirs``."""
    try:
        path = Path(cwd).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_dir():
        return None
    return str(path) if _inside(path, dirs) else None


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
            try:
                words = list(shlex.shlex(command, posix=True, punctuation_chars=True))
            except ValueError:  # unbalanced quotes: the shell will complain, deny still holds
                words = command.split()
            if hit := next((p for p in deny if denied(p, words)), None):
                return Decision(refused=f"matches the deny pattern {hit!r}")
            return Decision(argv=(command,), through_shell=True, cwd=where)
        return Decision(refused="needs a shell (; | & $ ` or a newline…): allowed only when the "
                                "allow-list names this exact command")
    argv = _words(command)
    if not argv:
        return Decision(refused="cannot be split into arguments")
    if hit := next((p for p in deny if denied(p, argv)), None):
        return Decision(refused=f"matches the deny pattern {hit!r}")
    reasons = [refusal(p, argv, cwd=where, dirs=dirs) for p in allow if matches(p, argv)]
    if not reasons:
        return Decision(refused="not in this agent's allow-list")
    if all(reasons):
        return Decision(refused=reasons[0])
    return Decision(argv=tuple(argv), cwd=where)
