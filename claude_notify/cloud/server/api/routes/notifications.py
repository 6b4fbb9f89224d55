"""Notifications: what was sent, rejected or dead-lettered, each attempt, and replay.

Dead letters (``status=dead``) are the permanent failures and exhausted retries; a replay puts
one back in the outbox with a fresh attempt budget, keeping its attempt history.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from claude_notify.cloud.server import outbox
from claude_notify.cloud.server.api.deps import ChannelWriter, RuntimeDep, SessionDep, TaskReader
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.pagination import encode_cursor, page
from claude_notify.cloud.server.db.models import Delivery, DeliveryAttempt, DeliveryStatus, Task

router = APIRouter(tags=["notifications"])

StatusName = Literal["pending", "sending", "sent", "dead", "rejected"]
"""A :class:`DeliveryStatus` value as the ``status`` filter takes it: a Literal, so the OpenAPI
schema keeps listing the strings inline (tests/cloud/test_delivery.py checks the two agree)."""


class AttemptOut(BaseModel):
    number: int
    outcome: str
    detail: str | None
    started_at: datetime
    duration_ms: int | None


class NotificationOut(BaseModel):
    id: uuid.UUID
    task_id: str | None
    channel_id: uuid.UUID | None
    channel_type: str
    kind: str
    status: str
    reason: str | None
    attempts: int
    next_attempt_at: datetime | None
    provider_id: str | None
    created_at: datetime
    sent_at: datetime | None
    attempt_log: list[AttemptOut] | None = None

    @classmethod
    def of(cls, row: Delivery, task_key: str | None) -> NotificationOut:
        return cls(
            id=row.id,
            task_id=task_key,
            channel_id=row.channel_id,
            channel_type=row.channel_type,
            kind=row.kind,
            status=row.status,
            reason=row.reason,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.status == DeliveryStatus.PENDING else None,
            provider_id=row.provider_id,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


@router.get("/v1/notifications", summary="List notifications; status=dead lists dead letters")
def list_notifications(
    caller: TaskReader,
    session: SessionDep,
    status: StatusName | None = None,
    task_id: Annotated[str | None, Query(max_length=128)] = None,
    channel_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> NotificationPage:
    stmt = (
        select(Delivery, Task.key)
        .outerjoin(Task, Task.id == Delivery.task_id)
        .where(outbox.visible(caller))
    )
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    if task_id is not None:
        stmt = stmt.where(Task.key == task_id)
    if channel_id is not None:
        stmt = stmt.where(Delivery.channel_id == channel_id)
    stmt = page(
        stmt, created=Delivery.created_at, row_id=Delivery.id, cursor=cursor, limit=limit
    )
    rows = [(n, key) for n, key in session.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1][0] if rows else None
    return NotificationPage(
        items=[NotificationOut.of(n, key) for n, key in rows],
        next_cursor=encode_cursor(last.created_at, last.id) if more and last else None,
    )


@router.get("/v1/notifications/{notification_id}", summary="One notification and its attempts")
def get_notification(
    notification_id: uuid.UUID, caller: TaskReader, session: SessionDep
) -> NotificationOut:
    found = session.execute(
        select(Delivery, Task.key)
        .outerjoin(Task, Task.id == Delivery.task_id)
        .where(Delivery.id == notification_id, outbox.visible(caller))
    ).first()
    if found is None:
        raise not_found("notification")
    row, key = found
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.notification_id == row.id)
        .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)
    )
    out = NotificationOut.of(row, key)
    out.attempt_log = [
        AttemptOut(
            number=a.number,
            outcome=a.outcome,
            detail=a.detail,
            started_at=a.started_at,
            duration_ms=a.duration_ms,
        )
        for a in attempts
    ]
    return out


@router.post(
    "/v1/notifications/{notification_id}/replay",
    status_code=202,
    summary="Put a dead letter back in the outbox",
)
def replay(
    notification_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> NotificationOut:
    try:
        row = outbox.replay(session, who=caller, delivery_id=notification_id)
    except outbox.NotReplayable as exc:
        raise ApiError(409, str(exc)) from None
    if row is None:
        raise not_found("notification")
    session.commit()
    session.refresh(row)
    runtime.waker.wake()
    return NotificationOut.of(row, None)
