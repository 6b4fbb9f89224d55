"""Tasks: register a start (spec §7), list with filters and pagination, read one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy import select

from claude_notify.cloud.server.api.deps import EventWriter, SessionDep, TaskReader
from claude_notify.cloud.server.api.errors import not_found
from claude_notify.cloud.server.api.pagination import encode_cursor, page
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels.catalog import normalise_type
from claude_notify.cloud.server.db.models import Task
from claude_notify.cloud.server.ingest import start_task
from claude_notify.events import STATUSES, utcnow

router = APIRouter(tags=["tasks"])

TaskStatus = Literal["running", "success", "failure", "interrupted", "needs_input", "ended"]
assert set(TaskStatus.__args__) == STATUSES  # type: ignore[attr-defined]  # noqa: S101


class TaskIn(StrictBody):
    """Spec §7: what a client says when a task starts."""

    cmd: str = Field(max_length=8192)
    session_id: str | None = Field(default=None, max_length=256)
    notify_on: Literal["exit", "partial", "custom_regex"] | None = None
    """Narrows what this task notifies about; ``None`` leaves it to each channel's rules."""
    channels: list[str] | None = Field(default=None, max_length=10)
    machine_id: str | None = Field(default=None, max_length=128)
    task_id: str | None = Field(default=None, min_length=1, max_length=128)
    """The client's own id for the task (its events carry it); registering twice is harmless."""
    started_at: AwareDatetime | None = None
    """When the command started, by the machine's clock; the arrival time if absent. The
    registration may arrive late (after a second, or from the spool), so it is not the start."""

    @field_validator("channels")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({normalise_type(v) for v in value})


class TaskCreated(BaseModel):
    task_id: str


class TaskOut(BaseModel):
    task_id: str
    session_id: str | None
    machine_id: str | None
    cmd: str
    status: str
    notify_on: str | None
    channels: list[str] | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(
            task_id=task.key,
            session_id=task.session_id,
            machine_id=task.machine_id,
            cmd=task.cmd,
            status=task.status,
            notify_on=task.notify_on,
            channels=task.channels,
            exit_code=task.exit_code,
            started_at=task.started_at,
            finished_at=task.finished_at,
            created_at=task.created_at,
            updated_at=task.updated_at,
        )


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


@router.post("/v1/tasks", status_code=201, summary="Register a task at its start")
def create_task(body: TaskIn, caller: EventWriter, session: SessionDep) -> TaskCreated:
    task = start_task(
        session,
        user_id=caller.user_id,
        workspace_id=caller.workspace_id,
        cmd=body.cmd,
        session_id=body.session_id,
        notify_on=body.notify_on,
        channels=body.channels,
        machine_id=body.machine_id,
        now=utcnow(),
        key=body.task_id,
        started_at=body.started_at,
    )
    session.commit()
    return TaskCreated(task_id=task.key)


@router.get("/v1/tasks", summary="List tasks, newest first")
def list_tasks(
    caller: TaskReader,
    session: SessionDep,
    status: TaskStatus | None = None,
    session_id: Annotated[str | None, Query(max_length=256)] = None,
    machine_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    stmt = select(Task).where(Task.workspace_id == caller.workspace_id)
    if status is not None:
        stmt = stmt.where(Task.status == status)
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    if machine_id is not None:
        stmt = stmt.where(Task.machine_id == machine_id)
    stmt = page(stmt, created=Task.created_at, row_id=Task.id, cursor=cursor, limit=limit)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return TaskPage(items=[TaskOut.of(t) for t in rows], next_cursor=next_cursor)


@router.get("/v1/tasks/{task_id}", summary="One task")
def get_task(task_id: str, caller: TaskReader, session: SessionDep) -> TaskOut:
    task = session.scalar(select(Task).where(Task.workspace_id == caller.workspace_id,
                                             Task.key == task_id)
                          .order_by(Task.created_at).limit(1))
    if task is None:
        raise not_found("task")
    return TaskOut.of(task)
