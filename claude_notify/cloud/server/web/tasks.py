"""The tasks list and a task's page: its log, and what the relay may run for it."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, logs
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.pagination import encode_cursor, page
from claude_notify.cloud.server.api.routes.commands import by_reply_token
from claude_notify.cloud.server.db.models import (
    ApiToken,
    Channel,
    Delivery,
    Event,
    Task,
    TaskLog,
    User,
)
from claude_notify.cloud.server.logcrypt import LogCipher, LogKeyError
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.relay.state import relay_of
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
from claude_notify.events import SOURCES, STATUSES, utcnow

WITHIN: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7),
                  "30d": timedelta(days=30)}  # fmt: skip
"""The time filter's choices: tasks that started within this long."""


@dataclass(frozen=True)
class Steps:
    """The first steps, and which are done: the checklist shows until the first four are."""

    signed_in: bool
    """A machine's CLI used a token of the account."""
    task: bool
    channel: bool
    """A channel of the account delivered something (a test counts)."""
    phone: bool
    """A Telegram chat, an SMS number, or a Discord or Feishu account for replies is linked."""

    @property
    def done(self) -> bool:
        return self.signed_in and self.task and self.channel


_DONE: set[uuid.UUID] = set()
"""Accounts whose first steps this process saw done: the steps only ever get done, so their
lookups stop for good (each open tasks page polls about every second)."""
_DONE_MAX = 100_000


def _steps(db: Session, user_id: uuid.UUID, has_tasks: bool) -> Steps | None:
    """The first steps, or ``None`` once done. Three small indexed lookups; the phone one reads
    the account's few channels."""
    if user_id in _DONE:
        return None
    used = db.scalar(select(ApiToken.id).where(ApiToken.user_id == user_id,
                                               ApiToken.last_used_at.is_not(None)).limit(1))
    sent = db.scalar(select(Delivery.id).where(
        Delivery.user_id == user_id, Delivery.status == "sent",
        Delivery.channel_id.is_not(None), Delivery.kind.in_(("event", "test"))).limit(1))
    phone = any(_linked(c) for c in db.scalars(select(Channel).where(
        Channel.user_id == user_id,
        Channel.type.in_(("telegram", "sms", "discord", "feishu", "slack")))))
    steps = Steps(signed_in=used is not None or has_tasks, task=has_tasks,
                  channel=sent is not None, phone=phone)
    if steps.done:
        if len(_DONE) >= _DONE_MAX:
            _DONE.clear()
        _DONE.add(user_id)
        return None
    return steps


def _linked(channel: Channel) -> bool:
    if channel.type in ("telegram", "sms"):
        return channel.verified_at is not None
    return any(channel.config.get(key) for key in ("discord_user_id", "feishu_open_id",
                                                   "slack_user_id"))


