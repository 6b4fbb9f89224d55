"""The command relay's API: queue a command, read it back, the audit log, and the agent tunnel.

* ``POST /v1/commands`` (``commands:write``, pro) queues a command for the machine whose task ran
  in ``session_id``: only the account that owns the session can; refusals are audited too. A
  notification's reply token (``Authorization: Bearer cnr_…``, from the task link's
  ``#reply=`` fragment) can stand in for the API token: it queues one command, only for the
  run it was issued for (that task's session, machine and directory; ``session_id`` may then
  be left out), and only until it expires.
* ``POST /v1/agents`` (the account token) mints the ``relay`` token of one machine; the new
  token replaces that machine's previous one.
* ``/v1/agent`` is the agent's WebSocket. Only a ``relay`` token bound to a machine is accepted,
  and it receives only that machine's commands. Messages are JSON objects with a ``type``:
  the server sends ``command`` (``id``, ``kind``, ``session_id``, ``command``, ``cwd``), ``ack`` and
  ``pong``; the agent sends ``hello`` (``sessions``; ``running``: what it started and has no
  acknowledged result for), ``started``, ``result``
  (``state``, ``exit_code``, ``detail``) and ``ping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.api.deps import (
    Principal,
    RuntimeDep,
    SessionDep,
    TaskReader,
    _bearer,
    get_principal,
    require,
)
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.db.models import ApiToken, User
from claude_notify.cloud.server.relay import queue, reply_tokens
from claude_notify.cloud.server.relay.models import RelayAgent, RelayAudit, RelayCommand
from claude_notify.cloud.server.relay.state import Relay, relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

router = APIRouter(tags=["relay"])
log = logging.getLogger("claude_notify.server.relay")

CommandWriter = Annotated[Principal, Depends(require("commands:write"))]


class CommandIn(StrictBody):
    session_id: str | None = Field(default=None, min_length=1, max_length=256)
    """Required with an API token; with a reply token, its own session (or left out)."""
    command: str = Field(min_length=1, max_length=8192)
    kind: Literal["shell", "claude"] = "shell"
    """``claude``: ``command`` is a prompt that continues the Claude Code session ``session_id``."""


class CommandOut(BaseModel):
    id: uuid.UUID
    session_id: str
    machine_id: str
    command: str
    kind: str
    state: str
    exit_code: int | None
    detail: str | None
    created_at: datetime
    expires_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: RelayCommand) -> CommandOut:
        return cls(id=row.id, session_id=row.session_id, machine_id=row.machine_id,
                   command=row.command, kind=row.kind, state=row.state, exit_code=row.exit_code,
                   detail=row.detail, created_at=row.created_at, expires_at=row.expires_at,
                   started_at=row.started_at, finished_at=row.finished_at)


def queue_command(runtime: Runtime, relay: Relay, origin: queue.Origin, *,
                  to: queue.Target | str, command: str, kind: str = "shell") -> CommandOut:
    """Queue and wake the agent; :class:`ApiError` (already audited) when refused.

    Shared with the chat channels' replies, which arrive with a different ``origin`` and
    name the run their notification was about rather than a session.
    """
    with runtime.sessions() as session:
        try:
            row = queue.enqueue(session, origin, to=to, command=command,
                                policy=relay.policy, kind=kind)
        except queue.Refused as refused:
            session.commit()
            raise ApiError(refused.status, refused.message) from None
        out = CommandOut.of(row)
        session.commit()
    relay.hub.wake((origin.user_id, out.machine_id))
    return out


def _command_sender(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | str:
    """A reply token as presented (checked by the route, which audits), else an API token's
    principal with ``commands:write``."""
    if credentials is not None and credentials.credentials.startswith(reply_tokens.PREFIX):
        return credentials.credentials
    principal = get_principal(runtime, credentials)
    if "commands:write" not in principal.scopes:
        raise ApiError(403, "this token lacks the 'commands:write' scope")
    return principal


@router.post("/v1/commands", status_code=202, response_model=CommandOut)
def post_command(body: CommandIn, caller: Annotated[Principal | str, Depends(_command_sender)],
                 request: Request) -> CommandOut:
    runtime = request.app.state.runtime
    relay = relay_of(request.app.state)
    if isinstance(caller, str):
        return _by_reply_token(runtime, relay, caller, body)
    if body.session_id is None:
        raise ApiError(422, "session_id is required (only a reply token implies it)")
    origin = queue.Origin(user_id=caller.user_id, plan=caller.plan, source="api",
                          actor=f"token {caller.token_id}")
    return queue_command(runtime, relay, origin, to=body.session_id, command=body.command,
                         kind=body.kind)


def _by_reply_token(runtime: Runtime, relay: Relay, presented: str, body: CommandIn) -> CommandOut:
    """Queue for the run the reply token's notification was about, using the token up; anything
    else is refused and audited (a refused command leaves the token as it was)."""
    with runtime.sessions() as session:
        checked = reply_tokens.check(session, presented)
        token = checked.row
        user = session.get(User, token.user_id) if token is not None else None
        if token is None or user is None:
            log.info("reply token refused: %s", checked.problem)
            raise ApiError(401, "invalid or expired reply token",
                           headers={"WWW-Authenticate": "Bearer"})
        origin = queue.Origin(user_id=user.id, plan=user.plan, source="reply-token",
                              actor=f"reply token {token.id.hex[:12]}")
        problem, status = checked.problem, 401
        if problem is None and body.session_id not in (None, token.session_id):
            problem, status = "this reply token is for another session", 403
        if problem is None and not reply_tokens.use(session, token):
            problem = "the reply token was already used"  # by a concurrent request
        target = reply_tokens.target(session, token) if problem is None else None
        if isinstance(target, str):
            problem, status = target, 403
        if problem is not None or not isinstance(target, queue.Target):
            queue.audit(session, origin, command=body.command, outcome="refused",
                        reason=problem, machine_id=token.machine_id, session_id=body.session_id)
            session.commit()
            raise ApiError(status, problem or "", headers={"WWW-Authenticate": "Bearer"}
                           if status == 401 else None)
        try:
            row = queue.enqueue(session, origin, to=target, command=body.command,
                                policy=relay.policy, kind=body.kind)
        except queue.Refused as refused:
            reply_tokens.give_back(session, token)
            session.commit()
            raise ApiError(refused.status, refused.message) from None
        out = CommandOut.of(row)
        session.commit()
    relay.hub.wake((origin.user_id, out.machine_id))
    return out


@router.get("/v1/commands/{command_id}", response_model=CommandOut)
def get_command(command_id: uuid.UUID, caller: TaskReader, session: SessionDep) -> CommandOut:
    row = session.get(RelayCommand, command_id)
    if row is None or row.user_id != caller.user_id:
        raise not_found("command")
    return CommandOut.of(row)


class AuditOut(BaseModel):
    id: uuid.UUID
    command_id: uuid.UUID | None
    actor: str
    source: str
    machine_id: str | None
    session_id: str | None
    command: str
    outcome: str
    reason: str | None
    created_at: datetime


@router.get("/v1/audit", response_model=list[AuditOut])
def get_audit(caller: TaskReader, session: SessionDep,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[AuditOut]:
    """Every relayed command of the caller's, newest first."""
    rows = session.scalars(select(RelayAudit).where(RelayAudit.user_id == caller.user_id)
                           .order_by(RelayAudit.created_at.desc()).limit(limit)).all()
    return [AuditOut(id=r.id, command_id=r.command_id, actor=r.actor, source=r.source,
                     machine_id=r.machine_id, session_id=r.session_id, command=r.command,
                     outcome=r.outcome, reason=r.reason, created_at=r.created_at) for r in rows]


