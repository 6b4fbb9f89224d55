"""The team tables: invites into a workspace and its activity log.

Imported by :mod:`claude_notify.cloud.server.db.models`, so they are part of ``Base.metadata``
wherever the other tables are. An invite's link secret is stored only as SHA-256.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from claude_notify.cloud.server.db.models import Base
from claude_notify.events import utcnow


class WorkspaceInvite(Base):
    """An e-mailed invitation: its link opens a page, only a POST from the invitee accepts it."""

    __tablename__ = "workspace_invites"
    __table_args__ = (Index("ix_workspace_invites_inviter_created", "invited_by", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    """Who sent it; the rows are also what the per-inviter rate limit counts."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """Who changed what in a workspace, and when: the activity page and its CSV."""

    __tablename__ = "workspace_audit"
    __table_args__ = (Index("ix_workspace_audit_workspace_at", "workspace_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    """``None`` once the person who acted has deleted their account (their e-mail stays)."""
    actor_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(48))
    """Dotted, e.g. ``member.invited``, ``channel.created``, ``relay.refused``."""
    target: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)