@router.get("/tasks")
def tasks_page(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
               status: Annotated[str | None, Query(max_length=16)] = None,
               machine: Annotated[str | None, Query(max_length=128)] = None,
               source: Annotated[str | None, Query(max_length=16)] = None,
               within: Annotated[str | None, Query(max_length=16)] = None,
               cursor: Annotated[str | None, Query(max_length=200)] = None,
               part: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    """The tasks, newest first. The first page polls its own listing (``part=listing``) every
    0.9 s (so a task shows within a second of arriving); an unchanged listing is answered 304
    from its ETag, without rendering. Until the
    first steps are done, the listing carries their checklist."""
    user = seat_of(db, web)
    stmt = select(Task).where(Task.workspace_id == user.workspace_id)
    status = status if status in STATUSES else None
    source = source if source in SOURCES else None
    within = within if within in WITHIN else None
    if status:
        stmt = stmt.where(Task.status == status)
    if machine:
        stmt = stmt.where(Task.machine_id == machine)
    if source:
        stmt = stmt.where(Task.source == source)
    if within:
        stmt = stmt.where(Task.created_at >= utcnow() - WITHIN[within])
    try:
        stmt = page(stmt, created=Task.created_at, row_id=Task.id, cursor=cursor,
                    limit=PAGE_SIZE)
    except ApiError:  # a cursor that is not ours: start from the newest
        return see_other("/app/tasks")
    rows = list(db.scalars(stmt))
    more = rows[PAGE_SIZE:]
    rows = rows[:PAGE_SIZE]
    older = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    filters = {"status": status or "", "machine": machine or "", "source": source or "",
               "within": within or ""}
    first = cursor is None and not any(filters.values())
    steps = _steps(db, user.user_id, bool(rows)) if first else None
    others = {t.user_id for t in rows} - {user.user_id}
    # In a team, whose machine ran each task (the person to ask, and the only one whose
    # "Run again" runs it).
    people = dict(db.execute(select(User.id, User.email).where(User.id.in_(others))).all()
                  ) if others else {}
    context: dict[str, Any] = {
        "web": web, "user": user, "tasks": rows, "older": older, "filters": filters,
        "people": people,
        "filtered": any(filters.values()), "statuses": sorted(STATUSES),
        "sources": sorted(SOURCES), "within_choices": list(WITHIN), "live": cursor is None,
        "steps": steps,
        "server_url": runtime.settings.public_url.rstrip("/")}
    if part != "listing":
        return render(request, "tasks.html", **context)
    tag = _etag(rows, older, steps, *filters.values())
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": _REVALIDATE})
    fragment = render(request, "tasks_listing.html", **context)
    fragment.headers.update({"ETag": tag, "Cache-Control": _REVALIDATE})
    return fragment


_REVALIDATE = "private, no-cache"
"""The listing may be kept by the browser, and is asked for again with its ETag every time."""


def _etag(rows: list[Task], older: str | None, steps: Steps | None, *filters: str) -> str:
    digest = hashlib.sha256(repr(([(t.key, t.status, t.exit_code, t.updated_at) for t in rows],
                                  older, steps, filters)).encode()).hexdigest()[:32]
    return f'W/"{digest}"'


LOG_SHOWN = 64 * 1024
"""How much of a stored log the task page shows; the rest is a download away."""


def _own_task(db: Session, web: WebSession, key: str) -> Task:
    """A task of the workspace this browser looks at."""
    workspace_id = seat_of(db, web).workspace_id
    task = db.scalar(select(Task).where(Task.workspace_id == workspace_id, Task.key == key)
                     .order_by(Task.created_at).limit(1))
    if task is None:
        raise NotFound
    return task


def _cipher(runtime: Runtime) -> LogCipher | None:
    try:
        return LogCipher(runtime.settings.log_keys)
    except LogKeyError:  # no log keys: the server stores no logs
        return None


@router.get("/t/{key}/log")
def download_log(request: Request, key: Annotated[str, PathParam(max_length=128)],
                 web: WebDep, db: SessionDep, runtime: RuntimeDep) -> Response:
    """The kept log as a file: bytes as the machine sent them, never shown as a page."""
    task = _own_task(db, web, key)
    cipher = _cipher(runtime)
    try:
        data = logs.read(db, task=task, cipher=cipher) if cipher is not None else b""
    except LogKeyError as exc:
        return render(request, "message.html", 409, title="The log cannot be read",
                      text=f"This server cannot open the stored log: {exc}.")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:60]  # the key is the machine's to choose
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="task-{name}.log"'})


