"""Alembic environment: runs on the engine handed over in ``config.attributes``."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine

from claude_notify.cloud.server.db.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)  # noqa: S101 - set by claude_notify.cloud.server.db.migrate



def _driver(connection: Connection) -> Any:
    """The sqlite3 connection itself, which runs a statement without SQLAlchemy's BEGIN."""
    driver = connection.connection.driver_connection
    assert driver is not None  # noqa: S101 - a connection that is open has one
    return driver


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode recreates a table to change it, dropping the old copy: with foreign keys
        # enforced, that drop would cascade to every child row (a task's events, say). The
        # pragma only takes effect outside a transaction, so it goes to the driver first.
        _driver(connection).execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,  # SQLite cannot ALTER constraints
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if sqlite:
            _driver(connection).execute("PRAGMA foreign_keys=ON")
