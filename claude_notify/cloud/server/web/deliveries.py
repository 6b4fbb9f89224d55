"""What was sent, refused, retrying or dead, and the replay of a dead letter."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import outbox
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.pagination import encode_cursor, page
from claude_notify.cloud.server.db.models import Delivery, Task
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams.access import Seat
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.cloud.server.web.pages import (
    PAGE_SIZE,
    NotFound,
    WebDep,
    render,
    router,
    seat_of,
    see_other,
)
from claude_notify.events import utcnow

CHART_DAYS = 14
DELIVERY_STATES = ("pending", "sending", "sent", "dead", "rejected")


@router.get("/deliveries")
def deliveries_page(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                    status: Annotated[str | None, Query(max_length=16)] = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """What was sent, refused (and why), retrying or dead, newest first; dead letters replay.
    Above it, what was sent on each of the last days against the plan's daily quota."""
    return _deliveries_view(request, db, runtime, web, status, cursor)


def _deliveries_view(request: Request, db: Session, runtime: Runtime, web: WebSession,
                     status: str | None, cursor: str | None, problem: str = "",
                     code: int = 200) -> Response:
    user = seat_of(db, web)
    stmt = (select(Delivery, Task.key).outerjoin(Task, Task.id == Delivery.task_id)
            .where(outbox.visible(user)))
    status = status if status in DELIVERY_STATES else None
    if status:
        stmt = stmt.where(Delivery.status == status)
    try:
        stmt = page(stmt, created=Delivery.created_at, row_id=Delivery.id, cursor=cursor,
                    limit=PAGE_SIZE)
    except ApiError:
        return see_other("/app/deliveries")
    rows = [(row, key) for row, key in db.execute(stmt)]
    more = rows[PAGE_SIZE:]
    rows = rows[:PAGE_SIZE]
    older = encode_cursor(rows[-1][0].created_at, rows[-1][0].id) if more else None
    limit = None if user.plan == "pro" else runtime.settings.free_daily_notifications
    return render(request, "deliveries.html", code, web=web, user=user, rows=rows, older=older,
                  status=status or "", states=DELIVERY_STATES, problem=problem,
                  chart=_chart(db, user, limit), limit=limit)


def _chart(db: Session, user: Seat, limit: int | None) -> list[dict[str, Any]]:
    """Task notifications (what the quota counts) sent on each of the last :data:`CHART_DAYS`
    UTC days, scaled for bars; sign-in mails, tests and confirmations are not counted."""
    today = utcnow().date()
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=CHART_DAYS - 1)
    per_day: dict[Any, int] = {}
    for sent_at in db.scalars(select(Delivery.sent_at).where(
            outbox.visible(user), Delivery.kind == outbox.EVENT,
            Delivery.status == "sent", Delivery.sent_at >= since)):
        if sent_at is not None:
            per_day[sent_at.date()] = per_day.get(sent_at.date(), 0) + 1
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    top = max([*per_day.values(), limit or 0, 1])
    return [{"day": day, "sent": per_day.get(day, 0),
             "height": round(80 * per_day.get(day, 0) / top),
             "limit_y": None if limit is None else 90 - round(80 * limit / top)}
            for day in days]


@router.post("/deliveries/{delivery_id}/replay")
def replay_delivery(request: Request, delivery_id: uuid.UUID, web: WebDep, db: SessionDep,
                    runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=100)] = "",
                    ) -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    try:
        row = outbox.replay(db, who=seat_of(db, web), delivery_id=delivery_id)
    except outbox.NotReplayable as exc:
        return _deliveries_view(request, db, runtime, web, None, None, str(exc), 409)
    if row is None:
        raise NotFound
    db.commit()
    runtime.waker.wake()
    return see_other("/app/deliveries")
