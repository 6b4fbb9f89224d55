"""Clearing out rows whose time is over: sign-in links and device codes, GitHub sign-in flows,
and browser sessions, a day after they expired.

Nothing reads them after they expire (the rate limits count the last hour's), but a stranger who
asks for sign-in links from many addresses would otherwise grow those tables without end. The
delivery worker runs :func:`sweep` when it starts and every :data:`EVERY_S`; running it on
several workers at once deletes nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server.db.models import LoginRequest
from claude_notify.cloud.server.web.models import WebOAuthState, WebSession, WebSignin
from claude_notify.events import utcnow

EVERY_S: Final = 3600.0
KEEP: Final = timedelta(days=1)
"""How long an expired row stays: long enough to tell a late click "expired" rather than
"unknown" in the logs, short enough that nothing piles up."""


def sweep(sessions: sessionmaker[Session], now: datetime | None = None) -> dict[str, int]:
    """Delete what expired more than :data:`KEEP` ago; how many rows of each table went."""
    cutoff = (now or utcnow()) - KEEP
    gone: dict[str, int] = {}
    with sessions.begin() as session:
        for model in (LoginRequest, WebSignin, WebOAuthState, WebSession):
            result = session.execute(delete(model).where(model.expires_at < cutoff))
            gone[model.__tablename__] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return gone
