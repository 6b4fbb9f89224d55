"""Taking task events and task starts in: idempotent, one transaction, outbox rows included.

An event is stored with ``UNIQUE(user_id, event_id)`` and ``INSERT … ON CONFLICT DO NOTHING``:
the same event sent twice (a retry, a spool replay, two replicas) is one event and notifies once;
the duplicate gets the original answer back. A task the server never saw start (hooks, ``watch``,
spooled events) is created from its first event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from claude_notify.cloud.server.db.models import Delivery, Event, Task
from claude_notify.cloud.server.db.ops import upsert_row
from claude_notify.cloud.server.fanout import Owner, Planned, plan_notifications
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

FREE_TAIL_BYTES = 10 * 1024
"""Spec §5: the free plan keeps a 10 KB tail."""


@dataclass(frozen=True, slots=True)
class Ingested:
    """What ``POST /v1/events`` answers, the same for the first call and any replay."""

    event_id: str
    task_id: str
    duplicate: bool
    notifications: list[Planned]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "task_id": self.task_id,
            "duplicate": self.duplicate,
            "notifications": [n.to_dict() for n in self.notifications],
        }


def keep_tail(tail: str, plan: str) -> str:
    """The part of the tail the plan keeps: the last 10 KB on free, everything on pro."""
    if plan == "pro":
        return tail
    raw = tail.encode()
    if len(raw) <= FREE_TAIL_BYTES:
        return tail
    return raw[-FREE_TAIL_BYTES:].decode(errors="ignore")


def record_event(
    session: Session,
    *,
    user: Owner,
    event: TaskEvent,
    now: datetime,
    settings: Settings,
    memo: dict[Any, Any] | None = None,
) -> Ingested:
    """Store the event, update its task and queue its notifications; the caller commits.

    This is every event's path, so it speaks SQL Core with statements built once: the ORM's
    unit of work costs more here than the database does.
    """
    event = replace(event, tail=keep_tail(event.tail, user.plan))
    task = ensure_task(session, user_id=user.user_id, workspace_id=user.workspace_id,
                       key=event.task_id, seed=event, now=now)
    row_id = uuid.uuid4()
    inserted = session.execute(
        _statements(session).insert_event,
        {
            "id": row_id,
            "user_id": user.user_id,
            "task_id": task.id,
            "event_id": event.event_id,
            "type": event.type,
            "status": event.status,
            "payload": event.to_dict(),
            "received_at": now,
        },
    ).first()
    if inserted is None:
        return _replay(session, user_id=user.user_id, event_id=event.event_id)
    task = _fold(session, task, event, now)
    planned = plan_notifications(
        session, user=user, task=task, event=event, event_row_id=row_id, now=now,
        settings=settings, memo=memo,
    )
    return Ingested(event.event_id, task.key, False, planned)


@dataclass(frozen=True, slots=True)
class TaskState:
    """The columns of a task that an event reads or changes."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    """Where it was first reported: its notifications go to that workspace's channels."""
    key: str
    status: str
    cmd: str
    session_id: str | None
    machine_id: str | None
    source: str | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    notify_on: str | None
    channels: list[str] | None
    updated_at: datetime


_STATE = tuple(f.name for f in fields(TaskState))


def ensure_task(
    session: Session, *, user_id: uuid.UUID, workspace_id: uuid.UUID, key: str, seed: TaskEvent,
    now: datetime,
) -> TaskState:
    """The user's task with this key, created from ``seed`` if it was never registered.

    A new task is inserted as it stands after ``seed`` (most events arrive for tasks the
    server never saw start), so folding ``seed`` in afterwards changes nothing and the
    transaction needs no ``UPDATE``. ``ON CONFLICT DO UPDATE`` locks an existing row (SQLite's
    writer holds the whole database), so no concurrent event changes it under us.
    """
    blank = TaskState(
        id=uuid.uuid4(), workspace_id=workspace_id, key=key, status="running", cmd=seed.command,
        session_id=seed.session_id,
        machine_id=seed.machine_id, source=seed.source, started_at=seed.started_at,
        finished_at=None, exit_code=None, notify_on=None, channels=None, updated_at=now,
    )
    values = {**_folded(blank, seed, now), "id": blank.id, "user_id": user_id,
              "workspace_id": workspace_id, "key": key, "created_at": now}
    row = session.execute(_statements(session).upsert_task, values).one()
    return TaskState(**row._mapping)


