"""Signing in by e-mailed link, and out: the link's GET shows a button; only its POST
signs in, once. The sign-up policy and the sign-in page are shared with :mod:`.github`."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from email_validator import EmailNotValidError, validate_email
from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, limits, outbox, residency
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.routes.login import check_mail, check_region
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSignin
from claude_notify.cloud.server.web.pages import (
    NotFound,
    WebDep,
    render,
    router,
    see_other,
)
from claude_notify.errors import UsageError
from claude_notify.events import utcnow


@router.get("")
@router.get("/")
def home(request: Request, db: SessionDep) -> Response:
    return see_other("/app/tasks" if security.current(request, db) else "/app/signin")


@router.get("/signin")
def signin_page(request: Request, runtime: RuntimeDep,
                next: Annotated[str | None, Query(max_length=512)] = None,
                email: Annotated[str | None, Query(max_length=320)] = None) -> HTMLResponse:
    """``next``: the page a signed-out visitor asked for, where signing in ends; ``email``: the
    address another region's server sent here, filled in."""
    response = signin_view(request, runtime.settings, email=email or "",
                           reply=(security.safe_next(next) or "").startswith("/app/t/"))
    security.remember_next(request, response, next, runtime.settings)
    return response


def signin_view(request: Request, settings: Settings, *, code: int = 200,
                problem: str = "", reply: bool = False, email: str = "") -> HTMLResponse:
    """The sign-in page, with what went wrong (if anything) above its choices; ``reply``: it
    stands for a task page, whose link may carry a reply token (``#reply=``) that answers that
    run without signing in."""
    return render(request, "signin.html", code=code, policy=_policy(settings), problem=problem,
                  github=settings.github_enabled, reply=reply, email=email)


def _policy(settings: Settings) -> str:
    if not settings.web_signup:
        return "New accounts are made by this server's operator; existing users sign in here."
    if settings.web_signup_domains:
        return ("New accounts are open to addresses at "
                + ", ".join(settings.web_signup_domains) + ".")
    return "No account yet? The same link makes one."


def may_sign_up(settings: Settings, email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    allowed = {d.strip().lower().lstrip("@") for d in settings.web_signup_domains}
    return settings.web_signup and (not allowed or domain in allowed)


@router.post("/signin")
def send_link(request: Request, email: Annotated[str, Form(max_length=320)], db: SessionDep,
              runtime: RuntimeDep) -> HTMLResponse:
    """E-mail a sign-in link. The page says the same whether or not the address may sign in,
    so it tells a stranger nothing about who has an account."""
    settings = runtime.settings
    security.check_origin(request, settings)
    try:
        address = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return signin_view(request, settings, code=422,
                           problem=f"That is not an e-mail address: {exc}")
    ip = security.client_ip(request)
    try:
        check_region(settings, address, ip)  # before anything is stored: another region's data
    except ApiError as exc:
        if exc.code != "wrong_region":
            return signin_view(request, settings, code=exc.status, problem=exc.message,
                               email=address)
        # Only a configured region's URL (residency.home), never one the directory made up.
        # A page that moves on by itself, not a redirect: the app's form-action 'self' policy
        # stops a form's redirect at another origin.
        there = f"{exc.details[0]['server']}/app/signin?{urlencode({'email': address})}"
        page = render(request, "elsewhere.html", region=exc.details[0]["region"], there=there)
        page.headers["Refresh"] = f"0;url={there}"
        return page
    try:
        check_mail(settings)
    except ApiError as exc:
        return signin_view(request, settings, code=503, problem=exc.message)
    for where, limit in (((WebSignin.email == address, WebSignin.client_ip == ip),
                          settings.login_per_address_per_hour),
                         ((WebSignin.client_ip == ip,), settings.login_per_ip_per_hour)):
        if limits.reached(db, limit, 3600.0, WebSignin.created_at, *where):
            return signin_view(request, settings, code=429,
                               problem="Too many sign-in links asked for; try again in an hour.")
    now = utcnow()
    user_id = db.scalar(select(User.id).where(User.email == address))
    secret = secrets.token_urlsafe(32)
    # Recorded either way, so a stranger's attempts count against the limits all the same.
    db.add(WebSignin(email=address, link_hash=security.digest(secret), client_ip=ip,
                     created_at=now, expires_at=now + timedelta(seconds=settings.login_ttl_s)))
    if user_id is not None or may_sign_up(settings, address):
        link = f"{settings.public_url.rstrip('/')}/app/signin/confirm?token={secret}"
        outbox.queue_login(db, user_id=user_id, address=address, payload=_mail(link, ip),
                           now=now)
    db.commit()
    runtime.waker.wake()
    return render(request, "sent.html", email=address, minutes=int(settings.login_ttl_s // 60))


def _mail(link: str, ip: str) -> dict[str, str]:
    text = (f"Someone asked to sign in to claude-notify in a browser with this address, from IP "
            f"address {ip}.\n\nIf it was you, open {link} and press Sign in.\n\n"
            "If not, ignore this message: nobody can sign in without the link.")
    return render_simple("Sign in to claude-notify", text, link)


def _pending(db: Session, token: str, *, lock: bool = False) -> WebSignin:
    stmt = select(WebSignin).where(WebSignin.link_hash == security.digest(token))
    row = db.scalar(stmt.with_for_update() if lock else stmt)
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise NotFound
    return row


@router.get("/signin/confirm")
def confirm_page(request: Request, token: Annotated[str, Query(max_length=100)],
                 db: SessionDep) -> HTMLResponse:
    """The link's page: a button, not a sign-in (mail scanners open links)."""
    row = _pending(db, token)
    return render(request, "confirm.html", email=row.email, token=token)


@router.post("/signin/confirm")
def confirm(request: Request, token: Annotated[str, Form(max_length=100)], db: SessionDep,
            runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    security.check_origin(request, settings)
    row = _pending(db, token, lock=True)
    row.used_at = utcnow()
    user = account_for(db, settings, row.email)
    if user is None:
        db.commit()
        raise NotFound
    response = security.signed_in(db, request, user_id=user.id, settings=settings)
    db.commit()
    return response


def account_for(db: Session, settings: Settings, address: str) -> User | None:
    """The account of a proven ``address``, made if the sign-up policy lets it be (``None`` if
    not); the caller commits."""
    user = db.scalar(select(User).where(User.email == address))
    if user is not None:
        return user
    if not may_sign_up(settings, address):
        return None
    try:  # GitHub's address may be another region's account: that region opens it, not this
        if residency.home(settings, address) is not None:
            return None
    except residency.ResidencyError:
        return None
    try:
        with db.begin_nested():  # another sign-in for the address may make it at once
            made = auth.create_account(db, address, plan=settings.default_plan)
        residency.claim(settings, address)
        return made
    except (IntegrityError, UsageError):
        user = db.scalar(select(User).where(User.email == address))
        if user is None:
            raise
        return user


@router.post("/signout")
def signout(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    security.check_form(request, runtime.settings, web, csrf)
    db.delete(web)
    db.commit()
    response = see_other("/app/signin")
    security.end(request, response)
    return response
