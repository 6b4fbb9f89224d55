"""What the relay keeps per app: the hub of connected agents and the limits, made on first use
(``create_app`` needs no change to carry it), and the one way a command is queued and its agent
woken."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.hub import Hub
from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.relay.queue import RelayPolicy
from claude_notify.cloud.server.settings import Settings

_lock = threading.Lock()
T = TypeVar("T")


class Relay:
    def __init__(self, policy: RelayPolicy, redis_url: str | None = None,
                 sessions: sessionmaker[Session] | None = None) -> None:
        self.hub = Hub(redis_url, _revoked_since(sessions) if sessions is not None else None)
        self.policy = policy

    def submit(self, sessions: sessionmaker[Session], origin: queue.Origin, *,
               to: queue.Target | str, command: str, kind: str, shown: Callable[[RelayCommand], T]
               ) -> T:
        """Queue ``command`` and wake its agent; ``shown(row)`` is read before the commit.

        A refusal is audited and committed, then raised as :class:`queue.CommandRefused`. Shared by
        the API and the chats' replies, which arrive with different origins and targets.
        """
        with sessions() as session:
            try:
                row = queue.enqueue(session, origin, to=to, command=command,
                                    policy=self.policy, kind=kind)
            except queue.CommandRefused:
                session.commit()
                raise
            out, machine_id = shown(row), row.machine_id
            session.commit()
        self.hub.wake((origin.user_id, machine_id))
        return out


def _revoked_since(sessions: sessionmaker[Session]) -> Callable[[datetime], list[uuid.UUID]]:
    def read(since: datetime) -> list[uuid.UUID]:
        with sessions() as session:
            return auth.revoked_since(session, since)

    return read


def relay_of(state: Any) -> Relay:
    """The app's relay (``app.state``), made on first use."""
    with _lock:
        relay = getattr(state, "relay", None)
        if relay is None:
            runtime = getattr(state, "runtime", None)
            settings = getattr(runtime, "settings", None)
            if not isinstance(settings, Settings):
                settings = Settings()
            relay = Relay(RelayPolicy.of(settings), settings.redis_url,
                          getattr(runtime, "sessions", None))
            state.relay = relay
    assert isinstance(relay, Relay)  # noqa: S101 - only this module sets it
    return relay