def _folded(task: TaskState, event: TaskEvent, now: datetime) -> dict[str, Any]:
    """The task's columns once ``event`` is folded in; a late ``progress`` never reopens it.

    The times are the machine's, from the event: a registration stamped on arrival (an old
    client's, or one that arrived late) yields to them, so the record spans the run itself.
    """
    status, finished_at, exit_code = task.status, task.finished_at, task.exit_code
    started_at = event.started_at or task.started_at
    if event.type == "finished":
        status = event.status if event.status != "running" else "ended"
        finished_at = event.ended_at or now
        exit_code = event.exit_code
        started_at = _start_before(started_at, finished_at, event.duration_s)
    elif event.type == "needs_input" and task.finished_at is None:
        status = "needs_input"
    elif task.finished_at is None:
        status = "running"
    return {
        "status": status,
        "finished_at": finished_at,
        "exit_code": exit_code,
        "cmd": task.cmd or event.command,
        "session_id": task.session_id or event.session_id,
        "machine_id": task.machine_id or event.machine_id,
        "source": task.source or event.source,
        "started_at": started_at,
        "updated_at": now,
    }


def _start_before(started_at: datetime | None, finished_at: datetime,
                  duration_s: float | None) -> datetime | None:
    """``started_at``, unless it is unknown or after the end: then the end less the duration."""
    if started_at is not None and started_at <= finished_at:
        return started_at
    if duration_s is not None and duration_s >= 0:
        return finished_at - timedelta(seconds=duration_s)
    return None if started_at is None else finished_at


def _fold(session: Session, task: TaskState, event: TaskEvent, now: datetime) -> TaskState:
    """Write what ``event`` changes in its task (nothing, for a task it just created)."""
    changed = {k: v for k, v in _folded(task, event, now).items() if getattr(task, k) != v}
    if not changed:
        return task
    session.execute(update(Task).where(Task.id == task.id).values(changed))
    loaded = session.identity_map.get(identity_key(Task, task.id))
    if loaded is not None:  # a caller holding the ORM row (log chunks) must see the same task
        for name, value in changed.items():
            set_committed_value(loaded, name, value)
    return replace(task, **changed)


@dataclass(frozen=True, slots=True)
class _Statements:
    upsert_task: Any
    insert_event: Any


_BUILT: dict[str, _Statements] = {}


def _statements(session: Session) -> _Statements:
    """The hot path's statements for this session's dialect, built and compiled once."""
    dialect = session.get_bind().dialect.name
    if (built := _BUILT.get(dialect)) is not None:
        return built
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    tasks: Any = Task.__table__
    new_task = insert(tasks)
    upsert = new_task.on_conflict_do_update(
        index_elements=[tasks.c.user_id, tasks.c.key],
        set_={"updated_at": new_task.excluded.updated_at},
    ).returning(*(tasks.c[name] for name in _STATE))
    events: Any = Event.__table__
    insert_event = (
        insert(events)
        .on_conflict_do_nothing(index_elements=[events.c.user_id, events.c.event_id])
        .returning(events.c.id)
    )
    built = _BUILT[dialect] = _Statements(upsert, insert_event)
    return built


def _replay(session: Session, *, user_id: uuid.UUID, event_id: str) -> Ingested:
    original = session.execute(
        select(Event, Task.key)
        .join(Task, Task.id == Event.task_id)
        .where(Event.user_id == user_id, Event.event_id == event_id)
    ).one()
    event_row, task_key = original
    rows = session.scalars(
        select(Delivery)
        .where(Delivery.event_row_id == event_row.id)
        .order_by(Delivery.created_at, Delivery.id)
    ).all()
    planned = [Planned(n.id, n.channel_id, n.channel_type, n.status, n.reason) for n in rows]
    return Ingested(event_id, task_key, True, planned)


def start_task(
    session: Session,
    *,
    user_id: uuid.UUID,
    workspace_id: uuid.UUID,
    cmd: str,
    session_id: str | None,
    notify_on: str | None,
    channels: list[str] | None,
    machine_id: str | None,
    now: datetime,
    key: str | None = None,
    started_at: datetime | None = None,
) -> Task:
    """Register a task at its start (spec §7 ``POST /v1/tasks``); the caller commits.

    A client that names its task (the event schema's ``task_id``) may register it again — a
    spooled retry — and gets the same task; its later events join it. ``started_at`` is the
    machine's start time (``now`` when the client did not say); registering again never moves
    it, nor the times its events set.
    """
    columns: dict[str, Any] = {
        "user_id": user_id, "workspace_id": workspace_id, "session_id": session_id,
        "machine_id": machine_id, "cmd": cmd,
        "status": "running", "notify_on": notify_on, "channels": channels,
        "started_at": started_at or now, "created_at": now, "updated_at": now,
    }
    task_id = uuid.uuid4()
    if key is None:
        task = Task(id=task_id, key=str(task_id), **columns)
        session.add(task)
        return task
    # Its events may be arriving at the same moment (two syncs of one spool): upsert, so
    # whichever comes second joins the task instead of tripping the unique key.
    task = upsert_row(session, Task, {"id": task_id, "key": key, **columns}, ["user_id", "key"],
                      {"updated_at": now})
    task.notify_on = task.notify_on or notify_on
    task.channels = task.channels or channels
    task.cmd = task.cmd or cmd
    return task
