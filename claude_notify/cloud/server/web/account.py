"""The account's own pages: tokens and machines, plan and usage, export and deletion,
browser sessions."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, export, quota
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.db.models import ApiToken
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.models import RelayAgent
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebIdentity, WebSession
from claude_notify.cloud.server.web.pages import (
    NotFound,
    WebDep,
    render,
    router,
    seat_of,
    see_other,
    user_of,
)
from claude_notify.events import utcnow

# -- tokens and machines ---------------------------------------------------------------------


@router.get("/access")
def access_page(request: Request, web: WebDep, db: SessionDep) -> HTMLResponse:
    """The account's API tokens and the machines whose agents take relayed commands."""
    return _access_view(request, db, web)


def _access_view(request: Request, db: Session, web: WebSession, *, new_secret: str = "",
                 problem: str = "", code: int = 200) -> HTMLResponse:
    user = user_of(db, web)
    now = utcnow()
    # A connected agent's heartbeats are written once a minute; silent for relay_idle_s, the
    # server has closed its connection.
    idle = timedelta(seconds=relay_of(request.app.state).policy.idle_s)
    live = (ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
    agent_ids = select(RelayAgent.token_id)
    tokens = list(db.scalars(select(ApiToken).where(*live, ApiToken.id.not_in(agent_ids))
                             .order_by(ApiToken.created_at.desc())))
    machines = list(db.execute(select(RelayAgent, ApiToken).join(
        ApiToken, ApiToken.id == RelayAgent.token_id).where(*live)
        .order_by(RelayAgent.machine_id)))
    online = {agent.token_id for agent, _token in machines
              if agent.last_seen_at is not None and now - agent.last_seen_at <= idle}
    return render(request, "access.html", code, web=web, user=user, tokens=tokens,
                  machines=machines, online=online, scopes=auth.ACCOUNT_SCOPES,
                  new_secret=new_secret, problem=problem,
                  server_url=str(request.base_url).rstrip("/"))


@router.post("/tokens")
def create_token(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                 csrf: Annotated[str, Form(max_length=100)] = "",
                 name: Annotated[str, Form(max_length=100)] = "",
                 scope: Annotated[list[str] | None, Form()] = None) -> HTMLResponse:
    """A new token with the scopes ticked; its secret is on this one answer and nowhere else."""
    security.check_form(request, runtime.settings, web, csrf)
    user = user_of(db, web)
    chosen = sorted(set(scope or ()))
    if not chosen or set(chosen) - set(auth.ACCOUNT_SCOPES):
        return _access_view(request, db, web, code=422,
                            problem="Tick at least one of the scopes offered.")
    issued = auth.issue_token(db, user, scopes=chosen,
                              name=" ".join(name.split())[:100] or "web",
                              workspace_id=seat_of(db, web).workspace_id)
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
    return see_other("/app/access")


# -- account ---------------------------------------------------------------------------------


@router.get("/account")
def account_page(request: Request, web: WebDep, db: SessionDep,
                 runtime: RuntimeDep) -> HTMLResponse:
    return _account_view(request, db, runtime, web)


def _account_view(request: Request, db: Session, runtime: Runtime, web: WebSession,
                  problem: str = "", code: int = 200) -> HTMLResponse:
    user = seat_of(db, web)
    day = quota.quota_day(utcnow(), user.timezone)
    counts = quota.usage(db, workspace_id=user.workspace_id, day=day, tz_name=user.timezone)
    pro = user.plan == "pro"
    linked = list(db.scalars(select(WebIdentity).where(WebIdentity.user_id == user.user_id)
                             .order_by(WebIdentity.created_at)))
    return render(request, "account.html", code, web=web, user=user, day=day, linked=linked,
                  github=runtime.settings.github_enabled,
                  sent=counts.get("all", 0), sms=counts.get("sms", 0),
                  limit=None if pro else runtime.settings.free_daily_notifications,
                  sms_limit=runtime.settings.pro_daily_sms if pro else 0, problem=problem)


@router.get("/account/export")
def export_account(web: WebDep, db: SessionDep) -> Response:
    """Everything the server holds about the account, as one JSON file: tasks with their
    events (output opened), channels (signing secrets left out), deliveries, relayed commands
    and their audit, tokens and sessions (never a secret or a hash)."""
    user = user_of(db, web)
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
    user = user_of(db, web)
    if confirm.strip().lower() != user.email:
        return _account_view(request, db, runtime, web, code=422,
                             problem="Type the account's e-mail address to delete it.")
    if (blocker := export.deletion_blocker(db, user)) is not None:
        return _account_view(request, db, runtime, web, code=409,
                             problem=f"The account was not deleted: {blocker}.")
    token_ids = list(db.scalars(select(ApiToken.id).where(ApiToken.user_id == user.id)))
    export.erase(db, user)
    db.commit()
    relay_of(request.app.state).hub.revoked(token_ids)  # its agents' connections close
    response = render(request, "message.html", title="Account deleted",
                      text=f"The account {user.email} and everything of it are deleted.")
    security.end(request, response)
    return response


@router.post("/account/linked/{identity_id}/unlink")
def unlink(request: Request, identity_id: uuid.UUID, web: WebDep, db: SessionDep,
           runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Stop an outside account (GitHub) signing this one in; the e-mailed link still does."""
    security.check_form(request, runtime.settings, web, csrf)
    gone = db.execute(delete(WebIdentity).where(WebIdentity.id == identity_id,
                                                WebIdentity.user_id == web.user_id))
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise NotFound
    db.commit()
    return see_other("/app/account")


# -- sessions --------------------------------------------------------------------------------


@router.get("/sessions")
def sessions_page(request: Request, web: WebDep, db: SessionDep) -> HTMLResponse:
    user = user_of(db, web)
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
    response = see_other("/app/signin" if session_id == web.id else "/app/sessions")
    if session_id == web.id:
        security.end(request, response)
    return response
