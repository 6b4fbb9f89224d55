"""The tables: the spec's users, tasks and notifications, plus workspaces, tokens, events,
channels and usage.

What people share hangs off a workspace (``workspace_id``): tasks, channels, deliveries, usage and
the plan. Every query in the API filters on the caller's workspace, and a member's personal
channel also on its owner (``user_id``), who also owns every row's *acting* side: which machine
reported a task, and so who alone may run commands there (the relay stays keyed by ``user_id``).
The per-attempt log hangs off a notification. ``notifications`` doubles as the delivery outbox: a
row is written in the same transaction as the event that caused it, before anything is sent.
"""

from __future__ import annotations

import sys
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from claude_notify.cloud.server.db.types import JSONType, SealedJSON, UTCDateTime
from claude_notify.events import utcnow

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:

    class StrEnum(str, Enum):  # 3.10 has no StrEnum: this is the part of it we use
        def __str__(self) -> str:
            return str(self.value)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can drop and alter them on both databases."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _owner() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


def _space() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    """IANA zone the user reads times in; their own workspace's quota day follows it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Role(StrEnum):
    """A member's role in a workspace, strongest first (:data:`ROLE_RANK`)."""

    OWNER = "owner"
    """Billing, ownership transfer, deleting the workspace; everything an admin may."""
    ADMIN = "admin"
    """Workspace channels, templates and invites; everything a member may."""
    MEMBER = "member"
    """Their machines report into the workspace; their own tokens and personal channels."""
    VIEWER = "viewer"
    """Reads tasks, logs and deliveries."""


ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Workspace(Base):
    """Who shares a plan, a quota, channels and tasks: every account owns one from its start
    (with the account's id, so the migration that introduced workspaces could map rows one to
    one; nothing relies on that since), and a Pro one admits up to five members."""

    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(100), default="")
    plan: Mapped[str] = mapped_column(String(16), default="free")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    """IANA zone that decides when the workspace's daily quota resets: its owner's."""
    transfer_to: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    """A member offered the ownership, until they accept it or ``transfer_expires_at``."""
    transfer_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceMember(Base):
    __tablename__ = "workspace_members"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    """A :class:`Role` value; exactly one ``owner`` per workspace."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _owner()
    workspace_id: Mapped[uuid.UUID] = _space()
    """The workspace the token acts in: its machine's tasks report there, its reads see it."""
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the secret: a leaked table cannot be replayed against the API."""
    prefix: Mapped[str] = mapped_column(String(16))
    """The first characters of the token, to tell tokens apart in listings."""
    scopes: Mapped[str] = mapped_column(String(200))
    """Space-separated scope names."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    """Indexed: each API replica looks for the last seconds' revocations to close agents."""
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        Index("ix_tasks_user_created", "user_id", "created_at"),
        Index("ix_tasks_workspace_created", "workspace_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _owner()
    """Whose machine reported it: the only person who may run commands for it."""
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    """Whose task list it is in (``ix_tasks_workspace_created`` leads with it)."""
    key: Mapped[str] = mapped_column(String(128))
    """The task id clients use (the event's ``task_id``); unique per user, not globally."""
    session_id: Mapped[str | None] = mapped_column(String(256), default=None)
    machine_id: Mapped[str | None] = mapped_column(String(128), default=None)
    source: Mapped[str | None] = mapped_column(String(16), default=None)
    """What sent its events (``run``, ``watch``, ``shell``, ``claude-code``, ``relay``): the
    first event's; ``None`` for a task registered but not yet heard from, or stored before."""
    cmd: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="running")
    notify_on: Mapped[str | None] = mapped_column(String(16), default=None)
    channels: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    """Channel types or names chosen at start; ``None`` means all the user's channels."""
    exit_code: Mapped[int | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    log_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("user_id", "event_id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _owner()
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"),
                                               index=True)
    event_id: Mapped[str] = mapped_column(String(128))
    """The client's idempotency key."""
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(SealedJSON)
    """The event as received (``TaskEvent.to_dict``), tail already cut to the plan's size; its
    output (tail, Claude's message) is sealed with the log keys at rest."""
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


INBOUND_KEYS: dict[str, str] = {
    "telegram": "chat_id",
    "discord": "discord_user_id",
    "feishu": "feishu_open_id",
    "slack": "slack_user_id",
}
"""Per channel type, the config value that inbound messages carry: the chat a Telegram reply
comes from, the linked Discord user, Feishu ``open_id`` or Slack ``team:user`` a slash command
comes from."""


def inbound_key(channel_type: str | None, config: dict[str, Any] | None) -> str | None:
    """What :attr:`Channel.inbound_key` holds for a channel of this type and config."""
    name = INBOUND_KEYS.get(channel_type or "")
    value = (config or {}).get(name) if name else None
    return None if value is None or isinstance(value, bool) else str(value)[:128]


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (Index("ix_channels_inbound", "type", "inbound_key"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _owner()
    """Who added it; for a personal channel, the only member who sees it and whose events it
    receives."""
    workspace_id: Mapped[uuid.UUID] = _space()
    personal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """``True``: its owner's own (their phone, their inbox); ``False``: the workspace's."""
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100), default="")
    config: Mapped[dict[str, Any]] = mapped_column()
    """User-level values only (address, URL, signing secret); operator credentials never."""
    rules: Mapped[dict[str, Any]] = mapped_column()
    """When to notify: ``{"on": [...triggers], "regex": ...}``."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    verify_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    """SHA-256 of the one-time verification secret, cleared once used."""
    verify_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    inbound_key: Mapped[str | None] = mapped_column(String(128), default=None)
    """``config``'s :data:`INBOUND_KEYS` value as text, kept by the validators below, so an
    inbound message finds its channels by index instead of reading every channel's config."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("config")
    def _config_changed(self, _name: str, config: dict[str, Any]) -> dict[str, Any]:
        self.inbound_key = inbound_key(self.type, config)
        return config

    @validates("type")
    def _type_changed(self, _name: str, channel_type: str) -> str:
        self.inbound_key = inbound_key(channel_type, self.config)
        return channel_type


class DeliveryStatus(StrEnum):
    """Where a notification stands: ``pending`` → ``sending`` → ``sent`` | ``dead``, or
    ``rejected`` without any attempt. Members are the strings stored in ``notifications.status``
    (and compare equal to them), so rows written before this enum read the same."""

    PENDING = "pending"
    """Waiting for a worker: new, or a retry waiting out its backoff (``next_attempt_at``)."""
    SENDING = "sending"
    """Claimed by a worker until ``lease_expires_at``; due again if the lease lapses."""
    SENT = "sent"
    """The provider accepted it."""
    DEAD = "dead"
    """A dead letter: a permanent failure, or retries used up."""
    REJECTED = "rejected"
    """Refused when queued (quota, an unverified recipient); never tried."""


class Delivery(Base):
    """One message to one channel, and the outbox row its delivery is driven from (a row of
    ``notifications``; not :class:`claude_notify.notifiers.base.Notification`, the content of a
    desktop notification)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_channel_provider", "channel_id", "provider_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    """The owner; ``None`` only for sign-in e-mails to an address with no account yet."""
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), default=None, index=True
    )
    """Whose quota and delivery list it is in; ``None`` for mail to a person (sign-in)."""
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), default=None, index=True
    )
    event_row_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), default=None, index=True
    )
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL"), default=None, index=True
    )
    channel_type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="event")
    """``event`` (a task event), ``verify`` (a recipient check), ``test`` or ``login``."""
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    """Pre-rendered content for ``verify``/``test``; event messages render from the event."""
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    """A :class:`DeliveryStatus` value."""
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    """Why it was rejected or dead, or the last retryable error."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    """Set on each claim; a worker whose lease lapsed cannot overwrite its successor's result."""
    provider_id: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class DeliveryAttempt(Base):
    """One try at sending a notification, written before the send and completed after."""

    __tablename__ = "delivery_attempts"

    id: Mapped[uuid.UUID] = _uuid_pk()
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16), default="started")
    """``started`` (still running, or the worker died), ``ok``, ``retry``, ``permanent``."""
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)


