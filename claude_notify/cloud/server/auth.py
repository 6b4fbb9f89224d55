"""API tokens and the operator's account functions.

A token is ``cnt_`` plus 32 random bytes; the database keeps only its SHA-256, so a leaked table
cannot be replayed (a random secret needs no slow hash: there is nothing to brute-force). Tokens
carry scopes: the one a machine uses to send events can do only that.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server.db.models import (
    ApiToken,
    Role,
    User,
    Workspace,
    WorkspaceMember,
)
from claude_notify.errors import UsageError
from claude_notify.events import utcnow

TOKEN_PREFIX: Final = "cnt_"  # noqa: S105 - a public marker, not a secret

SCOPES: Final = frozenset(
    {"events:write", "tasks:read", "channels:write", "commands:write", "relay", "admin"}
)
"""``events:write`` sends events, registers tasks and appends logs; ``tasks:read`` lists them;
``channels:write`` manages channels and dead letters; ``commands:write`` queues commands from a
phone; ``relay`` is the agent end of the command tunnel; ``admin`` is the operator."""

ACCOUNT_SCOPES: Final = ("events:write", "tasks:read", "channels:write", "commands:write")
"""What a user's own first token may do: everything but acting as a relay agent or operator."""

PLANS: Final = ("free", "pro")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as shown once to its owner; only ``hash`` is ever stored."""

    id: uuid.UUID
    secret: str


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    session: Session,
    user: User,
    *,
    scopes: Iterable[str] = ACCOUNT_SCOPES,
    name: str = "",
    expires_at: datetime | None = None,
    workspace_id: uuid.UUID | None = None,
) -> IssuedToken:
    """Create a token for ``user`` acting in ``workspace_id`` (default: :func:`home`); the
    caller commits, and has checked that ``user`` is a member there."""
    scope_set = set(scopes)
    if unknown := scope_set - SCOPES:
        raise UsageError(f"unknown token scope(s): {', '.join(sorted(unknown))}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=uuid.uuid4(),
        user_id=user.id,
        workspace_id=workspace_id or home(session, user.id),
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:12],
        scopes=" ".join(sorted(scope_set)),
        expires_at=expires_at,
    )
    session.add(row)
    return IssuedToken(id=row.id, secret=secret)


def authenticate(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    """The user and token for a presented secret, or ``None`` if unknown, revoked or expired."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(secret))
    ).first()
    if row is None:
        return None
    token, user = row
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    return user, token


@dataclass(frozen=True, slots=True)
class Identity:
    """The columns a request's authentication needs, read without loading ORM objects."""

    user_id: uuid.UUID
    email: str
    workspace_id: uuid.UUID
    role: str
    plan: str
    timezone: str
    """The workspace's quota zone."""
    token_id: uuid.UUID
    scopes: str


TOUCH_EVERY: Final = timedelta(minutes=5)
"""How stale a token's ``last_used_at`` may get before a request writes it again."""

_TOKENS: Any = ApiToken.__table__
_USERS: Any = User.__table__
_SPACES: Any = Workspace.__table__
_MEMBERS: Any = WorkspaceMember.__table__
_IDENTIFY = (
    select(_USERS.c.id.label("user_id"), _USERS.c.email, _TOKENS.c.workspace_id,
           _MEMBERS.c.role, _SPACES.c.plan, _SPACES.c.timezone,
           _TOKENS.c.id.label("token_id"), _TOKENS.c.scopes, _TOKENS.c.revoked_at,
           _TOKENS.c.expires_at, _TOKENS.c.last_used_at)
    .join_from(_TOKENS, _USERS, _USERS.c.id == _TOKENS.c.user_id)
    .join(_SPACES, _SPACES.c.id == _TOKENS.c.workspace_id)
    # A member removed from the workspace is refused even if their tokens were not revoked.
    .join(_MEMBERS, (_MEMBERS.c.workspace_id == _TOKENS.c.workspace_id)
          & (_MEMBERS.c.user_id == _TOKENS.c.user_id))
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)


