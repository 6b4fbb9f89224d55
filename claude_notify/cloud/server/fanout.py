"""The fan-out: which of a user's channels an event notifies, and whether each may go.

For each event it picks the channels whose rules fire, then queues one outbox row per channel
(:mod:`claude_notify.cloud.server.outbox`) in the event's own transaction: ``pending`` (a worker
will send it) or ``rejected`` with the reason (plan, quota, unverified recipient, disabled
channel). Nothing is dropped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import outbox, quota
from claude_notify.cloud.server.channels.catalog import NEEDS_VERIFICATION
from claude_notify.cloud.server.db.models import Channel, DeliveryStatus
from claude_notify.cloud.server.patterns import matches
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

NOTIFY_ON_TRIGGERS = {
    "exit": frozenset({"finished", "failure", "needs_input"}),
    "partial": frozenset({"finished", "failure", "needs_input", "progress"}),
    "custom_regex": frozenset({"finished", "failure", "needs_input", "match"}),
}
"""What a task registered with ``POST /v1/tasks`` allows, by its ``notify_on``."""


def triggers(event: TaskEvent) -> frozenset[str]:
    """The rule triggers an event can fire."""
    if event.type == "finished":
        failed = event.status in ("failure", "interrupted")
        return frozenset({"finished", "failure"} if failed else {"finished"})
    if event.type in ("progress", "match", "needs_input"):
        return frozenset({event.type})
    return frozenset()


class TaskRules(Protocol):
    """What a task chose at its start (``POST /v1/tasks``)."""

    @property
    def channels(self) -> list[str] | None: ...
    @property
    def notify_on(self) -> str | None: ...


class ChannelRules(Protocol):
    """The columns of a channel that decide whether, and whether it may, send."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def rules(self) -> dict[str, Any]: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def disabled_reason(self) -> str | None: ...
    @property
    def verified_at(self) -> datetime | None: ...


def channel_fires(
    channel: ChannelRules, task: TaskRules, event: TaskEvent, fired: frozenset[str]
) -> bool:
    """Whether this channel's rules, and the task's own choices, want this event."""
    if task.channels is not None and not {channel.type, channel.name, str(channel.id)} & set(
        task.channels
    ):
        return False
    allowed = NOTIFY_ON_TRIGGERS.get(task.notify_on or "", frozenset(fired))
    wanted = set(channel.rules.get("on", ["finished"])) & fired & allowed
    if wanted == {"match"} and (pattern := channel.rules.get("regex")):
        return matches(pattern, event.match or "")
    return bool(wanted)


class Owner(Protocol):
    """Whose event it is: the person whose machine sent it, in the workspace whose plan and
    quota zone count (the authenticated caller, or :class:`Acting`)."""

    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def workspace_id(self) -> uuid.UUID: ...
    @property
    def plan(self) -> str: ...
    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Planned:
    """One notification decided for an event."""

    id: uuid.UUID
    channel_id: uuid.UUID | None
    channel_type: str
    status: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "channel_id": str(self.channel_id) if self.channel_id else None,
            "channel_type": self.channel_type,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Acting:
    """An :class:`Owner` read from the rows, for events the server itself records (a relayed
    command's end, a log's close)."""

    user_id: uuid.UUID
    workspace_id: uuid.UUID
    plan: str
    timezone: str


class EventTask(TaskRules, Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def workspace_id(self) -> uuid.UUID: ...


def plan_notifications(
    session: Session,
    *,
    user: Owner,
    task: EventTask,
    event: TaskEvent,
    event_row_id: uuid.UUID,
    now: datetime,
    settings: Settings,
    memo: dict[Any, Any] | None = None,
) -> list[Planned]:
    """Write the notification rows for one event; the caller commits with the event.

    ``memo`` carries the user's channels between events written in one transaction.
    """
    fired = triggers(event)
    if not fired:
        return []
    day = quota.quota_day(now, user.timezone)
    planned = []
    rows: list[dict[str, Any]] = []
    # The task's workspace, not the token's: a task stays where it was first reported.
    for channel in _channels(session, task.workspace_id, user.user_id, memo):
        if not channel_fires(channel, task, event, fired):
            continue
        reason = _refusal(channel) or _over_sends(rows, settings) or quota.take(
            session,
            workspace_id=task.workspace_id,
            plan=user.plan,
            channel_type=channel.type,
            day=day,
            settings=settings,
        )
        row = outbox.event_row(user_id=user.user_id, workspace_id=task.workspace_id,
                               task_id=task.id, event_row_id=event_row_id,
                               channel_id=channel.id, channel_type=channel.type, reason=reason,
                               now=now)
        rows.append(row)
        planned.append(Planned(row["id"], channel.id, channel.type, row["status"], reason))
    outbox.queue_events(session, rows)
    return planned


def _channels(session: Session, workspace_id: uuid.UUID, user_id: uuid.UUID,
              memo: dict[Any, Any] | None) -> Sequence[ChannelRules]:
    """The workspace's shared channels and the member's personal ones, read once per
    transaction when ``memo`` is given."""
    key = ("channels", workspace_id, user_id)
    if memo is not None and key in memo:
        found: Sequence[ChannelRules] = memo[key]
        return found
    channels: Sequence[ChannelRules] = session.execute(
        _CHANNELS, {"workspace_id": workspace_id, "user_id": user_id}).all()
    if memo is not None:
        memo[key] = channels
    return channels


_CHANNEL_TABLE: Any = Channel.__table__
_CHANNELS = (
    select(*(_CHANNEL_TABLE.c[name] for name in
             ("id", "type", "name", "rules", "enabled", "disabled_reason", "verified_at")))
    .where(_CHANNEL_TABLE.c.workspace_id == bindparam("workspace_id"),
           ~_CHANNEL_TABLE.c.personal | (_CHANNEL_TABLE.c.user_id == bindparam("user_id")))
    .order_by(_CHANNEL_TABLE.c.created_at, _CHANNEL_TABLE.c.id)
)


def _over_sends(rows: list[dict[str, Any]], settings: Settings) -> str | None:
    """Refused once the event has queued ``max_sends_per_event`` (before taking quota)."""
    if sum(row["status"] == DeliveryStatus.PENDING for row in rows) < settings.max_sends_per_event:
        return None
    return f"at most {settings.max_sends_per_event} notifications are sent for one event"


def _refusal(channel: ChannelRules) -> str | None:
    if not channel.enabled:
        return f"channel disabled: {channel.disabled_reason or 'by its owner'}"
    if channel.type in NEEDS_VERIFICATION and channel.verified_at is None:
        return "recipient not verified yet"
    return None
