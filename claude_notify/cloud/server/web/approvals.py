"""A permission request's page, ``/app/approvals/{id}``: one more place to answer it.

The same rules as a press on a Telegram card: only the account that owns it sees it (anyone
else gets the usual "not found"), the form carries the session's token and passes the origin
check, the answer is one conditional update (first wins; a late one is told it was answered
already), it is audited, the agent is woken with it and the cards are edited. Works without
JavaScript: plain forms, a redirect after the POST.

A plan is approved or sent back ("Keep planning", with a note); Claude's questions are answered
here by choosing their options (radio buttons, or check boxes for a question that takes several):
the one place where several questions can be answered at once (see
:mod:`~claude_notify.cloud.server.relay.approval_kinds`).

:func:`settle` and :func:`tell` are that answer's path, shared with the e-mailed link's page
(:mod:`.approval_links`), so an answer from either does exactly the same.
"""

from __future__ import annotations

import uuid
from pathlib import PurePath
from typing import Annotated, Final, Literal

from fastapi import BackgroundTasks, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay import approvals
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.cloud.server.web.pages import (
    NotFound,
    WebDep,
    render,
    router,
    see_other,
    user_of,
)
from claude_notify.events import utcnow

ANSWERS = {"allow": ("allowed", None), "deny": ("denied", None), "session": ("allowed", 0)}
Outcome = Literal["decided", "expired", "answered"]
PROBLEMS: Final = {"expired": "Expired: answer in the terminal.", "answered": "Already answered."}
"""What a late answer is told, by :func:`settle`'s outcome."""


def settle(db: Session, row: Approval, *, answer: str, note: str, by: str,
           answers: list[list[int]] | None = None) -> Outcome:
    """Answer ``row`` (one of :data:`ANSWERS`; a question: ``allow`` with ``answers``, the
    options chosen): one conditional update, the first answer wins; one past its time is marked
    expired instead (the agent hears that too). The caller renders its response, commits, then
    calls :func:`tell`."""
    state, suggestion = ANSWERS[answer]
    if approvals.decide(db, row.id, state=state, by=by, suggestion=suggestion, answers=answers,
                        note=note.strip() or None if state == "denied" else None):
        return "decided"
    return "expired" if approvals.expire(db, row) else "answered"


def tell(request: Request, runtime: Runtime, background: BackgroundTasks, row: Approval,
         outcome: Outcome) -> None:
    """After the commit: the agent is handed the answer, the cards are edited to show it."""
    if outcome != "answered":
        relay_of(request.app.state).hub.wake((row.user_id, row.machine_id))
        background.add_task(approvals.edit_cards, runtime, row.id)


def _own(db: Session, web: WebSession, approval_id: str) -> Approval:
    try:
        row = db.get(Approval, uuid.UUID(approval_id))
    except ValueError:
        raise NotFound from None
    if row is None or row.user_id != web.user_id:
        raise NotFound
    return row


def _page(request: Request, db: Session, web: WebSession, row: Approval, *,
          problem: str = "", code: int = 200) -> Response:
    state = "expired" if row.state == "pending" and row.expires_at <= utcnow() else row.state
    return render(request, "approval.html", code, web=web, user=user_of(db, web), approval=row,
                  state=state, problem=problem, project=PurePath(row.cwd).name if row.cwd else "",
                  kind=kinds.kind(row), said=kinds.words(row), always=kinds.always_label(row),
                  questions=kinds.questions(row),
                  outcome=approvals.outcome(row, mark=False) if state in (
                      "allowed", "denied") else "",
                  note_chars=kinds.NOTE_CHARS)


def chosen_options(row: Approval, picked: list[str]) -> list[list[int]] | None:
    """The form's ``option`` fields (``"question:option"``) as the options chosen per question,
    if each is one of this request's and every question has one (:func:`kinds.mask` checks the
    rest: one only, unless the question takes several)."""
    found = kinds.questions(row)
    chosen: list[list[int]] = [[] for _ in found]
    for value in picked[:kinds.QUESTIONS * kinds.OPTIONS]:
        q, _, o = value.partition(":")
        if not (q.isdigit() and o.isdigit()) or not 0 <= int(q) < len(found):
            return None
        chosen[int(q)].append(int(o))
    return chosen if kinds.mask(row, chosen) is not None else None


def check_answer(row: Approval, answer: str, option: list[str]) -> list[list[int]] | str | None:
    """The options chosen (a question's ``answer``), ``None`` (any other fitting answer), or
    why ``answer`` does not fit ``row``'s kind: a question is answered by choosing its options,
    a tool call or a plan is allowed or denied, and only a tool call offers "always". Both
    answering pages check here before anything is spent or decided."""
    question = kinds.kind(row) == kinds.QUESTION
    if (answer not in ANSWERS and answer != "answer") or (
            answer == "session" and kinds.always_label(row) is None) or (
            question and answer in ("allow", "session")) or (not question and answer == "answer"):
        return (f"Choose {kinds.words(row).allow} or {kinds.words(row).deny}." if not question
                else "Choose an answer.")
    answers = chosen_options(row, option) if answer == "answer" else None
    if answer == "answer" and answers is None:
        return "Choose one option for each question (several only where the question says so)."
    return answers


@router.get("/approvals/{approval_id}")
def approval_page(request: Request, approval_id: Annotated[str, PathParam(max_length=64)],
                  web: WebDep, db: SessionDep) -> Response:
    return _page(request, db, web, _own(db, web, approval_id))  # reads only: GETs change nothing


@router.post("/approvals/{approval_id}")
def answer(request: Request, approval_id: Annotated[str, PathParam(max_length=64)],
           web: WebDep, db: SessionDep, runtime: RuntimeDep, background: BackgroundTasks,
           csrf: Annotated[str, Form(max_length=100)] = "",
           answer: Annotated[str, Form(max_length=16)] = "",
           note: Annotated[str, Form(max_length=500)] = "",
           option: Annotated[list[str] | None, Form(max_length=8)] = None) -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    row = _own(db, web, approval_id)
    checked = check_answer(row, answer, option or [])
    if isinstance(checked, str):
        return _page(request, db, web, row, problem=checked, code=422)
    outcome = settle(db, row, answer="allow" if answer == "answer" else answer, note=note,
                     by=f"web:{web.id.hex[:12]}", answers=checked)
    response = see_other(f"/app/approvals/{row.id}") if outcome == "decided" else _page(
        request, db, web, row, code=409, problem=PROBLEMS[outcome])
    # Committed after the page is rendered: a read after the commit would hold SQLite's write
    # lock (every transaction takes it) through the background edit below.
    db.commit()
    tell(request, runtime, background, row, outcome)
    return response