class UsageCounter(Base):
    """Notifications counted per workspace, day (in its zone) and kind, for quotas."""

    __tablename__ = "workspace_usage"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``all`` (every notification) or a channel type with its own limit (``sms``)."""
    count: Mapped[int] = mapped_column(Integer, default=0)


class TaskLog(Base):
    """A task's stored output: how much arrived, how much is kept, and a digest of all of it."""

    __tablename__ = "task_logs"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = _owner()
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_kept: Mapped[int] = mapped_column(BigInteger, default=0)
    digest: Mapped[str] = mapped_column(String(64))
    """Chained SHA-256 over every chunk ever received (``sha256(previous || chunk)``): proves
    what the whole log was after older parts were dropped to stay within the plan's cap."""
    output_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the command's whole output, sent by the machine that ran it when it ended."""
    output_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TaskLogChunk(Base):
    """One appended piece of output, encrypted with AES-256-GCM under a key from settings."""

    __tablename__ = "task_log_chunks"
    __table_args__ = (UniqueConstraint("task_id", "seq"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = _owner()
    seq: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(32))
    """Which settings key encrypted it, so keys can rotate without re-encrypting old chunks."""
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    """Plaintext bytes."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginRequest(Base):
    """A device-code sign-in: the CLI polls with ``device`` while the owner opens the link.

    Both secrets are stored only as SHA-256; the request expires, works once, and its rows are
    what the per-address and per-IP rate limits count.
    """

    __tablename__ = "login_requests"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320), index=True)
    device_hash: Mapped[str] = mapped_column(String(64), unique=True)
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column()
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    consumed_at: Mapped[datetime | None] = mapped_column(default=None)
    machine_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    """What the requesting CLI calls its machine: shown (escaped) on the approval page."""
    user_code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    """The code the CLI printed, which the approver must type; ``None``: cannot be approved."""
    code_failures: Mapped[int] = mapped_column(default=0, server_default="0")


from claude_notify.cloud.server.billing import models as _billing_models  # noqa: E402, F401 - its tables
from claude_notify.cloud.server.relay import models as _relay_models  # noqa: E402, F401 - its tables
from claude_notify.cloud.server.teams import models as _teams_models  # noqa: E402, F401 - its tables
from claude_notify.cloud.server.web import models as _web_models  # noqa: E402, F401 - its tables
