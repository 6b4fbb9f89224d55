"""Every task, recorded: a small SQLite database in the platform's data dir.

Many terminals finish at once, so writers must never lose a record nor fail the command: the
database runs in WAL mode (readers never block writers), each write waits for the lock
(``busy_timeout``) and is retried on the rare ``database is locked`` that still escapes it. A
write that cannot happen at all (read-only home, full disk) is reported by the caller in one line;
the command's exit code is never touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from claude_notify.events import TaskEvent

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
    override = os.environ.get("CLAUDE_NOTIFY_DATA_DIR")
    if override:
        return Path(override).expanduser() / "history.sqlite3"
    from platformdirs import user_data_path

    return user_data_path("claude-notify", appauthor=False) / "history.sqlite3"


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded task event."""

    id: int
    event: TaskEvent
    notified: bool
    muted: str | None


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    fresh = not path.exists()
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10.0, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout = 10000")
        if fresh or conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        conn.execute("PRAGMA synchronous = NORMAL")
        yield conn


def record(event: TaskEvent, *, notified: bool, muted: str | None = None,
           keep: int = 5000, path: Path | None = None) -> int:
    """Store one event (idempotent on ``event_id``); the entry's id. Prunes beyond ``keep``."""
    path = path or default_path()
    row = (event.event_id, event.task_id, event.source, event.type, event.status, event.command,
           event.cwd, _iso(event.started_at), _iso(event.ended_at), event.duration_s,
           event.exit_code, int(notified), muted, json.dumps(event.to_dict()))
    for attempt in range(20):
        try:
            with _connect(path) as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO tasks (event_id, task_id, source, type, status, command, cwd,"
                    " started_at, ended_at, duration_s, exit_code, notified, muted, event)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING", row)
                rowid = conn.execute("SELECT id FROM tasks WHERE event_id = ?",
                                     (event.event_id,)).fetchone()[0]
                if keep > 0 and rowid % 50 == 0:  # prune now and then, not on every write
                    conn.execute("DELETE FROM tasks WHERE id <= ?", (rowid - keep,))
                conn.execute("COMMIT")
                return int(rowid)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
    raise sqlite3.OperationalError("history database stayed locked")


def query(*, limit: int = 20, failed: bool = False, path: Path | None = None) -> list[Entry]:
    """The newest entries first; ``failed`` keeps failures and interruptions only."""
    path = path or default_path()
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