class AgentIn(StrictBody):
    machine_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


class AgentOut(BaseModel):
    token: str
    machine_id: str


@router.post("/v1/agents", status_code=201, response_model=AgentOut)
def register_agent(body: AgentIn, caller: CommandWriter, session: SessionDep,
                   request: Request) -> AgentOut:
    """Mint the agent credential of one machine (the account token, pro plan); the previous
    one is revoked and its connections closed on every replica."""
    if not set(auth.ACCOUNT_SCOPES) <= caller.scopes:
        raise ApiError(403, "registering an agent needs the account token")
    if caller.plan != "pro":
        raise ApiError(403, "the command relay needs the pro plan")
    user = session.get(User, caller.user_id)
    assert user is not None  # noqa: S101 - the caller was just authenticated
    previous = list(session.scalars(
        select(ApiToken.id).join(RelayAgent, RelayAgent.token_id == ApiToken.id)
        .where(RelayAgent.user_id == user.id, RelayAgent.machine_id == body.machine_id,
               ApiToken.revoked_at.is_(None))))
    _check_agents(session, user.id, body.machine_id, request.app.state.runtime)
    if previous:
        session.execute(update(ApiToken).where(ApiToken.id.in_(previous))
                        .values(revoked_at=utcnow()))
    issued = auth.issue_token(session, user, scopes=["relay"],
                              name=f"agent {body.machine_id[:40]}")
    session.flush()
    session.add(RelayAgent(token_id=issued.id, user_id=user.id, machine_id=body.machine_id))
    session.commit()
    relay_of(request.app.state).hub.revoked(previous)
    return AgentOut(token=issued.secret, machine_id=body.machine_id)


