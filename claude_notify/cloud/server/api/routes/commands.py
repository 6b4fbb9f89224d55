"""The command relay's API: queue a command, read it back, the audit log, register an agent.

* ``POST /v1/commands`` (``commands:write``, pro) queues a command for the machine whose task ran
  in ``session_id``: only the account that owns the session can; refusals are audited too. A
  notification's reply token (``Authorization: Bearer cnr_…``, from the task link's
  ``#reply=`` fragment) can stand in for the API token: it queues one command, only for the
  run it was issued for (that task's session, machine and directory; ``session_id`` may then
  be left out), and only until it expires.
* ``POST /v1/agents`` (the account token) mints the ``relay`` token of one machine; the new
  token replaces that machine's previous one.
* ``/v1/agent``, the agent's WebSocket, is :mod:`claude_notify.cloud.server.relay.tunnel`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.api.deps import (
    Bearer,
    Principal,
    RuntimeDep,
    SessionDep,
    TaskReader,
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


def _command_sender(
    request: Request,
    runtime: RuntimeDep,
    credentials: Bearer,
) -> Principal | str:
    """A reply token as presented (checked by the route, which audits), else an API token's
    principal with ``commands:write``."""
    if credentials is not None and credentials.credentials.startswith(reply_tokens.PREFIX):
        return credentials.credentials
    principal = get_principal(request, runtime, credentials)
    if "commands:write" not in principal.scopes:
        raise ApiError(403, "this token lacks the 'commands:write' scope")
    return principal


@router.post("/v1/commands", status_code=202, response_model=CommandOut)
def post_command(body: CommandIn, caller: Annotated[Principal | str, Depends(_command_sender)],
                 request: Request) -> CommandOut:
    runtime = request.app.state.runtime
    relay = relay_of(request.app.state)
    if isinstance(caller, str):
        return by_reply_token(runtime, relay, caller, command=body.command,
                              session_id=body.session_id, kind=body.kind)
    if body.session_id is None:
        raise ApiError(422, "session_id is required (only a reply token implies it)")
    origin = queue.Origin(user_id=caller.user_id, plan=caller.plan, source="api",
                          actor=f"token {caller.token_id}")
    try:
        return relay.submit(runtime.sessions, origin, to=body.session_id, command=body.command,
                            kind=body.kind, shown=CommandOut.of)
    except queue.CommandRefused as refused:
        raise ApiError(refused.status, refused.message) from None


def by_reply_token(runtime: Runtime, relay: Relay, presented: str, *, command: str,
                   session_id: str | None, kind: str | None,
                   source: str = "reply-token") -> CommandOut:
    """Queue for the run the reply token's notification was about, using the token up; anything
    else is refused and audited (a refused command leaves the token as it was). ``kind`` None:
    a reply to a Claude Code session continues it, anything else runs as a command (the web
    app's reply box, which cannot know which the run was)."""
    with runtime.sessions() as session:
        checked = reply_tokens.check(session, presented)
        token = checked.row
        user = session.get(User, token.user_id) if token is not None else None
        if token is None or user is None:
            log.info("reply token refused: %s", checked.problem)
            raise ApiError(401, "invalid or expired reply token",
                           headers={"WWW-Authenticate": "Bearer"})
        origin = queue.Origin(user_id=user.id, plan=auth.person_plan(session, user.id),
                              source=source,
                              actor=f"reply token {token.id.hex[:12]}")
        problem, status = checked.problem, 401
        if problem is None and session_id not in (None, token.session_id):
            problem, status = "this reply token is for another session", 403
        if problem is None and not reply_tokens.use(session, token):
            problem = "the reply token was already used"  # by a concurrent request
        target = reply_tokens.target(session, token) if problem is None else None
        if isinstance(target, str):
            problem, status = target, 403
        if problem is not None or not isinstance(target, queue.Target):
            queue.audit(session, origin, command=command, outcome="refused",
                        reason=problem, machine_id=token.machine_id, session_id=session_id)
            session.commit()
            raise ApiError(status, problem or "", headers={"WWW-Authenticate": "Bearer"}
                           if status == 401 else None)
        try:
            if kind is None:
                kind = "claude" if target.source == "claude-code" else "shell"
            row = queue.enqueue(session, origin, to=target, command=command,
                                policy=relay.policy, kind=kind)
        except queue.CommandRefused as refused:
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
    issued = auth.issue_token(session, user, scopes=["relay"], workspace_id=caller.workspace_id,
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
