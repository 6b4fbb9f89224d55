"""Sign-up and sign-in by e-mail link, without a browser session (a device-code flow).

1. The CLI posts an address to ``/v1/auth/device`` and gets a ``device_code``.
2. The server e-mails a one-time link; opening it shows a confirmation page whose button posts
   to ``/v1/auth/approve`` (a GET alone approves nothing, so mail scanners that prefetch links
   cannot sign anyone in).
3. The CLI polls ``/v1/auth/token`` with its device code: ``authorization_pending`` until the link
   is confirmed, then — once — a new API token; the account is created on first sign-in.

Requests are limited per address and per client IP, counted from the stored requests so the
limit holds across API replicas.
"""

from __future__ import annotations

import hashlib
import html
import secrets
import uuid
from datetime import timedelta
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import LoginRequest, Notification, User
from claude_notify.events import utcnow

router = APIRouter(tags=["auth"])

POLL_INTERVAL_S = 2


class DeviceIn(StrictBody):
    email: str = Field(max_length=320)
    scopes: list[str] = Field(default_factory=lambda: ["events:write"], min_length=1, max_length=4)
    """What the new token may do; a machine that only reports tasks needs only events:write."""


class DeviceOut(BaseModel):
    device_code: str
    expires_in: int
    interval: int


class TokenIn(StrictBody):
    device_code: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    token: str
    email: str
    scopes: list[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _client_ip(request: Request) -> str:
    return (request.client.host if request.client else "unknown")[:64]


@router.post("/v1/auth/device", summary="Start an e-mail sign-in; poll /v1/auth/token")
def start_login(
    body: DeviceIn, request: Request, session: SessionDep, runtime: RuntimeDep
) -> DeviceOut:
    try:
        email = validate_email(body.email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ApiError(422, f"email is not a valid e-mail address: {exc}") from None
    if bad := set(body.scopes) - set(auth.ACCOUNT_SCOPES):
        raise ApiError(422, f"scopes not available to a sign-in: {', '.join(sorted(bad))}")
    settings = runtime.settings
    ip = _client_ip(request)
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    for column, value, limit in (
        (LoginRequest.email, email, settings.login_per_address_per_hour),
        (LoginRequest.client_ip, ip, settings.login_per_ip_per_hour),
    ):
        recent = session.scalar(
            select(func.count()).where(column == value, LoginRequest.created_at > hour_ago)
        )
        if (recent or 0) >= limit:
            raise ApiError(
                429, "too many sign-in requests; try again later", headers={"Retry-After": "3600"}
            )
    device_code, link_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        LoginRequest(
            id=uuid.uuid4(),
            email=email,
            device_hash=_hash(device_code),
            link_hash=_hash(link_secret),
            scopes=" ".join(sorted(set(body.scopes))),
            client_ip=ip,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.login_ttl_s),
        )
    )
    link = f"{settings.public_url.rstrip('/')}/v1/auth/approve?token={link_secret}"
    text = (
        "Someone asked to sign in to claude-notify with this address.\n\n"
        f"If it was you, open {link} and confirm.\n\n"
        "If not, ignore this message: nobody can sign in without that link."
    )
    user_id = session.scalar(select(User.id).where(User.email == email))
    session.add(
        Notification(
            id=uuid.uuid4(),
            user_id=user_id,
            channel_type="email",
            kind="login",
            payload={"to": email, **render_simple("Sign in to claude-notify", text, link)},
            status="pending",
            next_attempt_at=now,
        )
    )
    session.commit()
    runtime.waker.wake()
    return DeviceOut(
        device_code=device_code, expires_in=int(settings.login_ttl_s), interval=POLL_INTERVAL_S
    )


_PAGE = (
    "<!doctype html><html><body><h2>Sign in to claude-notify</h2>"
    "<p>Confirm that you want to sign in as <b>{email}</b> on the machine that asked.</p>"
    "<form method='post' action='/v1/auth/approve'>"
    "<input type='hidden' name='token' value='{token}'><button>Sign in</button></form>"
    "</body></html>"
)


def _pending(session: SessionDep, link_secret: str) -> LoginRequest:
    row = session.scalar(select(LoginRequest).where(LoginRequest.link_hash == _hash(link_secret)))
    if row is None or row.expires_at <= utcnow() or row.consumed_at is not None:
        raise ApiError(404, "this sign-in link is unknown, used or expired", code="not_found")
    return row


@router.get("/v1/auth/approve", response_class=HTMLResponse, summary="The sign-in link's page")
def approve_page(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: SessionDep
) -> HTMLResponse:
    row = _pending(session, token)
    page = _PAGE.format(email=html.escape(row.email), token=html.escape(token, quote=True))
    return HTMLResponse(page)


@router.post("/v1/auth/approve", response_class=HTMLResponse, summary="Confirm a sign-in")
def approve(
    token: Annotated[str, Form(min_length=1, max_length=200)], session: SessionDep
) -> HTMLResponse:
    row = _pending(session, token)
    row.approved_at = row.approved_at or utcnow()
    session.commit()
    return HTMLResponse("<!doctype html><p>Signed in. You can return to your terminal.</p>")


@router.post("/v1/auth/token", summary="Poll for the token of an approved sign-in")
def redeem(body: TokenIn, session: SessionDep) -> TokenOut:
    row = session.scalar(
        select(LoginRequest)
        .where(LoginRequest.device_hash == _hash(body.device_code))
        .with_for_update()
    )
    if row is None or row.consumed_at is not None or row.expires_at <= utcnow():
        raise ApiError(400, "this device code is unknown, used or expired", code="expired_token")
    if row.approved_at is None:
        raise ApiError(
            400, "waiting for the e-mailed link to be confirmed", code="authorization_pending"
        )
    row.consumed_at = utcnow()
    user = session.scalar(select(User).where(User.email == row.email))
    if user is None:
        user = auth.create_account(session, row.email)
    issued = auth.issue_token(session, user, scopes=row.scopes.split(), name="device login")
    session.commit()
    return TokenOut(token=issued.secret, email=row.email, scopes=row.scopes.split())
