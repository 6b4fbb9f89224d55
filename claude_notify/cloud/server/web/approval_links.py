"""The e-mailed link's page, ``/app/approvals/{id}/link#t=cna_…``: a permission request answered
with the link's key instead of a signed-in session (:mod:`~claude_notify.cloud.server.relay.
email_approvals` mails it).

- ``GET`` serves the same page for every id and reads nothing: the key is in the fragment,
  which never reaches the server, and a mail scanner that opens the link decides nothing.
- Its script (``static/approve.js``, allowed by the app's ``script-src 'self'``) takes the key
  from the fragment and ``POST``\\ s it (in the body, never the URL) to ``…/link/card`` to show
  the request, then to ``…/link/answer`` with Allow, Deny (and a note) or "Always in this
  session".
- A key counts only for its own approval, unused and unexpired (the hash compared in constant
  time). A wrong key, or an id with no approval, is the same 404, so nothing says whether the
  approval exists; a client IP's wrong keys are counted, and past
  :data:`~.email_approvals.GUESSES_PER_IP_PER_HOUR` its link requests are refused unread.
- The answer spends the key and decides in one transaction (a second POST with the key is
  refused and changes nothing), by the web page's own :func:`~.approvals.settle` and
  :func:`~.approvals.tell`: the same conditional update, audit, wake-up and card edits.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import BackgroundTasks, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.relay import approval_kinds, email_approvals
from claude_notify.cloud.server.relay import approvals as relay_approvals
from claude_notify.cloud.server.relay.models import Approval, ApprovalLink
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.approvals import PROBLEMS, check_answer, settle, tell
from claude_notify.cloud.server.web.pages import NotFound, render, router
from claude_notify.events import utcnow

SAID = {"pending": "Waiting for an answer", "allowed": "Allowed", "denied": "Denied",
        "expired": "Expired — answer in the terminal", "withdrawn": "Answered in the terminal"}
NOT_VALID = "This link is not valid: open it from its e-mail again."
_lock = threading.Lock()


@router.get("/approvals/{approval_id}/link")
def link_page(request: Request, approval_id: Annotated[str, PathParam(max_length=64)]) -> Response:
    try:
        uuid.UUID(approval_id)
    except ValueError:
        raise NotFound from None
    return render(request, "approval_link.html")


@router.post("/approvals/{approval_id}/link/card")
def link_card(request: Request, approval_id: Annotated[str, PathParam(max_length=64)],
              db: SessionDep, runtime: RuntimeDep,
              token: Annotated[str, Form(max_length=200)] = "") -> Response:
    """What the request is and where it stands (reads only)."""
    found = _checked(request, db, runtime, approval_id, token)
    if isinstance(found, Response):
        return found
    link, row = found
    if link.expires_at <= utcnow():
        return _problem(410, "This link has expired: answer in the terminal.", state="expired")
    return JSONResponse(_card(row, link))


@router.post("/approvals/{approval_id}/link/answer")
def link_answer(request: Request, approval_id: Annotated[str, PathParam(max_length=64)],
                db: SessionDep, runtime: RuntimeDep, background: BackgroundTasks,
                token: Annotated[str, Form(max_length=200)] = "",
                answer: Annotated[str, Form(max_length=16)] = "",
                note: Annotated[str, Form(max_length=500)] = "",
                option: Annotated[list[str] | None, Form(max_length=8)] = None) -> Response:
    found = _checked(request, db, runtime, approval_id, token)
    if isinstance(found, Response):
        return found
    link, row = found
    checked = check_answer(row, answer, option or [])
    if isinstance(checked, str):  # the key stays unspent: the owner can choose again
        return _problem(422, checked, state=row.state)
    if email_approvals.spend(db, link):
        outcome = settle(db, row, answer="allow" if answer == "answer" else answer, note=note,
                         by=email_approvals.ACTOR, answers=checked)
    else:  # used already, or past its time: refused, and the owner can see it was tried
        now = db.get(ApprovalLink, link.approval_id, populate_existing=True)  # a racing use's
        used = now is not None and now.used_at is not None
        relay_approvals._audit(db, row, actor=email_approvals.ACTOR, outcome="refused",
                               reason="the e-mailed link was used already" if used
                               else "the e-mailed link expired")
        outcome = "expired" if relay_approvals.expire(db, row) else "answered"
    response = (JSONResponse({"state": row.state, "said": _said(row)}) if outcome == "decided"
                else _problem(409, PROBLEMS[outcome], state=row.state, said=_said(row)))
    db.commit()  # nothing read after it: see the web page's answer
    tell(request, runtime, background, row, outcome)
    return response


def _checked(request: Request, db: Session, runtime: Runtime, approval_id: str,
             token: str) -> tuple[ApprovalLink, Approval] | Response:
    """The link and its approval for a right key; else the refusal to answer with."""
    security.check_origin(request, runtime.settings)
    guesses = _guesses(request)
    ip = security.client_ip(request)
    if guesses.blocked(ip):
        runtime.metrics.approval_link_refusals.labels("limited").inc()
        return _problem(429, "Too many wrong links from this address: try again in an hour.",
                        headers={"Retry-After": "3600"})
    try:
        link = email_approvals.check(db, uuid.UUID(approval_id), token)
    except ValueError:
        link = None
    row = db.get(Approval, link.approval_id) if link is not None else None
    if link is None or row is None:
        guesses.failed(ip)
        runtime.metrics.approval_link_refusals.labels("wrong").inc()
        return _problem(404, NOT_VALID)
    return link, row


def _guesses(request: Request) -> email_approvals.Guesses:
    """This app's count of wrong keys (one per app: tests run many apps in one process)."""
    state = request.app.state
    with _lock:
        if not hasattr(state, "approval_link_guesses"):
            state.approval_link_guesses = email_approvals.Guesses(
                email_approvals.GUESSES_PER_IP_PER_HOUR)
        found: email_approvals.Guesses = state.approval_link_guesses
    return found


def _card(row: Approval, link: ApprovalLink) -> dict[str, Any]:
    now = utcnow()
    state = "expired" if row.state == "pending" and row.expires_at <= now else row.state
    said = approval_kinds.words(row)
    return {"tool": row.tool_name, "kind": approval_kinds.kind(row), "title": said.title,
            "allow": said.allow, "deny": said.deny,
            "questions": approval_kinds.questions(row),
            "where": " · ".join(x for x in (PurePath(row.cwd).name if row.cwd else "",
                                            row.machine_id[:12]) if x),
            "display": row.display, "state": state, "said": _said(row, state),
            "until": row.expires_at.strftime("%H:%M:%S UTC"),
            "suggestion": approval_kinds.always_label(row),
            "note": row.note if row.state == "denied" else None,
            "answerable": state == "pending" and link.used_at is None}


def _said(row: Approval, state: str | None = None) -> str:
    """The outcome in the words of the request's kind ("Plan approved", "Answered: Blue")."""
    state = state or row.state
    words = approval_kinds.words(row)
    if state == "allowed" and approval_kinds.kind(row) == approval_kinds.QUESTION:
        return f"{words.allowed}: {approval_kinds.answered(row)}"
    if state == "allowed":
        return words.allowed + (" for this session" if row.suggestion is not None else "")
    return words.denied if state == "denied" else SAID.get(state, state)


def _problem(code: int, problem: str, *, headers: dict[str, str] | None = None,
             **more: str) -> JSONResponse:
    return JSONResponse({"problem": problem, **more}, status_code=code, headers=headers)
