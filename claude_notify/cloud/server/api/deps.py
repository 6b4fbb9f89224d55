"""Request dependencies: the database session, the calling user and scope checks.

Routes declare what they need with the aliases (``SessionDep``, ``Caller``) and
``Depends(require("scope"))``, so authentication lives in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams import roles


async def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)  # noqa: S101 - set by create_app
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """The request's session, closed on the event loop rather than in a worker thread.

    A sync teardown would queue for a thread-pool slot while its transaction still holds
    SQLite's write lock; with every slot taken by requests waiting for that lock, nothing
    moves. Closing here needs no slot, so the lock is always released.
    """
    session = runtime.sessions()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, the workspace their token acts in (with their role there and
    its plan and quota zone) and what their token may do."""

    user_id: uuid.UUID
    email: str
    workspace_id: uuid.UUID
    role: str
    plan: str
    timezone: str
    """The workspace's quota zone."""
    token_id: uuid.UUID
    scopes: frozenset[str]


_bearer = HTTPBearer(auto_error=False, description="An API token: `cnt_…`")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate(
    session: Session,
    credentials: HTTPAuthorizationCredentials | None,
    memo: dict[Any, Any] | None = None,
) -> Principal:
    """The caller behind ``credentials``, or a 401; ``memo`` shares lookups in a transaction."""
    if credentials is None:
        raise _unauthorized("missing bearer token")
    key = ("identity", credentials.credentials)
    if memo is not None and key in memo:
        found = memo[key]
    else:
        found = auth.identify(session, credentials.credentials)
        if memo is not None:
            memo[key] = found
    if found is None:
        raise _unauthorized("invalid, expired or revoked token")
    return Principal(
        user_id=found.user_id,
        email=found.email,
        workspace_id=found.workspace_id,
        role=found.role,
        plan=found.plan,
        timezone=found.timezone,
        token_id=found.token_id,
        scopes=frozenset(found.scopes.split()),
    )


def check_scope(principal: Principal, scope: str) -> Principal:
    """``principal`` if its token carries ``scope``, else a 403."""
    if scope not in principal.scopes:
        raise ApiError(403, f"this token lacks the {scope!r} scope")
    return principal


def get_principal(request: Request, runtime: RuntimeDep, credentials: Bearer) -> Principal:
    """Authenticate in a transaction of its own, ended before the handler's thread takes over,
    and check the caller's role against the route's (:mod:`..teams.roles`)."""
    with runtime.sessions() as session:
        principal = authenticate(session, credentials)
        session.commit()  # the token's last use, when it was due (auth.TOUCH_EVERY)
    roles.check(principal.role, request.scope)
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the call through only if the token carries ``scope``."""
    if scope not in auth.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(principal: Caller) -> Principal:  # async: no thread-pool hop for a test
        return check_scope(principal, scope)

    return check


EventWriter = Annotated[Principal, Depends(require("events:write"))]
TaskReader = Annotated[Principal, Depends(require("tasks:read"))]
ChannelWriter = Annotated[Principal, Depends(require("channels:write"))]
