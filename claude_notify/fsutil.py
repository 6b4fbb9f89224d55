"""Files replaced whole or not at all: the one way claude-notify rewrites a file.

The new content goes to a temporary file in the target's own directory (a rename across file
systems would be a copy), is flushed to disk, and is then ``os.replace``\\ d over the target: a
reader, or a crash, sees the old file or the new one, never a part of either. Each call names
its temporary file after its process and 64 random bits, so two processes writing the same file
at once never write into one temporary file, and one that fails removes its own.

Not ``tempfile.mkstemp``: importing ``tempfile`` brings ``shutil``, ``random`` and the
compression modules, about 7 ms on the run and hook paths, which write through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "temp_path"]


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``; hidden, so directory scans can skip it."""
    return path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(8).hex()}.tmp")


def atomic_write(
    path: Path,
    data: bytes | str | Iterable[str],
    *,
    mode: int | None = 0o600,
    durable: bool = True,
    sync_dir: bool = False,
    temp: Path | None = None,
    before_replace: Callable[[], bool] | None = None,
) -> bool:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8, newlines untranslated; an
    iterable of ``str`` is written piece by piece as it is produced, for a long rewrite).

    ``mode``: the new file's permission bits, exactly (``0o600`` for anything secret); ``None``
    for what a new file gets from ``open`` (``0o666`` less the umask). ``durable`` fsyncs the
    content before the rename; ``sync_dir`` also fsyncs the directory after it, so the rename
    itself survives a power cut. ``temp`` names the temporary file instead of a fresh name: for
    a single writer under a lock that clears its leftover at start. ``before_replace`` runs once
    the temporary file is whole, just before the rename; when it returns False nothing is
    replaced, the temporary file is removed and the result is False. The parent directory is
    created if missing. An ``OSError`` leaves ``path`` as it was and no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp if temp is not None else temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    flags |= os.O_TRUNC if temp is not None else os.O_EXCL
    fd = os.open(tmp, flags, 0o666 if mode is None else mode & 0o777)
    try:
        try:
            for piece in (data,) if isinstance(data, bytes | str) else data:
                _write_all(fd, piece.encode("utf-8") if isinstance(piece, str) else piece)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            tmp.chmod(mode)  # exactly: the umask may have narrowed what os.open made
        if before_replace is not None and not before_replace():
            tmp.unlink()
            return False
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); Windows has no directory handles to sync."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
