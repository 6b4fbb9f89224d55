"""``/v1/workspace…``: the caller's workspace, its members, invites, handover and activity.

Who may call what is :mod:`..teams.roles`' table; the rules that depend on the rows (who may
change whom) are :mod:`..teams.service`'s. A token acts in one workspace;
``POST /v1/workspaces/{id}/token`` gives the caller a token for another of theirs (the CLI's
``workspace switch``).
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.api.deps import Caller, ChannelWriter, SessionDep, TaskReader
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.db.models import User, Workspace
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.teams import service
from claude_notify.cloud.server.teams.models import AuditEntry, WorkspaceInvite

router = APIRouter(tags=["workspace"])

SWITCH_SCOPES: Final = frozenset({"events:write", "tasks:read"})
"""What a token needs to be given one like it in another workspace: what ``claude-notify login``
asks for."""


class WorkspaceOut(BaseModel):
    id: uuid.UUID
    name: str
    plan: str
    role: str
    """The caller's."""
    members: int
    seats: int
    transfer_to: uuid.UUID | None
    """A member the owner offered the workspace to, until they accept."""


class MemberOut(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str
    joined_at: datetime


class InviteIn(StrictBody):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(default="member", max_length=16)


class InviteOut(BaseModel):
    id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, row: WorkspaceInvite) -> InviteOut:
        """Without the link: it signs in as the invited address, so only their mailbox has
        it (and the database only its hash)."""
        return cls(id=row.id, email=row.email, role=row.role, created_at=row.created_at,
                   expires_at=row.expires_at)


class RoleIn(StrictBody):
    role: str = Field(max_length=16)


class TransferIn(StrictBody):
    email: str = Field(min_length=3, max_length=320)


class TokenOut(BaseModel):
    token: str
    workspace_id: uuid.UUID
    scopes: list[str]


class ActivityOut(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEntry) -> ActivityOut:
        return cls(at=row.at, actor=row.actor_email, action=row.action, target=row.target,
                   detail=row.detail)


def _closed(request: Request, token_ids: list[uuid.UUID]) -> None:
    """Close the relay connections of revoked tokens (after the commit, on every replica)."""
    if token_ids:
        relay_of(request.app.state).hub.revoked(token_ids)


@router.get("/v1/workspace", summary="The workspace this token acts in")
def get_workspace(caller: TaskReader, session: SessionDep) -> WorkspaceOut:
    workspace = session.get(Workspace, caller.workspace_id)
    if workspace is None:
        raise not_found("workspace")
    return WorkspaceOut(id=workspace.id, name=workspace.name, plan=workspace.plan,
                        role=caller.role, members=len(service.members(session, workspace.id)),
                        seats=service.SEATS, transfer_to=workspace.transfer_to)


@router.get("/v1/workspaces", summary="Every workspace the caller belongs to")
def list_workspaces(caller: TaskReader, session: SessionDep) -> list[WorkspaceOut]:
    return [WorkspaceOut(id=w.id, name=w.name, plan=w.plan, role=role,
                         members=len(service.members(session, w.id)), seats=service.SEATS,
                         transfer_to=w.transfer_to)
            for w, role in service.workspaces_of(session, caller.user_id)]


@router.post("/v1/workspaces/{workspace_id}/token", status_code=201,
             summary="A token like this one, acting in another workspace of the caller's")
def switch(workspace_id: uuid.UUID, caller: Caller, session: SessionDep) -> TokenOut:
    # A person's sign-in (the CLI's device login asks for these two; the account token has
    # them too), not a token made to send events only, nor an agent's: the new token has the
    # caller's own scopes, so nothing is gained but the workspace.
    if not caller.scopes >= SWITCH_SCOPES:
        raise ApiError(403, "switching workspace needs a machine's sign-in: a token with the "
                            "events:write and tasks:read scopes")
    if workspace_id not in {w.id for w, _ in service.workspaces_of(session, caller.user_id)}:
        raise not_found("workspace")
    user = session.get(User, caller.user_id)
    assert user is not None  # noqa: S101 - the caller was just authenticated
    issued = auth.issue_token(session, user, scopes=sorted(caller.scopes), name="workspace switch",
                              workspace_id=workspace_id)
    session.commit()
    return TokenOut(token=issued.secret, workspace_id=workspace_id, scopes=sorted(caller.scopes))


