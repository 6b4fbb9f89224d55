"""Who may do what in a workspace: the roles' order and the checks every route goes through.

The route-by-route table is :mod:`.roles`; this module holds what the checks share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import (
    ROLE_RANK,
    Channel,
    Role,
    User,
    Workspace,
    WorkspaceMember,
)


class Member(Protocol):
    """A person acting in a workspace: an API caller or a signed-in browser."""

    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def workspace_id(self) -> uuid.UUID: ...
    @property
    def role(self) -> str: ...
    @property
    def plan(self) -> str: ...


def at_least(role: str, wanted: str) -> bool:
    """Whether ``role`` may do what ``wanted`` may (an unknown role may do nothing)."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[wanted]


def manages(who: Member) -> bool:
    """Whether ``who`` may change what the workspace shares (channels, templates, invites)."""
    return at_least(who.role, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Seat:
    """A signed-in browser's person in the workspace it is looking at (the web app's
    counterpart of :class:`~claude_notify.cloud.server.api.deps.Principal`)."""

    user: User
    workspace: Workspace
    role: str

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    @property
    def workspace_id(self) -> uuid.UUID:
        return self.workspace.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def plan(self) -> str:
        return self.workspace.plan

    @property
    def timezone(self) -> str:
        """The workspace's quota zone."""
        return self.workspace.timezone


def seat(session: Session, user: User, workspace_id: uuid.UUID | None) -> Seat | None:
    """``user`` in ``workspace_id`` (their :func:`~..auth.home` when ``None``), or ``None`` if
    they are not a member there (any more)."""
    wanted = workspace_id or auth.home(session, user.id)
    row = session.execute(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(Workspace.id == wanted, WorkspaceMember.user_id == user.id)
    ).first()
    return None if row is None else Seat(user, row[0], row[1])


def private_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    """The channels only ``user_id`` reads: their personal ones, and any of theirs in a
    workspace nobody else is in. Approvals are never shared: a teammate must not even see what
    someone's machine asks to run."""
    crowded = (select(WorkspaceMember.workspace_id).group_by(WorkspaceMember.workspace_id)
               .having(func.count() > 1))
    return (Channel.user_id == user_id) & (Channel.personal | Channel.workspace_id.not_in(crowded))
