"""The billing page: plan, renewal or end date, payment state and today's usage, with Upgrade
(Stripe Checkout) and Manage (Stripe's Billing Portal), and the page Checkout returns to.

Upgrade and Manage are forms (POST, with the session's form token): each makes something at
Stripe. They answer with a page that moves on to Stripe by a ``Refresh`` header and a plain
link, not a redirect: the app's ``form-action 'self'`` policy stops a form's redirect chain
at another origin, while a page that navigates on its own is not a form submission.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from claude_notify.cloud.server import quota
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.billing import service
from claude_notify.cloud.server.billing.errors import (
    AlreadyPro,
    BillingProblem,
    StripeDown,
    StripeProblem,
)
from claude_notify.cloud.server.billing.models import BillingAccount
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.cloud.server.web.pages import NotFound, WebDep, render, router, seat_of
from claude_notify.events import utcnow


@router.get("/billing")
def billing_page(request: Request, web: WebDep, db: SessionDep,
                 runtime: RuntimeDep) -> HTMLResponse:
    return _view(request, db, runtime, web)


def _view(request: Request, db: Session, runtime: Runtime, web: WebSession, *,
          notice: str = "", problem: str = "", handoff: str = "", code: int = 200
          ) -> HTMLResponse:
    settings = runtime.settings
    user = seat_of(db, web)
    account = db.get(BillingAccount, user.workspace_id)
    day = quota.quota_day(utcnow(), user.timezone)
    counts = quota.usage(db, workspace_id=user.workspace_id, day=day, tz_name=user.timezone)
    pro = user.plan == "pro"
    response = render(
        request, "billing.html", code, web=web, user=user, account=account, day=day,
        enabled=settings.billing_enabled, sent=counts.get("all", 0), sms=counts.get("sms", 0),
        limit=None if pro else settings.free_daily_notifications,
        sms_limit=settings.pro_daily_sms if pro else 0, notice=notice, problem=problem,
        handoff=handoff)
    if handoff:
        response.headers["Refresh"] = f"0;url={handoff}"
    return response


def _stripe(request: Request, db: Session, runtime: Runtime, web: WebSession,
            start: str) -> HTMLResponse:
    """Start Checkout or the Portal and hand the browser over to Stripe."""
    workspace_id = seat_of(db, web).workspace_id
    db.commit()  # the request's transaction ends: billing writes in its own (SQLite: one writer)
    starter = service.start_checkout if start == "checkout" else service.start_portal
    try:
        url = starter(runtime.sessions, runtime.settings, workspace_id)
    except AlreadyPro:
        return _view(request, db, runtime, web, code=409,
                     problem="This account is on Pro already: use Manage to change it.")
    except StripeDown:
        return _view(request, db, runtime, web, code=503, problem=(
            "Stripe did not answer. Nothing was charged or changed; try again in a minute."))
    except StripeProblem as exc:
        return _view(request, db, runtime, web, code=502, problem=f"{exc}.")
    except BillingProblem as exc:
        return _view(request, db, runtime, web, code=409, problem=f"{exc}.")
    return _view(request, db, runtime, web, handoff=url)


@router.post("/billing/checkout")
def upgrade(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
            csrf: Annotated[str, Form(max_length=100)] = "") -> HTMLResponse:
    """Upgrade: a Checkout Session for this account, then on to Stripe's page to pay."""
    security.check_form(request, runtime.settings, web, csrf)
    return _stripe(request, db, runtime, web, "checkout")


@router.post("/billing/portal")
def manage(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
           csrf: Annotated[str, Form(max_length=100)] = "") -> HTMLResponse:
    """Manage: Stripe's Billing Portal (card, invoices, cancel) for this account's customer."""
    security.check_form(request, runtime.settings, web, csrf)
    return _stripe(request, db, runtime, web, "portal")


@router.get("/billing/success")
def returned(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
             session_id: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    """Where Checkout returns: the session is re-read from Stripe and, if it is this account's,
    the plan applied at once (the webhook may come later; it then changes nothing). Another
    account's session is not found. A browser's prefetch only shows the page: the re-read is
    made when the page is really opened."""
    if not runtime.settings.billing_enabled:
        raise NotFound
    if "prefetch" in (request.headers.get("sec-purpose") or request.headers.get("purpose")
                      or ""):
        return _view(request, db, runtime, web)
    workspace_id = seat_of(db, web).workspace_id
    db.commit()  # as in _stripe: the re-read writes in its own transaction
    try:
        mine = service.confirm_checkout(runtime.sessions, runtime.settings, workspace_id,
                                        session_id)
    except StripeProblem:
        return _view(request, db, runtime, web, code=503, problem=(
            "Stripe did not answer just now. If you paid, your plan changes as soon as "
            "Stripe's notice arrives; reload this page to check."))
    if not mine:
        raise NotFound
    return _view(request, db, runtime, web, notice="Thank you: the payment went through.")
