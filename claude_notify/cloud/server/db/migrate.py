"""Apply the Alembic migrations kept beside the models, without an ``alembic.ini``."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    """A config that runs on ``engine``'s connection, so tests and the CLI share one code path."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database up to ``revision`` (idempotent; safe on every start)."""
    command.upgrade(alembic_config(engine), revision)


@functools.cache
def code_heads() -> frozenset[str]:
    """The head revisions this version of the code was written for (read once: it never changes
    while the process runs)."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this version of the code ships, heads and their ancestors."""
    return frozenset(rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions())


def database_heads(connection: Connection) -> frozenset[str]:
    """The revisions recorded in the database's ``alembic_version`` (empty: never migrated)."""
    return frozenset(MigrationContext.configure(connection).get_current_heads())
