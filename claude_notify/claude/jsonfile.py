"""A JSON file someone else owns too, read and rewritten without harm (``settings.json``).

:func:`load` refuses what it could not write back faithfully; :func:`edit` applies a change to
the document and writes it back: a broken file is refused untouched, a symbolic link stays a
link, a timestamped backup of the old bytes is taken, the new text keeps the old one's indent
and line ends, replaces the old atomically with the same mode, and is not written at all if the
file changed since it was read (the edit starts over from the new content instead).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from claude_notify.errors import ConfigError
from claude_notify.fsutil import atomic_write

JSONObject = dict[str, Any]
Check = Callable[[JSONObject], object]
"""Raises ``ValueError`` naming what is misshapen in a parsed document."""


@dataclass(frozen=True, slots=True)
class Edit:
    """What :func:`edit` did to one file."""

    path: Path
    changed: bool
    """False when the document already was as asked: nothing was written, no backup taken."""
    backup: Path | None = None
    """The copy of the previous bytes; ``None`` if unchanged or the file did not exist."""


def load(path: Path, *, check: Check | None = None) -> tuple[JSONObject, bytes | None]:
    """The parsed document and the bytes it came from (``{}``, ``None`` if there is no file).

    Everything we could not rewrite faithfully is a :class:`ConfigError` naming the file: not
    UTF-8, not JSON (including ``NaN`` and numbers beyond a double), not an object, or refused
    by ``check`` (which raises ``ValueError`` naming the misshapen place).
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
        raise ConfigError(f"{path}: the top level is {kind(doc)}, expected an object")
    if check is not None:
        try:
            check(doc)
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


def edit(path: Path, change: Callable[[JSONObject], JSONObject], *,
         check: Check | None = None) -> Edit:
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
            doc, raw = load(target, check=check)
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


def kind(value: object) -> str:
    """How a message names the JSON type of ``value`` (``an object``, ``null`` …)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             type(None): "null", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
