"""Migrations and models agree, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from claude_notify.cloud.server.db.migrate import migrate
from claude_notify.cloud.server.db.models import Base, User
from claude_notify.cloud.server.runtime import Runtime


def test_migrations_match_the_models(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_is_idempotent(runtime: Runtime) -> None:
    migrate(runtime.engine)
    migrate(runtime.engine)


def test_timestamps_come_back_aware_in_utc(runtime: Runtime) -> None:
    stamp = datetime(2025, 7, 1, 12, 30, tzinfo=timezone.utc)
    with runtime.sessions.begin() as session:
        session.add(User(email="tz@example.com", plan="free", created_at=stamp))
    with runtime.sessions() as session:
        user = session.scalars(select(User).where(User.email == "tz@example.com")).one()
    assert user.created_at == stamp
    assert user.created_at.tzinfo is not None
