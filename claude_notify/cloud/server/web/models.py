"""The web app's tables: browser sessions and the e-mailed sign-in links that start them.

Imported by :mod:`claude_notify.cloud.server.db.models`, so they are part of ``Base.metadata``
wherever the other tables are. Both secrets are stored only as SHA-256.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from claude_notify.cloud.server.db.models import Base
from claude_notify.events import utcnow


class WebSession(Base):
    """A signed-in browser: its cookie's SHA-256, and the token its forms carry (CSRF)."""

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    form_token: Mapped[str] = mapped_column(String(64))
    """Put in every form of this session and checked on every POST: not a secret from the
    browser, only from other sites."""
    client_ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class WebSignin(Base):
    """An e-mailed sign-in link: its GET shows a page, only its POST signs in, and only once."""

    __tablename__ = "web_signins"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), index=True)
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
