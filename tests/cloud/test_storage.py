"""Migrations and models agree, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timezone

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    PrimaryKeyConstraint,
    UniqueConstraint,
    Uuid,
    column,
    insert,
    select,
    table,
)

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.migrate import alembic_config, migrate
from claude_notify.cloud.server.db.models import Base, Channel, User
from claude_notify.cloud.server.db.types import JSONType, UTCDateTime
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings


def test_migrations_match_the_models(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_every_foreign_key_leads_an_index() -> None:
    """A lookup by owner or task, and each cascade of a delete, finds its rows by index: a foreign
    key no index starts with makes PostgreSQL scan the whole child table for every parent row."""
    import claude_notify.cloud.server.relay.models  # noqa: F401 - its tables join the metadata

    bare = []
    for tbl in Base.metadata.sorted_tables:
        leads = {next(iter(index.columns)).name for index in tbl.indexes}
        leads |= {c.columns[0].name for c in tbl.constraints
                  if isinstance(c, UniqueConstraint | PrimaryKeyConstraint)}
        bare += [f"{tbl.name}.{fk.parent.name}" for fk in tbl.foreign_keys
                 if fk.parent.name not in leads]
    assert bare == []


def test_migrate_is_idempotent(runtime: Runtime) -> None:
    migrate(runtime.engine)
    migrate(runtime.engine)


def test_timestamps_come_back_aware_in_utc(runtime: Runtime) -> None:
    stamp = datetime(2025, 7, 1, 12, 30, tzinfo=timezone.utc)
    with runtime.sessions.begin() as session:
        session.add(User(email="tz@example.com", created_at=stamp))
    with runtime.sessions() as session:
        user = session.scalars(select(User).where(User.email == "tz@example.com")).one()
    assert user.created_at == stamp
    assert user.created_at.tzinfo is not None


KEYED = [
    ("telegram", {"chat_id": -1001234}, "-1001234"),
    ("discord", {"url": "https://discord.com/api/webhooks/1/x", "discord_user_id": "8000"},
     "8000"),
    ("feishu", {"url": "https://open.feishu.cn/x", "feishu_open_id": "ou_abc"}, "ou_abc"),
    ("webhook", {"url": "https://example.com/hook", "chat_id": 7}, None),
    ("telegram", {}, None),
]


def test_migration_0009_fills_the_inbound_key_of_existing_channels(runtime: Runtime) -> None:
    command.downgrade(alembic_config(runtime.engine), "0008")
    try:
        channels = table("channels", column("id", Uuid), column("user_id", Uuid),
                         column("type"), column("name"), column("config", JSONType),
                         column("rules", JSONType), column("enabled"),
                         column("created_at", UTCDateTime), column("updated_at", UTCDateTime))
        now = datetime.now(timezone.utc)
        users = table("users", column("id", Uuid), column("email"), column("plan"),
                      column("timezone"), column("created_at", UTCDateTime))
        with runtime.sessions.begin() as session:
            user_id = uuid.uuid4()
            session.execute(insert(users).values(id=user_id, email="keys@example.com", plan="pro",
                                                 timezone="UTC", created_at=now))
            ids = [uuid.uuid4() for _ in KEYED]
            session.execute(insert(channels), [
                {"id": i, "user_id": user_id, "type": kind, "name": "", "config": config,
                 "rules": {}, "enabled": True, "created_at": now, "updated_at": now}
                for i, (kind, config, _) in zip(ids, KEYED, strict=True)])
    finally:
        migrate(runtime.engine)
    with runtime.sessions() as session:
        found = dict(session.execute(select(Channel.id, Channel.inbound_key)).all())
    assert [found[i] for i in ids] == [key for _, _, key in KEYED]


def test_a_channel_s_inbound_key_follows_its_type_and_config(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        user = auth.create_account(session, "follow@example.com", plan="pro")
        made = [Channel(user_id=user.id, workspace_id=user.id, type=kind, config=config, rules={})
                for kind, config, _ in KEYED]
        made.append(Channel(user_id=user.id, workspace_id=user.id, config={"chat_id": 42},
                            type="telegram", rules={}))
        session.add_all(made)
        assert [c.inbound_key for c in made] == [key for _, _, key in KEYED] + ["42"]
        made[0].config = {**made[0].config, "chat_id": -100999}  # Telegram moved the group
        made[3].type = "telegram"
        session.flush()
        ids = [c.id for c in made]
    with runtime.sessions() as session:
        stored = dict(session.execute(select(Channel.id, Channel.inbound_key)).all())
    assert stored[ids[0]] == "-100999" and stored[ids[3]] == "7"


def test_a_connection_still_out_when_the_runtime_closes_is_closed_when_it_comes_back(
    settings: Settings,
) -> None:
    """A request thread mid-query at shutdown returns its connection to a discarded pool: it is
    closed then, not left open until the garbage collector finds it (psycopg warns there)."""
    built = Runtime.build(settings)
    late = built.engine.connect()
    late.execute(select(1))
    raw = late.connection.dbapi_connection
    built.close()
    assert not _closed(raw)  # still the thread's
    late.close()
    assert _closed(raw)
    again = built.engine.connect()  # used after close: the same holds
    raw = again.connection.dbapi_connection
    again.close()
    assert _closed(raw)


def _closed(raw: object) -> bool:
    if hasattr(raw, "closed"):  # psycopg
        return bool(raw.closed)
    try:  # sqlite3 says so only when used
        raw.execute("SELECT 1")  # type: ignore[attr-defined]
    except sqlite3.ProgrammingError:
        return True
    return False