def _check_agents(session: Session, user_id: uuid.UUID, machine_id: str,
                  runtime: Runtime) -> None:
    """Refuse a new machine past the account's limit (re-registering one replaces its own
    agent). The user's row is locked first, so concurrent registrations are counted in turn."""
    limit = runtime.settings.max_agents_per_user
    session.get(User, user_id, with_for_update=True, populate_existing=True)
    others = session.scalar(
        select(func.count()).select_from(RelayAgent)
        .join(ApiToken, ApiToken.id == RelayAgent.token_id)
        .where(RelayAgent.user_id == user_id, RelayAgent.machine_id != machine_id,
               ApiToken.revoked_at.is_(None)))
    if (others or 0) >= limit:
        raise ApiError(403, f"an account has at most {limit} agent machine(s)")


# --------------------------------------------------------------------------- the tunnel


def _agent_for(runtime: Runtime, secret: str) -> tuple[uuid.UUID, str, uuid.UUID] | None:
    """The user, machine and token behind an agent's credential."""
    with runtime.sessions.begin() as session:
        found = auth.authenticate(session, secret)
        if found is None:
            return None
        user, token = found
        if token.scopes.split() != ["relay"]:
            return None  # the events token, the account token: never an agent
        agent = session.get(RelayAgent, token.id)
        if agent is None or agent.user_id != user.id:
            return None
        agent.last_seen_at = utcnow()
        return user.id, agent.machine_id, token.id


