"""Engine and session factory, with the per-database settings that make both behave alike."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30.0


_CLOSED: weakref.WeakSet[Engine] = weakref.WeakSet()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and write-intent transactions."""
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)
    alive = weakref.ref(engine)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, _record: Any) -> None:
        # Returned after close_engine (a thread that was mid-query at shutdown): no one will
        # reuse it, and left open in the discarded pool it would be closed only by the GC.
        if dbapi_conn is not None and alive() in _CLOSED:
            dbapi_conn.close()

    return engine


def close_engine(engine: Engine) -> None:
    """Close the pool's connections now, and any still checked out when they come back."""
    _CLOSED.add(engine)
    engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that later writes can fail with
        # "database is locked" instead of waiting, which would turn contention into errors.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit, so handlers can answer from them."""
    return sessionmaker(engine, expire_on_commit=False)