def identify(session: Session, secret: str) -> Identity | None:
    """:func:`authenticate` for every request: the same answer in one Core statement."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    row = session.execute(_IDENTIFY, {"token_hash": hash_token(secret)}).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        # Written with the caller's transaction, and at most once per TOUCH_EVERY: a token
        # sending thousands of events costs one write, not thousands.
        session.execute(update(ApiToken).where(ApiToken.id == row.token_id)
                        .values(last_used_at=now))
    return Identity(row.user_id, row.email, row.workspace_id, row.role, row.plan, row.timezone,
                    row.token_id, row.scopes)


def normalise_email(email: str) -> str:
    """E-mail addresses compare case-insensitively for accounts."""
    return email.strip().lower()


def create_account(session: Session, email: str, *, plan: str = "free") -> User:
    """Create an account without any token; the caller commits."""
    _check_plan(plan)
    address = normalise_email(email)
    check_address(address)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise UsageError(f"a user with e-mail {address} already exists")
    user = User(id=uuid.uuid4(), email=address, timezone="UTC")
    session.add(user)
    session.flush()
    # Everyone starts in a workspace of their own (with the account's id, as the migration
    # gave existing accounts), so one code path serves people alone and in teams.
    session.add(Workspace(id=user.id, name=address, plan=plan, timezone="UTC"))
    session.flush()
    session.add(WorkspaceMember(workspace_id=user.id, user_id=user.id, role=Role.OWNER))
    session.flush()
    return user


def check_address(address: str) -> None:
    """Refuse what is not an e-mail address: an account's address receives its sign-in links."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise UsageError(f"{address!r} is not an e-mail address: {exc}") from None


def home(session: Session, user_id: uuid.UUID) -> uuid.UUID:
    """The workspace a user acts in unless they choose another: the one they own, else the
    one they joined first."""
    found = session.scalar(
        select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == user_id)
        .order_by((WorkspaceMember.role != Role.OWNER), WorkspaceMember.created_at).limit(1))
    if found is None:
        raise UsageError("this account belongs to no workspace")
    return found


def person_plan(session: Session, user_id: uuid.UUID) -> str:
    """The plan a person's own machines get for the relay (commands, replies, approvals),
    which stays personal in a team: ``pro`` when any workspace they belong to is."""
    plans = set(session.scalars(
        select(Workspace.plan).join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)))
    return "pro" if "pro" in plans else "free"


def plan_of(session: Session, workspace_id: uuid.UUID) -> str:
    """A workspace's plan (``free`` for one that no longer exists)."""
    return session.scalar(select(Workspace.plan).where(Workspace.id == workspace_id)) or "free"


def create_user(session: Session, email: str, *, plan: str = "free") -> tuple[User, IssuedToken]:
    """Create an account with one account token (``server create-user``); the caller commits."""
    user = create_account(session, email, plan=plan)
    return user, issue_token(session, user, name="account")


def set_plan(session: Session, email: str, plan: str) -> Workspace:
    """Change the plan of the workspace a user acts in by default (``server set-plan``); the
    caller commits."""
    _check_plan(plan)
    user = _find_user(session, email)
    workspace = session.get(Workspace, home(session, user.id))
    assert workspace is not None  # noqa: S101 - home() read its id
    workspace.plan = plan
    return workspace


def revoke_tokens(session: Session, *, email: str | None = None, token: str | None = None) -> int:
    """Revoke one token (by its secret or its id) or all of a user's tokens; returns how many."""
    return len(revoke(session, email=email, token=token))


def revoke(session: Session, *, email: str | None = None,
           token: str | None = None) -> list[uuid.UUID]:
    """:func:`revoke_tokens`, returning the ids revoked: the caller commits, then tells the relay
    (:meth:`Hub.revoked <claude_notify.cloud.server.relay.hub.Hub.revoked>`) to close them."""
    if token is not None:
        match = _token_match(token)
    elif email is not None:
        match = ApiToken.user_id == _find_user(session, email).id
    else:
        raise UsageError("say which token or which user's tokens to revoke")
    ids = list(session.scalars(select(ApiToken.id).where(match, ApiToken.revoked_at.is_(None))))
    if ids:
        session.execute(update(ApiToken).where(ApiToken.id.in_(ids))
                        .values(revoked_at=utcnow()))
    return ids


def revoked_since(session: Session, since: datetime) -> list[uuid.UUID]:
    """The tokens revoked at or after ``since`` (an index range, however many tokens exist)."""
    return list(session.scalars(select(ApiToken.id).where(ApiToken.revoked_at >= since)))


def is_live(session: Session, token_id: uuid.UUID) -> bool:
    """Whether the token may still be used: not revoked, not expired."""
    row = session.execute(select(ApiToken.revoked_at, ApiToken.expires_at)
                          .where(ApiToken.id == token_id)).first()
    if row is None or row.revoked_at is not None:
        return False
    return row.expires_at is None or row.expires_at > utcnow()


def _token_match(token: str) -> ColumnElement[bool]:
    if token.startswith(TOKEN_PREFIX):
        return ApiToken.token_hash == hash_token(token)
    try:
        return ApiToken.id == uuid.UUID(token)
    except ValueError:
        raise UsageError(f"{token[:16]!r} is neither a token nor a token id") from None


def _find_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise UsageError(f"no user with e-mail {normalise_email(email)}")
    return user


def _check_plan(plan: str) -> None:
    if plan not in PLANS:
        raise UsageError(f"unknown plan {plan!r}: choose {' or '.join(PLANS)}")
