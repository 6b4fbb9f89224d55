"""``POST /v1/events``: any event of the ``claude_notify.events`` schema, unchanged."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api.deps import Bearer, RuntimeDep, authenticate, check_scope
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.jsonguard import LONE_SURROGATE
from claude_notify.cloud.server.db.models import DeliveryStatus, Role
from claude_notify.cloud.server.groupcommit import Memo
from claude_notify.cloud.server.ingest import Ingested, record_event
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import access
from claude_notify.events import TaskEvent, utcnow

router = APIRouter(tags=["events"])

_FIELD_LIMITS = {
    "event_id": 128,
    "task_id": 128,
    "machine_id": 128,
    "session_id": 256,
    "command": 8192,
    "cwd": 4096,
    "host": 256,
    "signal": 32,
    "title": 1024,
    "message": 8192,
    "match": 4096,
    "log_path": 4096,
}


def event_schema() -> dict[str, Any]:
    """The OpenAPI schema of a ``TaskEvent``, derived from the dataclass and the server's limits."""
    schema: dict[str, Any] = TypeAdapter(TaskEvent).json_schema()
    properties = schema["properties"]
    for name, limit in _FIELD_LIMITS.items():
        options = properties[name].get("anyOf", [properties[name]])
        for option in options:
            if option.get("type") == "string" and "format" not in option:
                option["maxLength"] = limit
                if name in schema.get("required", []):
                    option["minLength"] = 1
    schema["additionalProperties"] = True  # newer clients' fields are ignored, not refused
    return schema


def parse_event(payload: dict[str, Any], settings: Settings) -> TaskEvent:
    """The event, or a 4xx naming the first problem (never a 500 for bad input)."""
    try:
        event = TaskEvent.from_dict(payload)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, str(exc)) from None
    # NUL cannot be stored as text by PostgreSQL, nor a lone surrogate (half of an emoji cut by
    # a byte limit, an undecodable byte) as UTF-8 by either database; in output they are noise,
    # so they are replaced.
    cleaned: dict[str, Any] = {
        f.name: LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
        for f in dataclasses.fields(event)
        if isinstance(value := getattr(event, f.name), str)
        and ("\x00" in value or LONE_SURROGATE.search(value))
    }
    event = dataclasses.replace(event, **cleaned) if cleaned else event
    for name, limit in _FIELD_LIMITS.items():
        value = getattr(event, name)
        if isinstance(value, str) and len(value) > limit:
            raise ApiError(422, f"event field {name!r} is longer than {limit} characters")
    if len(event.tail.encode()) > settings.max_tail_bytes:
        message = f"event tail is larger than {settings.max_tail_bytes} bytes"
        raise ApiError(413, message)
    return event


def _count(runtime: Runtime, event: TaskEvent, result: Ingested) -> None:
    metrics = runtime.metrics
    if result.duplicate:
        metrics.duplicates.inc()
        return
    metrics.events.labels(event.type).inc()
    for n in result.notifications:
        if n.status == DeliveryStatus.REJECTED:
            metrics.notifications.labels(n.channel_type, DeliveryStatus.REJECTED).inc()
            if n.reason and ("quota" in n.reason or "plan" in n.reason or "limit" in n.reason):
                metrics.quota_rejections.labels(n.channel_type).inc()


@router.post(
    "/v1/events",
    status_code=202,
    summary="Report a task event (idempotent on event_id)",
    responses={202: {"description": "Accepted; a replayed event_id answers the original body"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": event_schema()}},
        }
    },
)
async def post_event(
    payload: Annotated[dict[str, Any], Body(description="A TaskEvent as `to_dict()` writes it")],
    credentials: Bearer,
    runtime: RuntimeDep,
) -> JSONResponse:
    # The hot path: authentication and the event share a transaction — with the other events
    # arriving at the same moment (group commit) — and one hand-off to a writer thread.
    settings = runtime.settings
    if credentials is not None and (wait := runtime.event_rate.hit(credentials.credentials)):
        # Before any database work: a flood costs a digest and a dict lookup per request.
        raise ApiError(429, f"this token sent more than {settings.events_per_minute} events a "
                            f"minute; retry in {wait}s", headers={"Retry-After": str(wait)})
    outcome = await runtime.writes.run(partial(_ingest, credentials, payload, settings))
    if isinstance(outcome, ApiError):
        raise outcome
    event, result = outcome
    _count(runtime, event, result)
    queued = any(n.status == DeliveryStatus.PENDING for n in result.notifications)
    if queued and not result.duplicate:
        runtime.waker.wake()
    headers = {"Idempotency-Replay": "true"} if result.duplicate else {}
    return JSONResponse(result.to_dict(), status_code=202, headers=headers)


def _ingest(
    credentials: HTTPAuthorizationCredentials | None,
    payload: dict[str, Any],
    settings: Settings,
    session: Session,
    memo: Memo,
) -> tuple[TaskEvent, Ingested] | ApiError:
    try:
        caller = check_scope(authenticate(session, credentials, memo), "events:write")
        if not access.at_least(caller.role, Role.MEMBER):  # as roles.ROLES says for the route
            raise ApiError(403, "a viewer's machines do not report into the workspace",
                           code="role_refused")
        event = parse_event(payload, settings)
    except ApiError as exc:  # refused before writing anything: the batch goes on without it
        return exc
    result = record_event(session, user=caller, event=event, now=utcnow(), settings=settings,
                          memo=memo)
    return event, result
