"""The web app under ``/app``: what its pages share (the router, templates, the signed-in
session) and :func:`install`. The pages themselves are in :mod:`.signin`, :mod:`.tasks`,
:mod:`.channels`, :mod:`.deliveries`, :mod:`.account` and :mod:`.push` (the service worker).

Server-rendered (Jinja2, autoescaped) and usable without JavaScript: every change is a real
``<form method=post>`` answered with a 303. Pages read the same rows as the ``/v1`` API, always
through the signed-in user's id, so another user's ids are simply not found.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from claude_notify.cloud.server.api.deps import SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.db.models import Task, User
from claude_notify.cloud.server.teams import access, roles
from claude_notify.cloud.server.teams.access import Seat
from claude_notify.cloud.server.web import ansi, security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.render import clean_output

HERE = Path(__file__).parent
PAGE_SIZE = 50

router = APIRouter(prefix="/app", include_in_schema=False)
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is text; nothing a user sent is ever markup
    undefined=jinja2.StrictUndefined,
)


class SignInNeeded(Exception):
    """The page needs a signed-in session; the answer is a redirect to the sign-in page."""


class NotFound(Exception):
    """Not this user's, or no such thing: the same answer for both."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _took(task: Task) -> str:
    if task.started_at is None or task.finished_at is None:
        return "—"
    seconds = max(0.0, (task.finished_at - task.started_at).total_seconds())
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else (
        f"{seconds:.1f}s")


def _text(value: object, *, lines: bool = True) -> str:
    """Text a user's machine sent, made safe to read: terminal escapes gone, and format
    characters (bidirectional overrides that would make it read as something else) shown as
    U+FFFD. Autoescaping then makes it inert."""
    cleaned = clean_output(str(value or "").encode())
    kept = "".join("\ufffd" if unicodedata.category(c) in ("Cf", "Co", "Cs") else c
                   for c in cleaned)
    return kept if lines else " ".join(kept.split())


_templates.filters["when"] = _when
_templates.filters["took"] = _took
_templates.filters["line"] = lambda value: _text(value, lines=False)
_templates.filters["text"] = _text
_templates.filters["ansi"] = ansi.to_html  # the text, with its terminal colours as classes


def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=code)


def _signed_in(request: Request, db: SessionDep) -> WebSession:
    """The browser's session, once its person's role in the workspace it looks at may use the
    page (:mod:`..teams.roles`; a refusal is a 403 page)."""
    web = security.current(request, db)
    if web is None:
        raise SignInNeeded
    try:
        roles.check(seat_of(db, web).role, request.scope)
    except ApiError as exc:
        raise security.Refused(exc.message) from None
    return web


WebDep = Annotated[WebSession, Depends(_signed_in)]


def user_of(db: Session, web: WebSession) -> User:
    user = db.get(User, web.user_id)
    if user is None:  # the account was deleted under a live session
        raise SignInNeeded
    return user


def seat_of(db: Session, web: WebSession) -> Seat:
    """The signed-in person in the workspace this browser looks at; back to their own when
    they were removed from it."""
    user = user_of(db, web)
    found = access.seat(db, user, web.workspace_id)
    if found is None and web.workspace_id is not None:
        web.workspace_id = None
        found = access.seat(db, user, None)
    if found is None:
        raise SignInNeeded
    return found


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- wiring ----------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Mount the pages, their static files, their headers and their error pages on ``app``."""
    from claude_notify.cloud.server.web import (  # noqa: F401 - their routes join the router
        account,
        approval_links,
        approvals,
        billing,
        channels,
        deliveries,
        github,
        push,
        signin,
        tasks,
        workspace,
    )

    app.include_router(router)
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="web-static")
    app.add_middleware(security.HeadersMiddleware)

    async def sign_in(request: Request, _exc: Exception) -> Response:
        if request.method != "GET":
            return see_other("/app/signin")
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if asked == "/app/tasks" or not security.safe_next(asked):  # where signing in ends
            return see_other("/app/signin")
        return see_other("/app/signin?" + urlencode({"next": asked}))

    async def not_found(request: Request, _exc: Exception) -> Response:
        return render(request, "message.html", code=404, title="Not found",
                      text="There is nothing here, or it is not yours, or the link was used or "
                           "has expired.")

    async def refused(request: Request, exc: Exception) -> Response:
        return render(request, "message.html", code=403, title="Refused",
                      text=f"This form was refused: {exc}. Reload the page and try again.")

    app.add_exception_handler(SignInNeeded, sign_in)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(security.Refused, refused)
