"""What a running server holds: settings, the database and the wake-up signal, built once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server.db.engine import make_engine, make_sessionmaker
from claude_notify.cloud.server.delivery.wake import LocalWaker, Waker
from claude_notify.cloud.server.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    waker: Waker

    @classmethod
    def build(cls, settings: Settings, *, waker: Waker | None = None) -> Runtime:
        engine = make_engine(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            waker=waker or LocalWaker(),
        )

    def close(self) -> None:
        self.engine.dispose()
