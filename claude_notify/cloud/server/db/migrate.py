"""Apply the Alembic migrations kept beside the models, without an ``alembic.ini``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

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
