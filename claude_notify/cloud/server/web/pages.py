"""The web app's pages under ``/app``: sign in by e-mail link, tasks, a task, sessions.

Server-rendered (Jinja2, autoescaped) and usable without JavaScript: every change is a real
``<form method=post>`` answered with a 303. Pages read the same rows as the ``/v1`` API, always
through the signed-in user's id, so another user's ids are simply not found.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import unicodedata
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, export, limits, logs, outbox, quota
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.pagination import encode_cursor, page
from claude_notify.cloud.server.api.routes.login import check_mail
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import ApiToken, Delivery, Event, Task, TaskLog, User
from claude_notify.cloud.server.logcrypt import LogCipher, LogKeyError
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.models import RelayAgent, RelayCommand
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession, WebSignin
from claude_notify.errors import UsageError
from claude_notify.events import STATUSES, utcnow
from claude_notify.render import clean_output

HERE = Path(__file__).parent
PAGE_SIZE = 50

router = APIRouter(prefix="/app", include_in_schema=False)
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is text; nothing a user sent is ever markup
    undefined=jinja2.StrictUndefined,
)


class SignInNeeded(Exception):
    """The page needs a signed-in session; the answer is a redirect to the sign-in page."""


class NotFound(Exception):
    """Not this user's, or no such thing: the same answer for both."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _took(task: Task) -> str:
    if task.started_at is None or task.finished_at is None:
        return "—"
    seconds = max(0.0, (task.finished_at - task.started_at).total_seconds())
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else (
        f"{seconds:.1f}s")


def _text(value: object, *, lines: bool = True) -> str:
    """Text a user's machine sent, made safe to read: terminal escapes gone, and format
    characters (bidirectional overrides that would make it read as something else) shown as
    U+FFFD. Autoescaping then makes it inert."""
    cleaned = clean_output(str(value or "").encode())
    kept = "".join("\ufffd" if unicodedata.category(c) in ("Cf", "Co", "Cs") else c
                   for c in cleaned)
    return kept if lines else " ".join(kept.split())


_templates.filters["when"] = _when
_templates.filters["took"] = _took
_templates.filters["line"] = lambda value: _text(value, lines=False)
_templates.filters["text"] = _text


def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=code)


def _signed_in(request: Request, db: SessionDep) -> WebSession:
    web = security.current(request, db)
    if web is None:
        raise SignInNeeded
    return web


WebDep = Annotated[WebSession, Depends(_signed_in)]


def _user(db: Session, web: WebSession) -> User:
    user = db.get(User, web.user_id)
    if user is None:  # the account was deleted under a live session
        raise SignInNeeded
    return user


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- signing in ----------------------------------------------------------------------------


@router.get("")
@router.get("/")
def home(request: Request, db: SessionDep) -> Response:
    return _see_other("/app/tasks" if security.current(request, db) else "/app/signin")


@router.get("/signin")
def signin_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return render(request, "signin.html", policy=_policy(runtime.settings), problem="")


def _policy(settings: Settings) -> str:
    if not settings.web_signup:
        return "New accounts are made by this server's operator; existing users sign in here."
    if settings.web_signup_domains:
        return ("New accounts are open to addresses at "
                + ", ".join(settings.web_signup_domains) + ".")
    return "No account yet? The same link makes one."


