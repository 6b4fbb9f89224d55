"""The workspace pages: members, roles, invites, handover, switching, the activity log (and its
CSV), and the invite link's page, which is how someone joins.

The invite link opens a page that joins nobody; only its button's ``POST`` does, signing the
browser in as the invited address (the mailed link proves it, as a sign-in link does), and
making that account if there is none yet.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.routes.workspace import activity_csv
from claude_notify.cloud.server.db.models import User, Workspace
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams import access, service
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.cloud.server.web.pages import (
    NotFound,
    WebDep,
    render,
    router,
    seat_of,
    see_other,
)

Csrf = Annotated[str, Form(max_length=100)]


def _view(request: Request, db: Session, runtime: Runtime, web: WebSession, *,
          problem: str = "", notice: str = "", code: int = 200) -> HTMLResponse:
    me = seat_of(db, web)
    workspace = me.workspace
    offered = (db.get(User, workspace.transfer_to) if workspace.transfer_to else None)
    return render(
        request, "workspace.html", code, web=web, user=me, workspace=workspace,
        members=service.members(db, workspace.id), invites=(
            service.invites(db, me) if access.manages(me) else []),
        mine=service.workspaces_of(db, me.user_id), manages=access.manages(me),
        owner=me.role == "owner", offered=offered, seats=service.SEATS,
        roles=service.INVITABLE, problem=problem, notice=notice)


@router.get("/workspace")
def workspace_page(request: Request, web: WebDep, db: SessionDep,
                   runtime: RuntimeDep) -> HTMLResponse:
    return _view(request, db, runtime, web)


def _acted(request: Request, db: Session, runtime: Runtime, web: WebSession, csrf: str,
           act: object) -> Response:
    """Run ``act`` (a callable given the seat) after the form check; a refusal is shown on the
    page, a success goes back to it."""
    security.check_form(request, runtime.settings, web, csrf)
    me = seat_of(db, web)
    try:
        revoked = act(me)  # type: ignore[operator]
    except ApiError as exc:
        db.rollback()
        return _view(request, db, runtime, web, problem=exc.message, code=exc.status)
    db.commit()
    if isinstance(revoked, list) and revoked:
        relay_of(request.app.state).hub.revoked(revoked)
    return see_other("/app/workspace")


@router.post("/workspace/invites")
def invite(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
           csrf: Csrf = "", email: Annotated[str, Form(max_length=320)] = "",
           role: Annotated[str, Form(max_length=16)] = "member") -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    me = seat_of(db, web)
    try:
        made = service.invite(db, runtime.settings, me, email, role)
    except ApiError as exc:
        db.rollback()
        return _view(request, db, runtime, web, problem=exc.message, code=exc.status)
    db.commit()
    runtime.waker.wake()
    # The link is not shown: pressing Join signs in as the invited address.
    return _view(request, db, runtime, web, code=201,
                 notice=f"Invited {made.email}: the link is mailed to them.")


@router.post("/workspace/invites/{invite_id}/revoke")
def revoke_invite(request: Request, invite_id: uuid.UUID, web: WebDep, db: SessionDep,
                  runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    return _acted(request, db, runtime, web, csrf,
                  lambda me: service.revoke_invite(db, me, invite_id))


@router.post("/workspace/members/{user_id}/role")
def change_role(request: Request, user_id: uuid.UUID, web: WebDep, db: SessionDep,
                runtime: RuntimeDep, csrf: Csrf = "",
                role: Annotated[str, Form(max_length=16)] = "") -> Response:
    return _acted(request, db, runtime, web, csrf,
                  lambda me: service.set_role(db, me, user_id, role))


@router.post("/workspace/members/{user_id}/remove")
def remove_member(request: Request, user_id: uuid.UUID, web: WebDep, db: SessionDep,
                  runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    return _acted(request, db, runtime, web, csrf, lambda me: service.remove(db, me, user_id))


@router.post("/workspace/leave")
def leave(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
          csrf: Csrf = "") -> Response:
    return _acted(request, db, runtime, web, csrf, lambda me: service.leave(db, me))


@router.post("/workspace/transfer")
def transfer(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
             csrf: Csrf = "", user_id: Annotated[uuid.UUID | None, Form()] = None) -> Response:
    def offer(me: access.Seat) -> object:
        if user_id is None:
            raise ApiError(422, "Choose a member.")
        return service.offer(db, me, user_id)

    return _acted(request, db, runtime, web, csrf, offer)


@router.post("/workspace/transfer/accept")
def accept_transfer(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                    csrf: Csrf = "") -> Response:
    return _acted(request, db, runtime, web, csrf, lambda me: service.take_over(db, me))


@router.post("/workspace/switch")
def switch(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
           csrf: Csrf = "", workspace_id: Annotated[uuid.UUID | None, Form()] = None,
           ) -> Response:
    """Look at another workspace of one's own in this browser."""
    security.check_form(request, runtime.settings, web, csrf)
    me = seat_of(db, web)
    if workspace_id is None or access.seat(db, me.user, workspace_id) is None:
        raise NotFound
    web.workspace_id = workspace_id
    db.commit()
    return see_other("/app/tasks")


@router.get("/workspace/activity")
def activity_page(request: Request, web: WebDep, db: SessionDep,
                  action: Annotated[str | None, Query(max_length=48)] = None,
                  actor: Annotated[str | None, Query(max_length=320)] = None) -> HTMLResponse:
    me = seat_of(db, web)
    rows = service.activity(db, me.workspace_id, action=action or None, actor=actor or None)
    return render(request, "activity.html", web=web, user=me, workspace=me.workspace,
                  rows=rows, action=action or "", actor=actor or "")


@router.get("/workspace/activity.csv")
def activity_download(web: WebDep, db: SessionDep,
                      action: Annotated[str | None, Query(max_length=48)] = None,
                      actor: Annotated[str | None, Query(max_length=320)] = None) -> Response:
    me = seat_of(db, web)
    rows = service.activity(db, me.workspace_id, action=action or None, actor=actor or None,
                            limit=100_000)
    return Response(activity_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="activity.csv"'})


# -- joining ------------------------------------------------------------------------------------


# A link cut short or run into the next word by a mail client is "not found", like any other
# unknown link (a page), not a form error (JSON); pending_invite refuses all but a real one.
Token = Annotated[str, Query(max_length=1000)]


@router.get("/invite")
def invite_page(request: Request, db: SessionDep, token: Token = "") -> HTMLResponse:
    """The mailed link's page: a button, not a join (mail scanners open links)."""
    row = service.pending_invite(db, token)
    workspace = db.get(Workspace, row.workspace_id) if row else None
    if row is None or workspace is None:
        raise NotFound
    inviter = db.get(User, row.invited_by) if row.invited_by else None
    return render(request, "invite.html", email=row.email, workspace=workspace, role=row.role,
                  inviter=inviter.email if inviter else "", token=token)


@router.post("/invite")
def join(request: Request, db: SessionDep, runtime: RuntimeDep,
         token: Annotated[str, Form(max_length=1000)] = "") -> Response:
    settings = runtime.settings
    security.check_origin(request, settings)
    try:
        joined = service.accept(db, settings, token)
    except ApiError as exc:
        db.rollback()
        return render(request, "message.html", code=exc.status, title="Not joined",
                      text=exc.message)
    if joined is None:
        db.rollback()
        raise NotFound
    user, workspace = joined
    response = security.signed_in(db, request, user_id=user.id, settings=settings,
                                  workspace_id=workspace.id)
    db.commit()
    return response
