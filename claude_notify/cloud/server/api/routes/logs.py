"""Task logs: ``POST /v1/tasks/{task_id}/log`` appends a chunk, ``GET`` reads what is kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from claude_notify.cloud.server import logs
from claude_notify.cloud.server.api.deps import (
    EventWriter,
    Principal,
    RuntimeDep,
    SessionDep,
    TaskReader,
)
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.db.models import DeliveryStatus, Task, TaskLog
from claude_notify.cloud.server.logcrypt import LogCipher, LogKeyError
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

router = APIRouter(tags=["logs"])


class LogAppended(BaseModel):
    bytes_total: int
    bytes_kept: int
    digest: str
    """Chained SHA-256 of everything received (see ``claude_notify.cloud.server.logs``)."""
    notifications: list[dict[str, Any]]


def _cipher(runtime: Runtime) -> LogCipher:
    try:
        return LogCipher(runtime.settings.log_keys)
    except LogKeyError:
        raise ApiError(
            503, "log storage is not configured on this server", code="unavailable"
        ) from None


def _task(session: Session, caller: Principal, task_id: str, *, mine: bool = False) -> Task:
    """A task of the caller's workspace; with ``mine``, one their own machine reported (only
    that machine writes its log)."""
    owner = Task.user_id == caller.user_id if mine else Task.workspace_id == caller.workspace_id
    task = session.scalar(select(Task).where(owner, Task.key == task_id)
                          .order_by(Task.created_at).limit(1))
    if task is None:
        raise not_found("task")
    return task


@router.post(
    "/v1/tasks/{task_id}/log",
    summary="Append a chunk of output (raw bytes); match rules run on it",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def append_log(
    task_id: str, request: Request, caller: EventWriter, runtime: RuntimeDep
) -> LogAppended:
    data = await request.body()
    if not data:
        raise ApiError(422, "log chunk is empty")
    cipher = _cipher(runtime)

    def store() -> logs.Appended:
        with runtime.sessions() as session:
            task = _task(session, caller, task_id, mine=True)
            user = caller
            appended = logs.append(
                session,
                user=user,
                task=task,
                data=data,
                cipher=cipher,
                now=utcnow(),
                settings=runtime.settings,
            )
            session.commit()
            return appended

    appended = await run_in_threadpool(store)
    if any(n.status == DeliveryStatus.PENDING for n in appended.notifications):
        runtime.waker.wake()
    return LogAppended(
        bytes_total=appended.bytes_total,
        bytes_kept=appended.bytes_kept,
        digest=appended.digest,
        notifications=[n.to_dict() for n in appended.notifications],
    )


class OutputDigest(StrictBody):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole output, hex")
    bytes: int = Field(ge=0, le=2**53, description="Length of the whole output")


class OutputDigestOut(BaseModel):
    sha256: str
    bytes: int
    verified: bool
    """True when the server held all of those bytes and checked them."""


@router.put(
    "/v1/tasks/{task_id}/log/digest",
    summary="Record the SHA-256 of the task's whole output (checked when the server holds it all)",
)
async def put_output_digest(
    task_id: str, body: OutputDigest, caller: EventWriter, runtime: RuntimeDep
) -> OutputDigestOut:
    cipher = _cipher(runtime)

    def store() -> OutputDigestOut:
        with runtime.sessions() as session:
            task = _task(session, caller, task_id, mine=True)
            user = caller
            try:
                log = logs.record_output_digest(session, user=user, task=task, sha256=body.sha256,
                                                size=body.bytes, cipher=cipher, now=utcnow())
            except logs.DigestMismatch as exc:
                raise ApiError(422, str(exc)) from None
            verified = log.bytes_total == body.bytes and log.bytes_kept == body.bytes
            session.commit()
            return OutputDigestOut(sha256=body.sha256, bytes=body.bytes, verified=verified)

    return await run_in_threadpool(store)


@router.get(
    "/v1/tasks/{task_id}/log",
    summary="The kept part of a task's log",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def read_log(
    task_id: str, caller: TaskReader, session: SessionDep, runtime: RuntimeDep
) -> Response:
    task = _task(session, caller, task_id)
    state = session.get(TaskLog, task.id)
    try:
        data = logs.read(session, task=task, cipher=_cipher(runtime)) if state else b""
    except LogKeyError as exc:
        raise ApiError(500, f"stored log cannot be read: {exc}", code="log_unreadable") from None
    headers = {
        "X-Log-Bytes-Total": str(state.bytes_total if state else 0),
        "X-Log-Digest": state.digest if state else logs.EMPTY_DIGEST,
        "X-Log-Truncated": "true" if state and state.bytes_kept < state.bytes_total else "false",
    }
    if state is not None and state.output_sha256 is not None:
        headers["X-Output-SHA256"] = state.output_sha256
        headers["X-Output-Bytes"] = str(state.output_bytes)
    return Response(data, media_type="text/plain; charset=utf-8", headers=headers)
