"""What a running server holds: settings, the database and the wake-up signal, built once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server.db.engine import close_engine, make_engine, make_sessionmaker
from claude_notify.cloud.server.db.types import bind_cipher
from claude_notify.cloud.server.delivery.wake import LocalWaker, Waker
from claude_notify.cloud.server.groupcommit import GroupCommit
from claude_notify.cloud.server.limits import PerMinute, Slots
from claude_notify.cloud.server.logcrypt import LogCipher
from claude_notify.cloud.server.metrics import Metrics
from claude_notify.cloud.server.redact import remember
from claude_notify.cloud.server.settings import Settings

log = logging.getLogger("claude_notify.server")


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    waker: Waker
    metrics: Metrics = field(default_factory=Metrics)
    writes: GroupCommit = field(init=False)
    """Where ``POST /v1/events`` writes: requests arriving together share a transaction."""
    event_rate: PerMinute = field(init=False)
    """Events per token per minute (``settings.events_per_minute``)."""
    agent_sockets: Slots = field(init=False)
    """Agent connections per account held open to this process."""

    def __post_init__(self) -> None:
        remember(self.settings)  # masked wherever they would be logged or stored
        if self.settings.log_keys:
            bind_cipher(self.engine, LogCipher(self.settings.log_keys))
        else:
            log.warning("no log keys (CLAUDE_NOTIFY_SERVER_LOG_KEYS): task logs cannot be "
                        "stored and the output in task events is stored in clear")
        # SQLite has one writer whatever we do; PostgreSQL overlaps two batches' round trips.
        writers = 1 if self.engine.dialect.name == "sqlite" else 2
        self.writes = GroupCommit(self.sessions, writers=writers)
        self.event_rate = PerMinute(self.settings.events_per_minute)
        self.agent_sockets = Slots(self.settings.max_sockets_per_user)

    @classmethod
    def build(cls, settings: Settings, *, waker: Waker | None = None) -> Runtime:
        engine = make_engine(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            waker=waker or _waker(settings),
        )

    def close(self) -> None:
        self.writes.close()
        close_engine(self.engine)
        close = getattr(self.waker, "close", None)
        if close is not None:
            close()


def _waker(settings: Settings) -> Waker:
    """Celery (on Redis) wakes distributed workers; else the embedded worker, in-process."""
    if settings.redis_url and not settings.embedded_worker:
        from claude_notify.cloud.server.delivery.celery_wake import CeleryWaker

        return CeleryWaker(settings.redis_url, settings.database_url)
    return LocalWaker()
