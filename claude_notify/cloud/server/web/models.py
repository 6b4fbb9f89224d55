"""The web app's tables: browser sessions, the e-mailed links and GitHub sign-ins that start
them, and the GitHub accounts linked to users.

Imported by :mod:`claude_notify.cloud.server.db.models`, so they are part of ``Base.metadata``
wherever the other tables are. Every secret is stored only as SHA-256.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, Uuid
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
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), default=None, index=True
    )
    """The workspace this browser is looking at; ``None``: the user's own."""
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


class WebOAuthState(Base):
    """A GitHub sign-in this server started: its ``state`` and the browser that started it.

    The browser holds the PKCE verifier in a short-lived cookie; only its SHA-256 is here, so
    the callback acts only in that browser, and a row (used once, then spent) never holds
    anything that could finish the sign-in. The rows also count starts for the rate limit.
    """

    __tablename__ = "web_oauth_states"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(20))
    state_hash: Mapped[str] = mapped_column(String(64))
    browser_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class WebIdentity(Base):
    """An outside account (``github`` and its numeric user id) that signs ``user_id`` in.

    Keyed by the provider's immutable id, not by login or address, which their owners change.
    """

    __tablename__ = "web_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