def _may_sign_up(settings: Settings, email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    allowed = {d.strip().lower().lstrip("@") for d in settings.web_signup_domains}
    return settings.web_signup and (not allowed or domain in allowed)


@router.post("/signin")
def send_link(request: Request, email: Annotated[str, Form(max_length=320)], db: SessionDep,
              runtime: RuntimeDep) -> HTMLResponse:
    """E-mail a sign-in link. The page says the same whether or not the address may sign in,
    so it tells a stranger nothing about who has an account."""
    settings = runtime.settings
    security.check_origin(request, settings)
    try:
        address = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return render(request, "signin.html", code=422, policy=_policy(settings),
                      problem=f"That is not an e-mail address: {exc}")
    try:
        check_mail(settings)
    except ApiError as exc:
        return render(request, "signin.html", code=503, policy=_policy(settings),
                      problem=exc.message)
    ip = security.client_ip(request)
    for where, limit in (((WebSignin.email == address, WebSignin.client_ip == ip),
                          settings.login_per_address_per_hour),
                         ((WebSignin.client_ip == ip,), settings.login_per_ip_per_hour)):
        if limits.reached(db, limit, 3600.0, WebSignin.created_at, *where):
            return render(request, "signin.html", code=429, policy=_policy(settings),
                          problem="Too many sign-in links asked for; try again in an hour.")
    now = utcnow()
    user_id = db.scalar(select(User.id).where(User.email == address))
    secret = secrets.token_urlsafe(32)
    # Recorded either way, so a stranger's attempts count against the limits all the same.
    db.add(WebSignin(email=address, link_hash=security.digest(secret), client_ip=ip,
                     created_at=now, expires_at=now + timedelta(seconds=settings.login_ttl_s)))
    if user_id is not None or _may_sign_up(settings, address):
        link = f"{settings.public_url.rstrip('/')}/app/signin/confirm?token={secret}"
        outbox.queue_login(db, user_id=user_id, address=address, payload=_mail(link, ip),
                           now=now)
    db.commit()
    runtime.waker.wake()
    return render(request, "sent.html", email=address, minutes=int(settings.login_ttl_s // 60))


def _mail(link: str, ip: str) -> dict[str, str]:
    text = (f"Someone asked to sign in to claude-notify in a browser with this address, from IP "
            f"address {ip}.\n\nIf it was you, open {link} and press Sign in.\n\n"
            "If not, ignore this message: nobody can sign in without the link.")
    return render_simple("Sign in to claude-notify", text, link)


def _pending(db: Session, token: str, *, lock: bool = False) -> WebSignin:
    stmt = select(WebSignin).where(WebSignin.link_hash == security.digest(token))
    row = db.scalar(stmt.with_for_update() if lock else stmt)
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise NotFound
    return row


@router.get("/signin/confirm")
def confirm_page(request: Request, token: Annotated[str, Query(max_length=100)],
                 db: SessionDep) -> HTMLResponse:
    """The link's page: a button, not a sign-in (mail scanners open links)."""
    row = _pending(db, token)
    return render(request, "confirm.html", email=row.email, token=token)


@router.post("/signin/confirm")
def confirm(request: Request, token: Annotated[str, Form(max_length=100)], db: SessionDep,
            runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    security.check_origin(request, settings)
    row = _pending(db, token, lock=True)
    row.used_at = utcnow()
    user = db.scalar(select(User).where(User.email == row.email))
    if user is None:
        if not _may_sign_up(settings, row.email):
            db.commit()
            raise NotFound
        try:
            with db.begin_nested():  # another link for the address may make it at once
                user = auth.create_account(db, row.email, plan=settings.default_plan)
        except (IntegrityError, UsageError):
            user = db.scalar(select(User).where(User.email == row.email))
            if user is None:
                raise
    response = _see_other("/app/tasks")
    security.start(db, request, response, user_id=user.id, settings=settings)
    db.commit()
    return response


@router.post("/signout")
def signout(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    db.delete(web)
    db.commit()
    response = _see_other("/app/signin")
    security.end(request, response)
    return response


# -- tasks -----------------------------------------------------------------------------------


@router.get("/tasks")
def tasks_page(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
               status: Annotated[str | None, Query(max_length=16)] = None,
               machine: Annotated[str | None, Query(max_length=128)] = None,
               cursor: Annotated[str | None, Query(max_length=200)] = None,
               part: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    """The tasks, newest first. The first page polls its own listing (``part=listing``) every
    second; an unchanged listing is answered 304 from its ETag, without rendering."""
    user = _user(db, web)
    stmt = select(Task).where(Task.user_id == user.id)
    status = status if status in STATUSES else None
    if status:
        stmt = stmt.where(Task.status == status)
    if machine:
        stmt = stmt.where(Task.machine_id == machine)
    try:
        stmt = page(stmt, created=Task.created_at, row_id=Task.id, cursor=cursor,
                    limit=PAGE_SIZE)
    except ApiError:  # a cursor that is not ours: start from the newest
        return _see_other("/app/tasks")
    rows = list(db.scalars(stmt))
    more = rows[PAGE_SIZE:]
    rows = rows[:PAGE_SIZE]
    older = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    context: dict[str, Any] = {
        "web": web, "user": user, "tasks": rows, "older": older, "status": status or "",
        "machine": machine or "", "statuses": sorted(STATUSES), "live": cursor is None,
        "server_url": runtime.settings.public_url.rstrip("/")}
    if part != "listing":
        return render(request, "tasks.html", **context)
    tag = _etag(rows, older, status, machine)
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": _REVALIDATE})
    fragment = render(request, "tasks_listing.html", **context)
    fragment.headers.update({"ETag": tag, "Cache-Control": _REVALIDATE})
    return fragment


_REVALIDATE = "private, no-cache"
"""The listing may be kept by the browser, and is asked for again with its ETag every time."""


def _etag(rows: list[Task], older: str | None, *filters: str | None) -> str:
    digest = hashlib.sha256(repr(([(t.key, t.status, t.exit_code, t.updated_at) for t in rows],
                                  older, filters)).encode()).hexdigest()[:32]
    return f'W/"{digest}"'


LOG_SHOWN = 64 * 1024
"""How much of a stored log the task page shows; the rest is a download away."""


def _own_task(db: Session, web: WebSession, key: str) -> Task:
    task = db.scalar(select(Task).where(Task.user_id == web.user_id, Task.key == key))
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
    user = _user(db, web)
    stored = db.get(TaskLog, task.id)
    payload = db.scalar(select(Event.payload).where(Event.task_id == task.id)
                        .order_by(Event.received_at.desc()).limit(1)) or {}
    tail = str(payload.get("tail") or "")
    deliveries = list(db.scalars(select(Delivery).where(Delivery.task_id == task.id,
                                                        Delivery.user_id == user.id)
                                 .order_by(Delivery.created_at)))
    relayed = list(db.scalars(select(RelayCommand).where(
        RelayCommand.user_id == user.id, RelayCommand.session_id == task.session_id)
        .order_by(RelayCommand.created_at.desc()).limit(10))) if task.session_id else []
    return render(request, "task.html", code, web=web, user=user, task=task, tail=tail,
                  message=str(payload.get("message") or ""), host=str(payload.get("host") or ""),
                  cwd=str(payload.get("cwd") or ""), deliveries=deliveries, stored=stored,
                  log=_log_tail(db, task, stored, runtime), shown=LOG_SHOWN,
                  relay=_relay_offer(db, user, task), relayed=relayed, problem=problem)


def _relay_offer(db: Session, user: User, task: Task) -> queue.Target | None:
    """Where "Run again" and a reply would run, when the account may use the relay."""
    if user.plan != "pro":
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
    user = _user(db, web)
    task = _own_task(db, web, key)
    target = queue.target_of_task(db, task)
    text = task.cmd if again else command.strip()
    relay = relay_of(request.app.state)
    origin = queue.Origin(user_id=user.id, plan=user.plan, source="web",
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
    relay.hub.wake((user.id, row.machine_id))
    return _see_other(f"/app/t/{quote(task.key, safe='')}#relayed")


def _log_tail(db: Session, task: Task, stored: TaskLog | None, runtime: Runtime) -> str:
    cipher = _cipher(runtime)
    if stored is None or cipher is None:
        return ""
    try:
        data = logs.read_tail(db, task=task, cipher=cipher, max_bytes=LOG_SHOWN)
    except LogKeyError as exc:  # its key was rotated out: the rest of the page still shows
        return f"(this server cannot open the stored log: {exc})"
    return data.decode("utf-8", errors="replace")


# -- deliveries ------------------------------------------------------------------------------

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
    user = _user(db, web)
    stmt = (select(Delivery, Task.key).outerjoin(Task, Task.id == Delivery.task_id)
            .where(Delivery.user_id == user.id))
    status = status if status in DELIVERY_STATES else None
    if status:
        stmt = stmt.where(Delivery.status == status)
    try:
        stmt = page(stmt, created=Delivery.created_at, row_id=Delivery.id, cursor=cursor,
                    limit=PAGE_SIZE)
    except ApiError:
        return _see_other("/app/deliveries")
    rows = [(row, key) for row, key in db.execute(stmt)]
    more = rows[PAGE_SIZE:]
    rows = rows[:PAGE_SIZE]
    older = encode_cursor(rows[-1][0].created_at, rows[-1][0].id) if more else None
    limit = None if user.plan == "pro" else runtime.settings.free_daily_notifications
    return render(request, "deliveries.html", code, web=web, user=user, rows=rows, older=older,
                  status=status or "", states=DELIVERY_STATES, problem=problem,
                  chart=_chart(db, user.id, limit), limit=limit)


def _chart(db: Session, user_id: uuid.UUID, limit: int | None) -> list[dict[str, Any]]:
    """Task notifications (what the quota counts) sent on each of the last :data:`CHART_DAYS`
    UTC days, scaled for bars; sign-in mails, tests and confirmations are not counted."""
    today = utcnow().date()
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=CHART_DAYS - 1)
    per_day: dict[Any, int] = {}
    for sent_at in db.scalars(select(Delivery.sent_at).where(
            Delivery.user_id == user_id, Delivery.kind == outbox.EVENT,
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
        row = outbox.replay(db, user_id=web.user_id, delivery_id=delivery_id)
    except outbox.NotReplayable as exc:
        return _deliveries_view(request, db, runtime, web, None, None, str(exc), 409)
    if row is None:
        raise NotFound
    db.commit()
    runtime.waker.wake()
    return _see_other("/app/deliveries")


# -- tokens and machines ---------------------------------------------------------------------


@router.get("/access")
def access_page(request: Request, web: WebDep, db: SessionDep) -> HTMLResponse:
    """The account's API tokens and the machines whose agents take relayed commands."""
    return _access_view(request, db, web)


def _access_view(request: Request, db: Session, web: WebSession, *, new_secret: str = "",
                 problem: str = "", code: int = 200) -> HTMLResponse:
    user = _user(db, web)
    now = utcnow()
    live = (ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
    agent_ids = select(RelayAgent.token_id)
    tokens = list(db.scalars(select(ApiToken).where(*live, ApiToken.id.not_in(agent_ids))
                             .order_by(ApiToken.created_at.desc())))
    machines = list(db.execute(select(RelayAgent, ApiToken).join(
        ApiToken, ApiToken.id == RelayAgent.token_id).where(*live)
        .order_by(RelayAgent.machine_id)))
    return render(request, "access.html", code, web=web, user=user, tokens=tokens,
                  machines=machines, scopes=auth.ACCOUNT_SCOPES, new_secret=new_secret,
                  problem=problem)


@router.post("/tokens")
def create_token(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                 csrf: Annotated[str, Form(max_length=100)] = "",
                 name: Annotated[str, Form(max_length=100)] = "",
                 scope: Annotated[list[str] | None, Form()] = None) -> HTMLResponse:
    """A new token with the scopes ticked; its secret is on this one answer and nowhere else."""
    security.check_form(request, runtime.settings, web, csrf)
    user = _user(db, web)
    chosen = sorted(set(scope or ()))
    if not chosen or set(chosen) - set(auth.ACCOUNT_SCOPES):
        return _access_view(request, db, web, code=422,
                            problem="Tick at least one of the scopes offered.")
    issued = auth.issue_token(db, user, scopes=chosen,
                              name=" ".join(name.split())[:100] or "web")
    db.commit()
    return _access_view(request, db, web, new_secret=issued.secret, code=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: uuid.UUID, web: WebDep, db: SessionDep,
                 runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=100)] = "",
                 ) -> Response:
    """Revoke one of the account's tokens, an agent's included: its connections close on every
    replica, and commands left waiting for a machine with no agent expire."""
    security.check_form(request, runtime.settings, web, csrf)
    mine = db.scalar(select(ApiToken.id).where(ApiToken.id == token_id,
                                               ApiToken.user_id == web.user_id,
                                               ApiToken.revoked_at.is_(None)))
    if mine is None:
        raise NotFound
    revoked = auth.revoke(db, token=str(mine))
    queue.drop_unserved(db, [web.user_id])
    db.commit()
    relay_of(request.app.state).hub.revoked(revoked)
    return _see_other("/app/access")


# -- account ---------------------------------------------------------------------------------


@router.get("/account")
def account_page(request: Request, web: WebDep, db: SessionDep,
                 runtime: RuntimeDep) -> HTMLResponse:
    return _account_view(request, db, runtime, web)


def _account_view(request: Request, db: Session, runtime: Runtime, web: WebSession,
                  problem: str = "", code: int = 200) -> HTMLResponse:
    user = _user(db, web)
    day = quota.quota_day(utcnow(), user.timezone)
    counts = quota.usage(db, user_id=user.id, day=day, tz_name=user.timezone)
    pro = user.plan == "pro"
    return render(request, "account.html", code, web=web, user=user, day=day,
                  sent=counts.get("all", 0), sms=counts.get("sms", 0),
                  limit=None if pro else runtime.settings.free_daily_notifications,
                  sms_limit=runtime.settings.pro_daily_sms if pro else 0, problem=problem)


@router.get("/account/export")
def export_account(web: WebDep, db: SessionDep) -> Response:
    """Everything the server holds about the account, as one JSON file: tasks with their
    events (output opened), channels (signing secrets left out), deliveries, relayed commands
    and their audit, tokens and sessions (never a secret or a hash)."""
    user = _user(db, web)
    data = export.account(db, user)
    body = json.dumps(data, default=str, indent=1, ensure_ascii=False).encode()
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="claude-notify-export.json"'})


@router.post("/account/delete")
def delete_account(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                   csrf: Annotated[str, Form(max_length=100)] = "",
                   confirm: Annotated[str, Form(max_length=320)] = "") -> Response:
    """Delete the account and everything of it (logs included), after the address is typed."""
    security.check_form(request, runtime.settings, web, csrf)
    user = _user(db, web)
    if confirm.strip().lower() != user.email:
        return _account_view(request, db, runtime, web, code=422,
                             problem="Type the account's e-mail address to delete it.")
    token_ids = list(db.scalars(select(ApiToken.id).where(ApiToken.user_id == user.id)))
    export.erase(db, user)
    db.commit()
    relay_of(request.app.state).hub.revoked(token_ids)  # its agents' connections close
    response = render(request, "message.html", title="Account deleted",
                      text=f"The account {user.email} and everything of it are deleted.")
    security.end(request, response)
    return response


# -- sessions --------------------------------------------------------------------------------


@router.get("/sessions")
def sessions_page(request: Request, web: WebDep, db: SessionDep) -> HTMLResponse:
    user = _user(db, web)
    rows = list(db.scalars(select(WebSession).where(WebSession.user_id == user.id,
                                                    WebSession.expires_at > utcnow())
                           .order_by(WebSession.last_seen_at.desc())))
    return render(request, "sessions.html", web=web, user=user, sessions=rows)


@router.post("/sessions/{session_id}/revoke")
def revoke_session(request: Request, session_id: uuid.UUID, web: WebDep, db: SessionDep,
                   runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=100)] = "",
                   ) -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    gone = db.execute(delete(WebSession).where(WebSession.id == session_id,
                                               WebSession.user_id == web.user_id))
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise NotFound
    db.commit()
    response = _see_other("/app/signin" if session_id == web.id else "/app/sessions")
    if session_id == web.id:
        security.end(request, response)
    return response


# -- wiring ----------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Mount the pages, their static files, their headers and their error pages on ``app``."""
    app.include_router(router)
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="web-static")
    app.add_middleware(security.HeadersMiddleware)

    async def sign_in(request: Request, _exc: Exception) -> Response:
        return _see_other("/app/signin")

    async def not_found(request: Request, _exc: Exception) -> Response:
        return render(request, "message.html", code=404, title="Not found",
                      text="There is nothing here, or it is not yours, or the link was used or "
                           "has expired.")

    async def refused(request: Request, exc: Exception) -> Response:
        return render(request, "message.html", code=403, title="Refused",
                      text=f"This form was refused: {exc}. Reload the page and try again.")

    app.add_exception_handler(SignInNeeded, sign_in)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(security.Refused, refused)