@router.get("/t/{key}")
def task_page(request: Request, key: Annotated[str, PathParam(max_length=128)], web: WebDep,
              db: SessionDep, runtime: RuntimeDep,
              part: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    """A task; while it runs, its stored log (``run --stream``) polls itself (``part=log``)."""
    task = _own_task(db, web, key)
    stored = db.get(TaskLog, task.id)
    if part == "log":
        tag = f'W/"{stored.bytes_total if stored else 0}-{task.status}"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag, "Cache-Control": _REVALIDATE})
        fragment = render(request, "task_log.html", task=task, stored=stored,
                          log=_log_tail(db, task, stored, runtime), shown=LOG_SHOWN)
        fragment.headers.update({"ETag": tag, "Cache-Control": _REVALIDATE})
        return fragment
    return _task_view(request, db, runtime, web, task)


def _task_view(request: Request, db: Session, runtime: Runtime, web: WebSession, task: Task,
               problem: str = "", code: int = 200) -> HTMLResponse:
    """The task page; ``problem`` is a refusal this app worded (never a request's text)."""
    user = seat_of(db, web)
    stored = db.get(TaskLog, task.id)
    payload = db.scalar(select(Event.payload).where(Event.task_id == task.id)
                        .order_by(Event.received_at.desc()).limit(1)) or {}
    tail = str(payload.get("tail") or "")
    deliveries = list(db.scalars(select(Delivery).where(Delivery.task_id == task.id,
                                                        Delivery.user_id == user.user_id)
                                 .order_by(Delivery.created_at)))
    relayed = list(db.scalars(select(RelayCommand).where(
        RelayCommand.user_id == user.user_id, RelayCommand.session_id == task.session_id)
        .order_by(RelayCommand.created_at.desc()).limit(10))) if task.session_id else []
    return render(request, "task.html", code, web=web, user=user, task=task, tail=tail,
                  message=str(payload.get("message") or ""), host=str(payload.get("host") or ""),
                  cwd=str(payload.get("cwd") or ""), deliveries=deliveries, stored=stored,
                  log=_log_tail(db, task, stored, runtime), shown=LOG_SHOWN,
                  relay=_relay_offer(db, user, task), relayed=relayed, problem=problem)


def _relay_offer(db: Session, user: Seat, task: Task) -> queue.Target | None:
    """Where "Run again" and a reply would run, when the account may use the relay."""
    if task.user_id != user.user_id or auth.person_plan(db, user.user_id) != "pro":
        return None
    return queue.target_of_task(db, task)


@router.post("/t/{key}/run")
def run_from_page(request: Request, key: Annotated[str, PathParam(max_length=128)],
                  web: WebDep, db: SessionDep, runtime: RuntimeDep,
                  csrf: Annotated[str, Form(max_length=100)] = "",
                  command: Annotated[str, Form(max_length=8192)] = "",
                  again: Annotated[str, Form(max_length=1)] = "") -> Response:
    """Queue a command for the run this task was, through the relay's own rules (plan,
    banlist, rate limit, the agent's allow-list on the machine): "Run again" or a reply."""
    security.check_form(request, runtime.settings, web, csrf)
    user = seat_of(db, web)
    task = _own_task(db, web, key)
    target = queue.target_of_task(db, task)
    text = task.cmd if again else command.strip()
    relay = relay_of(request.app.state)
    origin = queue.Origin(user_id=user.user_id, plan=auth.person_plan(db, user.user_id),
                          source="web",
                          actor=f"web session {web.id.hex[:12]}")
    try:
        if target is None:
            raise queue.CommandRefused(409, "this task names no session and machine to run in")
        if again and target.source == "claude-code":
            raise queue.CommandRefused(409, "a Claude Code session is answered, not run again")
        if not text:
            raise queue.CommandRefused(422, "type a command to run")
        kind = "claude" if target.source == "claude-code" and not again else "shell"
        row = queue.enqueue(db, origin, to=target, command=text, policy=relay.policy, kind=kind)
    except queue.CommandRefused as refused:
        db.commit()  # the refusal's audit row
        return _task_view(request, db, runtime, web, task, refused.message, refused.status)
    db.commit()
    relay.hub.wake((user.user_id, row.machine_id))
    return see_other(f"/app/t/{quote(task.key, safe='')}#relayed")


def _log_tail(db: Session, task: Task, stored: TaskLog | None, runtime: Runtime) -> str:
    cipher = _cipher(runtime)
    if stored is None or cipher is None:
        return ""
    try:
        data = logs.read_tail(db, task=task, cipher=cipher, max_bytes=LOG_SHOWN)
    except LogKeyError as exc:  # its key was rotated out: the rest of the page still shows
        return f"(this server cannot open the stored log: {exc})"
    return data.decode("utf-8", errors="replace")


@router.post("/reply")
def reply_by_token(request: Request, runtime: RuntimeDep,
                   token: Annotated[str, Form(max_length=300)] = "",
                   command: Annotated[str, Form(max_length=8192)] = "") -> HTMLResponse:
    """A reply sent with the reply token a notification's link carried (the sign-in page's
    form, no session): the same rules as ``POST /v1/commands`` with that token — one command,
    for that run only, audited either way."""
    security.check_origin(request, runtime.settings)
    text = command.strip()
    if not text:
        return render(request, "replied.html", 422, problem="Type a reply to send.")
    try:
        sent = by_reply_token(runtime, relay_of(request.app.state), token, command=text,
                              session_id=None, kind=None)
    except ApiError as exc:
        return render(request, "replied.html", exc.status, problem=f"{exc.message}.")
    return render(request, "replied.html", 202, problem="", machine=sent.machine_id,
                  command=text, kind=sent.kind)
