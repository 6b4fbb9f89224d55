"""Alembic environment: runs on the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from claude_notify.cloud.server.db.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)  # noqa: S101 - set by claude_notify.cloud.server.db.migrate

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER constraints
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
