"""The relay's tables: agents bound to machines, queued commands, and the audit log.

Imported by :mod:`claude_notify.cloud.server.db.models`, so they are part of ``Base.metadata``
wherever the other tables are.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from claude_notify.cloud.server.db.models import Base
from claude_notify.cloud.server.db.types import JSONType, SealedText
from claude_notify.events import utcnow


class RelayAgent(Base):
    """A ``relay`` token bound to one machine: the only thing an agent connection can act for."""

    __tablename__ = "relay_agents"

    token_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    machine_id: Mapped[str] = mapped_column(String(128))
    sessions: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    """The sessions the agent said it serves when it last connected."""
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    """What the agent said it may run when it last connected (``allow``, ``deny``, ``dirs``,
    ``claude``): shown to its owner, never used to decide (the agent decides, on the machine)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    """Its last connection, and while connected its heartbeats (written once a minute)."""


class RelayCommand(Base):
    """One command for one session; its state only ever moves forward."""

    __tablename__ = "relay_commands"
    __table_args__ = (
        Index("ix_relay_commands_route", "user_id", "machine_id", "state"),
        Index("ix_relay_commands_user_created", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    machine_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(256))
    command: Mapped[str] = mapped_column(Text)
    cwd: Mapped[str | None] = mapped_column(Text, default=None)
    """The directory the answered task ran in, from its notification's event (or, from the API,
    the session's latest run that reported one); the agent decides if it may run there."""
    source: Mapped[str] = mapped_column(String(16), default="api")
    kind: Mapped[str] = mapped_column(String(16), default="shell", server_default="shell")
    """``shell`` (a command line) or ``claude`` (a prompt continuing the Claude Code session)."""
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """``queued`` → ``delivered`` → ``running`` → ``done`` | ``failed``; or ``expired``."""
    detail: Mapped[str | None] = mapped_column(SealedText, default=None)
    """Why it failed or was refused; sealed at rest (a Claude turn's failure quotes Claude)."""
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class RelayAudit(Base):
    """Every relayed command, accepted or refused: who, what, where, when and the outcome."""

    __tablename__ = "relay_audit"
    __table_args__ = (Index("ix_relay_audit_user_created", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    command_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    actor: Mapped[str] = mapped_column(String(128))
    """Which token (its prefix) or which chat user sent it, or ``agent`` for what it reported."""
    source: Mapped[str] = mapped_column(String(16))
    machine_id: Mapped[str | None] = mapped_column(String(128), default=None)
    session_id: Mapped[str | None] = mapped_column(String(256), default=None)
    command: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    """``queued``, ``refused``, ``started``, ``done``, ``failed``, ``expired``; ``shown`` for a
    chat's "Show log" press (held to the rate limit like a command)."""
    reason: Mapped[str | None] = mapped_column(SealedText, default=None)
    """Why refused, or the command's detail; sealed at rest like it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RelayReplyToken(Base):
    """A phone's key to one session: it can queue a command there, and do nothing else.

    Issued with a task notification that can be replied to; the secret is shown only in that
    message (its link), the database keeps its SHA-256. Re-sending the notification rotates it.
    """

    __tablename__ = "relay_reply_tokens"
    __table_args__ = (Index("ix_relay_reply_tokens_expires", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), unique=True, default=None
    )
    machine_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(256))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class RelayInboundSeen(Base):
    """A provider request already handled (a Feishu ``event_id``, a Discord interaction id).

    The primary key arbitrates: of two deliveries of one request, on any replica, one inserts the
    row and runs; the other finds it and runs nothing.
    """

    __tablename__ = "relay_inbound_seen"
    __table_args__ = (Index("ix_relay_inbound_seen_seen_at", "seen_at"),)

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Approval(Base):
    """One permission request of Claude Code, put to the machine's owner on their phone.

    Filed by the agent (its id is the agent's, so filing again after a reconnect adds nothing);
    ``state`` leaves ``pending`` once, by one conditional ``UPDATE … WHERE state = 'pending'``, so
    of a press, a web answer, the terminal's withdrawal and the expiry the first wins and the rest
    are told "already answered".
    """

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_route", "user_id", "machine_id", "state"),
                      Index("ix_approvals_session", "user_id", "session_id", "state"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    machine_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(256))
    tool_use_id: Mapped[str | None] = mapped_column(String(128), default=None)
    """Set for a relayed ``claude -p`` turn's deferred call (the interactive dialog has none)."""
    tool_name: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical JSON of the call (tool name and input): an answer applies to the
    call it was made for and no other."""
    display: Mapped[str] = mapped_column(SealedText)
    """What the call does, literally (the command; the file and a diff summary), bounded."""
    cwd: Mapped[str | None] = mapped_column(Text, default=None)
    suggestions: Mapped[list[Any] | None] = mapped_column(JSONType, default=None)
    """Labels of the "always" answers Claude offered (the entries themselves stay local); for
    Claude's questions (``AskUserQuestion``), which offer none, their shape instead (see
    :mod:`~claude_notify.cloud.server.relay.approval_kinds`)."""
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending`` → ``allowed`` | ``denied`` | ``expired`` | ``withdrawn``."""
    suggestion: Mapped[int | None] = mapped_column(Integer, default=None)
    """The "always" answer chosen, by index into ``suggestions``; for Claude's questions, the
    options chosen (a bit mask, see :mod:`~claude_notify.cloud.server.relay.approval_kinds`)."""
    decided_by: Mapped[str | None] = mapped_column(String(128), default=None)
    note: Mapped[str | None] = mapped_column(SealedText, default=None)
    cards: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    """Where it was shown: ``[{"channel": id, "chat": chat id, "message": message id}]`` for a
    Telegram card, ``{"kind": "discord" | "feishu", "user": account, "chat", "message"}`` for the
    others, so the cards can be edited once it is answered, and a press is taken only on one of
    them."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    reported_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the answer was handed to the agent's connection."""


class ApprovalLink(Base):
    """The single-use key of an approval's e-mailed link (:mod:`.email_approvals`).

    The secret is only in the mail (the link's fragment); this row keeps its SHA-256. It expires
    with its approval and is spent by the answer it carries, in the same transaction.
    """

    __tablename__ = "approval_links"

    approval_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