class _Tunnel:
    """``/v1/agent``, the agent's WebSocket, as a plain ASGI endpoint of a Starlette route.

    FastAPI's websocket route would wrap each connection in its dependency solving, exception
    handling and exit stacks, which an idle connection holds for hours: kilobytes per agent.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        runtime: Runtime = websocket.app.state.runtime
        relay = relay_of(websocket.app.state)
        scheme, _, secret = websocket.headers.get("authorization", "").partition(" ")
        found = None
        if scheme.lower() == "bearer" and secret:
            found = await anyio.to_thread.run_sync(_agent_for, runtime, secret.strip())
        if found is None:
            await websocket.close(code=1008, reason="not an agent token")
            return
        await websocket.accept()
        user_id = found[0]
        if not runtime.agent_sockets.take(user_id):
            # Accepted, then closed with "try again later": refused before the handshake, the
            # agent would read a 403 and stop for good.
            await websocket.close(code=1013, reason="too many agent connections for this "
                                                    "account; retrying later")
            return
        try:
            await _Link(websocket, runtime, relay, *found).serve()
        finally:
            runtime.agent_sockets.release(user_id)


router.routes.append(WebSocketRoute("/v1/agent", _Tunnel(), name="agent_socket"))


def tunnel_first(app: ASGIApp) -> ASGIApp:
    """``app`` with ``/v1/agent`` answered before its middleware stack and router.

    Every layer an idle connection passes through stays suspended in it for hours: the stack's
    frames, exit stacks and exception wrappers cost ~8 KB per agent. The middleware has nothing
    to do for the tunnel (no body, no access log, errors end in a close). ``claude-notify
    server`` serves this; the route above stays in the app for anything else that serves it.
    """
    tunnel = _Tunnel()

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/v1/agent":
            scope["app"] = app  # where the tunnel finds the app's state, as behind the router
            await tunnel(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


class _Link:
    """One connected agent.

    An idle connection is a coroutine waiting for the agent's next message plus two timer
    handles (the queue's periodic re-read, the silence limit), never a waiting task: each task
    and the objects around it cost kilobytes, times thousands of agents. A wake-up starts a
    short-lived task that sends what is due; only one runs at a time per connection (``sent``
    and the queue's own rules keep a command from being handed over twice).
    """

    def __init__(self, websocket: WebSocket, runtime: Runtime, relay: Relay,
                 user_id: uuid.UUID, machine_id: str, token_id: uuid.UUID) -> None:
        self.ws, self.runtime, self.relay = websocket, runtime, relay
        self.key = (user_id, machine_id)
        self.token_id = token_id
        self.sent: set[uuid.UUID] = set()
        self.loop = asyncio.get_running_loop()
        self.heard = self.loop.time()
        self.flushing = True  # the backlog is sent before anything else
        self.again = False
        self.closed = False
        self.sender: asyncio.Future[None] | None = None
        self.closer: asyncio.Future[None] | None = None
        self.poll: asyncio.TimerHandle | None = None
        self.silence: asyncio.TimerHandle | None = None

    async def serve(self) -> None:
        """Until the agent goes, goes silent, or either direction fails: then the connection
        closes and the agent reconnects (its commands are in the database, nothing is lost)."""
        try:
            hello = await asyncio.wait_for(self.ws.receive_json(), self.relay.policy.idle_s)
        except WebSocketDisconnect:
            return
        except (asyncio.TimeoutError, ValueError):
            hello = None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await self.ws.close(code=1002, reason="expected hello")
            return
        await self._db(self._hello, hello)
        del hello  # not held for the connection's lifetime
        with self.relay.hub.connected(self.key, self.wake, token_id=self.token_id, cut=self.cut):
            try:
                await self._send_due()  # the backlog goes before any reply
                self.silence = self.loop.call_at(self.heard + self.relay.policy.idle_s,
                                                 self._check_silence)
                await self._receive_loop()
            except WebSocketDisconnect:
                pass
            except Exception as exc:  # any failure ends this connection only
                log.info("agent connection closed: %s: %s", type(exc).__name__, exc)
            finally:
                self.closed = True
                for timer in (self.poll, self.silence):
                    if timer is not None:
                        timer.cancel()
                if self.sender is not None and not self.sender.done():
                    self.sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self.sender
                with contextlib.suppress(Exception):  # already closed by the agent, most often
                    await self.ws.close(code=1001)

    def cut(self) -> None:
        """Close the connection: its token was revoked (the hub's callback). The agent's
        reconnection is then refused."""
        if self.closed:
            return
        log.info("agent connection closed: its token was revoked")
        self.closed = True  # no wake-up sends anything from now on
        self._close(1008)

    def wake(self) -> None:
        """Send what is due now (the hub's callback, and the periodic re-read)."""
        if self.closed:
            return
        if self.flushing:
            self.again = True  # the running send re-reads the queue once it is done
            return
        self.flushing = True
        self.sender = asyncio.ensure_future(self._send_task())

    async def _send_task(self) -> None:
        try:
            await self._send_due()
        except Exception as exc:  # the agent reconnects; nothing is lost
            log.info("agent connection closed: %s: %s", type(exc).__name__, exc)
            self._close(1011)

    async def _send_due(self) -> None:
        """Send the queue until a re-read finds nothing new; then re-arm the periodic re-read."""
        try:
            while True:
                self.again = False
                due = await self._db(self._due)
                if due is None:
                    self.cut()
                    return
                for message in due:
                    await self.ws.send_json(message)
                if not self.again:
                    break
        finally:
            self.flushing = False
        if self.poll is not None:
            self.poll.cancel()
        self.poll = self.loop.call_later(self.relay.policy.poll_s, self.wake)

    async def _receive_loop(self) -> None:
        while True:
            message = await self.ws.receive_json()
            self.heard = self.loop.time()
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "ping":
                await self.ws.send_json({"type": "pong"})
            elif kind in ("started", "result"):
                reply = await self._db(self._report, message)
                if reply is not None:
                    await self.ws.send_json(reply)
                self.wake()  # a finished command lets its session's next one go

    def _check_silence(self) -> None:
        """Close a connection whose agent has said nothing for ``idle_s`` (it may be gone
        without a FIN): the pending receive then ends with the disconnect."""
        deadline = self.heard + self.relay.policy.idle_s
        if self.loop.time() < deadline:
            self.silence = self.loop.call_at(deadline, self._check_silence)
            return
        log.info("agent connection closed: silent for %.0f s", self.relay.policy.idle_s)
        self._close(1001)

    def _close(self, code: int) -> None:
        self.closer = asyncio.ensure_future(self._close_quietly(code))

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code)

    async def _db(self, func: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(func, *args)

    def _hello(self, hello: dict[str, Any]) -> None:
        user_id, machine_id = self.key
        alive = [_uuid(x) for x in hello.get("running", []) if isinstance(x, str)]
        sessions = [s for s in hello.get("sessions", []) if isinstance(s, str)][:100]
        with self.runtime.sessions.begin() as session:
            queue.orphaned(session, user_id, machine_id, [a for a in alive if a is not None])
            session.execute(update(RelayAgent).where(
                RelayAgent.user_id == user_id, RelayAgent.machine_id == machine_id)
                .values(sessions=sessions, last_seen_at=utcnow()))

    def _due(self) -> list[dict[str, Any]] | None:
        """The commands to send; ``None`` when the token was revoked (checked in the same
        transaction, so a command is never handed over after its revocation committed)."""
        with self.runtime.sessions.begin() as session:
            if not auth.is_live(session, self.token_id):
                return None
            rows = queue.due(session, *self.key, self.sent)
            out = [{"type": "command", "id": str(r.id), "session_id": r.session_id,
                    "command": r.command, "cwd": r.cwd, "source": r.source, "kind": r.kind}
                   for r in rows]
        self.sent.update(r.id for r in rows)
        return out

    def _report(self, message: dict[str, Any]) -> dict[str, Any] | None:
        command_id = _uuid(message.get("id"))
        if command_id is None:
            return None
        with self.runtime.sessions.begin() as session:
            if message["type"] == "started":
                queue.started(session, *self.key, command_id)
                return None
            exit_code = message.get("exit_code")
            queue.finished(session, *self.key, command_id, state=str(message.get("state")),
                           exit_code=exit_code if isinstance(exit_code, int) else None,
                           detail=str(message.get("detail") or "")[:2000] or None)
        return {"type": "ack", "id": str(command_id)}


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
