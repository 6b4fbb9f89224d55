"""Every task, recorded: a small SQLite database in the platform's data dir.

Writing is on the path of every wrapped command, and many terminals finish at once. So a finished
task is first appended as one JSON line to a journal beside the database — one ``write()`` under a
shared ``flock``, no SQLite on that path — and the journal is folded into the database (under an
exclusive lock, idempotently on ``event_id``) whenever the history is read or the journal grows.
The database itself runs in WAL mode and retries on ``database is locked``. A write that cannot
happen at all (read-only home, full disk) is reported by the caller in one line; the command's
exit code is never touched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from claude_notify.events import TaskEvent

if sys.platform != "win32":
    import fcntl
if TYPE_CHECKING:
    import sqlite3

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    task_id     TEXT NOT NULL,
    source      TEXT NOT NULL,
    type        TEXT NOT NULL,
    status      TEXT NOT NULL,
    command     TEXT NOT NULL,
    cwd         TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    duration_s  REAL,
    exit_code   INTEGER,
    notified    INTEGER NOT NULL,
    muted       TEXT,
    event       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, id);
"""


def default_path() -> Path:
    """``history.sqlite3`` in the platform's data dir (``$CLAUDE_NOTIFY_DATA_DIR`` overrides)."""
    from claude_notify.paths import data_dir

    return data_dir() / "history.sqlite3"


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded task event."""

    id: int
    event: TaskEvent
    notified: bool
    muted: str | None


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    import sqlite3

    fresh = not path.exists()
    if fresh or (sys.platform != "win32"
                 and (path.stat().st_mode | path.parent.stat().st_mode) & 0o077):
        _private(path)
    with closing(sqlite3.connect(path, timeout=10.0, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout = 10000")
        if fresh or conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        conn.execute("PRAGMA synchronous = NORMAL")
        yield conn


def _private(path: Path) -> None:
    """The data dir 0700 and the database 0600 (output tails are in it), created so before
    SQLite opens it: SQLite gives its -wal and -shm files the database's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":  # modes mean little there; the profile dir is the user's
        path.parent.chmod(0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", _journal(path).name):
            try:
                path.with_name(name).chmod(0o600)  # an older history, made with the umask's
            except FileNotFoundError:
                pass


JOURNAL_LIMIT: Final = 256 * 1024
"""Fold the journal into the database once it is this big, even if nobody reads the history."""


def record(event: TaskEvent, *, notified: bool, muted: str | None = None,
           keep: int = 5000, path: Path | None = None) -> None:
    """Append one event to the journal (cheap, safe under concurrent writers)."""
    path = path or default_path()
    line = json.dumps({"notified": notified, "muted": muted, "keep": keep,
                       "event": event.to_dict()}, ensure_ascii=False) + "\n"
    if _append(line, path, keep=keep) > JOURNAL_LIMIT:
        fold(path)


def record_delivery_failure(event_id: str, why: str, *, path: Path | None = None) -> None:
    """The notification the event was recorded with could not be shown: say so, and why.

    Recorded after the event (the history is written first, so an interrupted send still
    leaves a row); only failures are written, so a delivered notification costs nothing here.
    """
    path = path or default_path()
    line = json.dumps({"delivery": {"event_id": event_id, "why": why[:300]}},
                      ensure_ascii=False) + "\n"
    _append(line, path, keep=None)


def _append(line: str, path: Path, *, keep: int | None) -> int:
    """One journal line under a shared lock; the journal's size after it (0 on Windows)."""
    if sys.platform == "win32":  # no flock: write the database directly
        _ingest_lines([line], path, keep=keep)
        return 0
    else:
        if not path.parent.is_dir():
            _private(path)
        fd = os.open(_journal(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            data = line.encode("utf-8")
            written = os.write(fd, data)
            while written < len(data):  # regular files write whole; be correct anyway
                written += os.write(fd, data[written:])
            return os.fstat(fd).st_size
        finally:
            os.close(fd)  # releases the lock


def fold(path: Path | None = None) -> None:
    """Move the journal's records into the database."""
    path = path or default_path()
    journal = _journal(path)
    if sys.platform == "win32":
        return
    else:  # a platform branch: mypy skips it elsewhere
        if not journal.exists():
            return
        fd = os.open(journal, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # writers wait (for a moment) while we fold
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            if data:
                lines = data.decode("utf-8", errors="replace").splitlines()
                _ingest_lines(lines, path, keep=None)
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _parse_journal(lines: list[str]) -> tuple[list[tuple[Any, ...]], list[int],
                                              list[tuple[str, str]]]:
    """The journal's lines as task rows, their ``keep`` settings and undelivered marks."""
    rows: list[tuple[Any, ...]] = []
    keeps: list[int] = []
    undelivered: list[tuple[str, str]] = []
    for line in lines:
        try:
            item = json.loads(line)
            if "delivery" in item:
                failed = item["delivery"]
                undelivered.append((f"not delivered: {failed['why']}", str(failed["event_id"])))
                continue
            event = TaskEvent.from_dict(item["event"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from a crashed writer: the others still count
        keeps.append(int(item.get("keep") or 0))
        rows.append((event.event_id, event.task_id, event.source, event.type, event.status,
                     event.command, event.cwd, _iso(event.started_at), _iso(event.ended_at),
                     event.duration_s, event.exit_code, int(bool(item.get("notified"))),
                     item.get("muted"), json.dumps(item["event"])))
    return rows, keeps, undelivered


def _ingest_lines(lines: list[str], path: Path, *, keep: int | None) -> None:
    rows, keeps, undelivered = _parse_journal(lines)
    if not rows and not undelivered:
        return
    limit = keep if keep is not None else max(keeps, default=0)
    import sqlite3

    for attempt in range(50):
        try:
            with _connect(path) as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO tasks (event_id, task_id, source, type, status, command, cwd,"
                    " started_at, ended_at, duration_s, exit_code, notified, muted, event)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING",
                    rows)
                conn.executemany("UPDATE tasks SET notified = 0, muted = ? WHERE event_id = ?",
                                 undelivered)
                if limit > 0:
                    conn.execute("DELETE FROM tasks WHERE id <= (SELECT max(id) FROM tasks) - ?",
                                 (limit,))
                conn.execute("COMMIT")
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
    raise sqlite3.OperationalError("history database stayed locked")


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def query(*, limit: int = 20, failed: bool = False, path: Path | None = None) -> list[Entry]:
    """The newest entries first; ``failed`` keeps failures and interruptions only."""
    path = path or default_path()
    fold(path)
    if not path.exists():
        return []
    where = "WHERE status IN ('failure', 'interrupted')" if failed else ""
    with _connect(path) as conn:
        rows = conn.execute(f"SELECT id, event, notified, muted FROM tasks {where} "  # noqa: S608 - fixed text
                            "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [_entry(row) for row in rows]


def get(entry_id: int, *, path: Path | None = None) -> Entry | None:
    """One entry by its id."""
    path = path or default_path()
    fold(path)
    if not path.exists():
        return None
    with _connect(path) as conn:
        row = conn.execute("SELECT id, event, notified, muted FROM tasks WHERE id = ?",
                           (entry_id,)).fetchone()
    return _entry(row) if row else None


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(id=row[0], event=TaskEvent.from_dict(json.loads(row[1])),
                 notified=bool(row[2]), muted=row[3])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
