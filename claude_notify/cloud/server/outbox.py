"""The outbox: every ``notifications`` row is written here, and a worker sends what is pending.

A row is written in the transaction of whatever caused it (an event, a channel change, a relay
answer), so it is queued if and only if that commits; the delivery worker claims ``pending`` rows
and retries them (:mod:`claude_notify.cloud.server.delivery.engine`). The caller commits, then
wakes the workers (``runtime.waker.wake()``).

A row's ``kind`` says what it is, and is shown by ``GET /v1/notifications``:

* :data:`EVENT`: a task event's notification, rendered at delivery from the event;
* :data:`TEST`: ``POST /v1/channels/{id}/test``;
* :data:`VERIFY`: a recipient's confirmation link or code;
* :data:`LOGIN`: a sign-in link, addressed to an e-mail address rather than a channel;
* :data:`LINKED`: "this chat is now linked", after a Telegram ``/start CODE``;
* :data:`RELAY`: the one-line answer to a command sent from a chat;
* :data:`BILLING`: a plan change ("Welcome to Pro", "payment failed"), to the account's address.
* :data:`INVITE`: an invitation into a workspace, to the invited address.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server.db.models import Channel, Delivery, DeliveryStatus
from claude_notify.events import utcnow

if TYPE_CHECKING:
    from claude_notify.cloud.server.teams.access import Member

EVENT: Final = "event"
TEST: Final = "test"
VERIFY: Final = "verify"
LOGIN: Final = "login"
LINKED: Final = "linked"
RELAY: Final = "relay"
BILLING: Final = "billing"
INVITE: Final = "invite"


class Recipient(Protocol):
    """The columns of a channel a row is addressed to."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def workspace_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...


def queue(session: Session, channel: Recipient, kind: str, payload: dict[str, Any]) -> uuid.UUID:
    """Queue one message (``subject``, ``text``, ``html``) for ``channel``; its row's id."""
    row = Delivery(
        id=uuid.uuid4(),
        user_id=channel.user_id,
        workspace_id=channel.workspace_id,
        channel_id=channel.id,
        channel_type=channel.type,
        kind=kind,
        payload=payload,
        status=DeliveryStatus.PENDING,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    return row.id


def queue_login(session: Session, *, user_id: uuid.UUID | None, address: str,
                payload: dict[str, Any], now: datetime) -> uuid.UUID:
    """Queue a sign-in e-mail to ``address`` (no channel; ``user_id`` is ``None`` before the
    account exists)."""
    row = Delivery(
        id=uuid.uuid4(),
        user_id=user_id,
        channel_type="email",
        kind=LOGIN,
        payload={"to": address, **payload},
        status=DeliveryStatus.PENDING,
        next_attempt_at=now,
    )
    session.add(row)
    return row.id


def queue_invite(session: Session, *, workspace_id: uuid.UUID, address: str,
                 payload: dict[str, Any], now: datetime) -> uuid.UUID:
    """Queue an invitation to ``address`` (no channel, and no account behind it yet)."""
    row = Delivery(id=uuid.uuid4(), user_id=None, workspace_id=workspace_id,
                   channel_type="email", kind=INVITE, payload={"to": address, **payload},
                   status=DeliveryStatus.PENDING, next_attempt_at=now, created_at=now)
    session.add(row)
    return row.id


def queue_billing(session: Session, *, user_id: uuid.UUID, address: str,
                  payload: dict[str, Any], now: datetime) -> uuid.UUID:
    """Queue a billing e-mail to the account's own address, whatever its channels: a plan
    change is news about the account, not a notification the user routed somewhere."""
    row = Delivery(id=uuid.uuid4(), user_id=user_id, channel_type="email", kind=BILLING,
                   payload={"to": address, **payload}, status=DeliveryStatus.PENDING,
                   next_attempt_at=now, created_at=now)
    session.add(row)
    return row.id


def event_row(*, user_id: uuid.UUID, workspace_id: uuid.UUID, task_id: uuid.UUID,
              event_row_id: uuid.UUID,
              channel_id: uuid.UUID, channel_type: str, reason: str | None,
              now: datetime) -> dict[str, Any]:
    """One event notification for :func:`queue_events`: ``pending``, or ``rejected`` with the
    reason (kept, never dropped, so the user can see why nothing came)."""
    return {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "workspace_id": workspace_id,
        "task_id": task_id,
        "event_row_id": event_row_id,
        "channel_id": channel_id,
        "channel_type": channel_type,
        "kind": EVENT,
        "status": DeliveryStatus.REJECTED if reason else DeliveryStatus.PENDING,
        "reason": reason,
        "attempts": 0,
        "next_attempt_at": None if reason else now,
        "created_at": now,
    }


def queue_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write an event's rows (from :func:`event_row`) with one statement."""
    if rows:
        session.execute(_INSERT, rows)


_TABLE: Any = Delivery.__table__
_INSERT = insert(_TABLE)  # Core: the ORM's bulk path costs more here


class NotReplayable(Exception):
    """Only a dead letter goes back in the outbox."""


def visible(who: Member) -> ColumnElement[bool]:
    """The deliveries ``who`` sees in their workspace: those of their own machines' events, and
    every delivery to a shared channel (never one to another member's personal channel)."""
    shared = select(Channel.id).where(Channel.workspace_id == who.workspace_id, ~Channel.personal)
    return (Delivery.workspace_id == who.workspace_id) & (
        (Delivery.user_id == who.user_id) | Delivery.channel_id.in_(shared))


def replay(session: Session, *, who: Member, delivery_id: uuid.UUID) -> Delivery | None:
    """Put a dead letter ``who`` sees back in the outbox with a fresh attempt budget (its
    attempt history stays); ``None`` when they do not see it. The caller commits and wakes."""
    row = session.scalar(select(Delivery).where(Delivery.id == delivery_id, visible(who)))
    if row is None:
        return None
    replayed = session.execute(
        update(Delivery)
        .where(Delivery.id == row.id, Delivery.status == DeliveryStatus.DEAD)
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow(), reason=None)
    )
    if not replayed.rowcount:  # type: ignore[attr-defined]
        raise NotReplayable(f"only dead letters can be replayed; this one is {row.status}")
    return row
