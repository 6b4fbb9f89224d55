"""Which of a user's channels an event notifies, and whether each notification may go.

For each event it picks the channels whose rules fire, then writes one ``notifications`` row per
channel in the event's own transaction: ``pending`` (the outbox: a worker will send it) or
``rejected`` with the reason (plan, quota, unverified recipient, disabled channel). Nothing is
dropped silently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import quota
from claude_notify.cloud.server.channels.catalog import NEEDS_VERIFICATION
from claude_notify.cloud.server.db.models import Channel, Notification, Task
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


def channel_fires(channel: Channel, task: Task, event: TaskEvent, fired: frozenset[str]) -> bool:
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
    """Whose event it is: the account row, or the authenticated caller standing for it."""

    @property
    def id(self) -> uuid.UUID: ...
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


def plan_notifications(
    session: Session,
    *,
    user: Owner,
    task: Task,
    event: TaskEvent,
    event_row_id: uuid.UUID,
    now: datetime,
    settings: Settings,
) -> list[Planned]:
    """Write the notification rows for one event; the caller commits with the event."""
    fired = triggers(event)
    if not fired:
        return []
    channels = session.scalars(
        select(Channel).where(Channel.user_id == user.id).order_by(Channel.created_at, Channel.id)
    ).all()
    day = quota.quota_day(now, user.timezone)
    planned = []
    for channel in channels:
        if not channel_fires(channel, task, event, fired):
            continue
        reason = _refusal(channel) or quota.take(
            session,
            user_id=user.id,
            plan=user.plan,
            channel_type=channel.type,
            day=day,
            settings=settings,
        )
        row = Notification(
            id=uuid.uuid4(),
            user_id=user.id,
            task_id=task.id,
            event_row_id=event_row_id,
            channel_id=channel.id,
            channel_type=channel.type,
            kind="event",
            status="rejected" if reason else "pending",
            reason=reason,
            next_attempt_at=None if reason else now,
            created_at=now,
        )
        session.add(row)
        planned.append(Planned(row.id, channel.id, channel.type, row.status, reason))
    return planned


def _refusal(channel: Channel) -> str | None:
    if not channel.enabled:
        return f"channel disabled: {channel.disabled_reason or 'by its owner'}"
    if channel.type in NEEDS_VERIFICATION and channel.verified_at is None:
        return "recipient not verified yet"
    return None