@router.get("/v1/workspace/members", summary="Who is in the workspace")
def list_members(caller: TaskReader, session: SessionDep) -> list[MemberOut]:
    return [MemberOut(user_id=m.user_id, email=m.email, role=m.role, joined_at=m.joined_at)
            for m in service.members(session, caller.workspace_id)]


@router.patch("/v1/workspace/members/{user_id}", summary="Change a member's role")
def change_role(user_id: uuid.UUID, body: RoleIn, caller: ChannelWriter,
                session: SessionDep) -> MemberOut:
    row = service.set_role(session, caller, user_id, body.role)
    session.commit()
    found = next(m for m in service.members(session, caller.workspace_id)
                 if m.user_id == row.user_id)
    return MemberOut(user_id=found.user_id, email=found.email, role=found.role,
                     joined_at=found.joined_at)


@router.delete("/v1/workspace/members/{user_id}", status_code=204,
               summary="Remove a member (their tokens for it are revoked at once)")
def remove_member(user_id: uuid.UUID, caller: ChannelWriter, session: SessionDep,
                  request: Request) -> Response:
    revoked = service.remove(session, caller, user_id)
    session.commit()
    _closed(request, revoked)
    return Response(status_code=204)


@router.post("/v1/workspace/leave", status_code=204, summary="Leave this workspace")
def leave(caller: ChannelWriter, session: SessionDep, request: Request) -> Response:
    revoked = service.leave(session, caller)
    session.commit()
    _closed(request, revoked)
    return Response(status_code=204)


@router.get("/v1/workspace/invites", summary="Invites still pending")
def list_invites(caller: TaskReader, session: SessionDep) -> list[InviteOut]:
    return [InviteOut.of(row) for row in service.invites(session, caller)]


@router.post("/v1/workspace/invites", status_code=201, summary="Invite someone by e-mail")
def create_invite(body: InviteIn, caller: ChannelWriter, session: SessionDep,
                  request: Request) -> InviteOut:
    runtime = request.app.state.runtime
    made = service.invite(session, runtime.settings, caller, body.email, body.role)
    session.commit()
    runtime.waker.wake()
    return InviteOut.of(made)


@router.delete("/v1/workspace/invites/{invite_id}", status_code=204, summary="Revoke an invite")
def revoke_invite(invite_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> Response:
    service.revoke_invite(session, caller, invite_id)
    session.commit()
    return Response(status_code=204)


@router.post("/v1/workspace/transfer", summary="Offer the workspace to another member")
def transfer(body: TransferIn, caller: ChannelWriter, session: SessionDep) -> WorkspaceOut:
    target = next((m for m in service.members(session, caller.workspace_id)
                   if m.email == auth.normalise_email(body.email)), None)
    if target is None:
        raise not_found("member")
    service.offer(session, caller, target.user_id)
    session.commit()
    return get_workspace(caller, session)


@router.post("/v1/workspace/transfer/accept", summary="Accept the workspace offered to you")
def accept_transfer(caller: ChannelWriter, session: SessionDep) -> WorkspaceOut:
    workspace = service.take_over(session, caller)
    session.commit()
    return WorkspaceOut(id=workspace.id, name=workspace.name, plan=workspace.plan, role="owner",
                        members=len(service.members(session, workspace.id)),
                        seats=service.SEATS, transfer_to=None)


@router.get("/v1/workspace/activity", summary="Who changed what (JSON, or CSV with format=csv)")
def get_activity(
    caller: TaskReader, session: SessionDep,
    action: Annotated[str | None, Query(max_length=48)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Any:
    rows = service.activity(session, caller.workspace_id, action=action, actor=actor,
                            limit=limit)
    if format == "csv":
        return Response(activity_csv(rows), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="activity.csv"'})
    return [ActivityOut.of(row) for row in rows]


def activity_csv(rows: list[AuditEntry]) -> str:
    """The activity as CSV; a cell a spreadsheet would run as a formula is quoted as text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "action", "target", "detail"])
    for row in rows:
        detail = " ".join(f"{k}={v}" for k, v in sorted(row.detail.items()))
        writer.writerow([_cell(v) for v in (row.at.isoformat(), row.actor_email, row.action,
                                            row.target, detail)])
    return out.getvalue()


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
