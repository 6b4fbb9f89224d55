"""What keeps the web app's pages safe to open: the session cookie, the check every POST passes,
and the headers every page carries.

- **Session.** A random secret in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure`` and
  ``__Host-`` except on loopback, where browsers allow plain HTTP); only its SHA-256 is stored.
- **Forms.** A POST from another site is refused twice over: by the browser's
  ``Sec-Fetch-Site``/``Origin`` (checked here) and by the session's form token, which a page of
  this app puts in every form and another site cannot read.
- **Headers.** A Content-Security-Policy with no inline script or style (htmx is told not to
  inject its own style and never to ``eval``), no framing, no referrer to other sites (sign-in
  links carry their secret in the URL) and no caching of pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.events import utcnow

_COOKIE = "claude_notify_session"
_SECURE_COOKIE = "__Host-claude_notify_session"
_TOUCH_EVERY = timedelta(minutes=1)
"""How stale ``last_seen_at`` may get before a request writes it again."""

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
       "object-src 'none'")
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Not no-referrer: under it Chromium sends "Origin: null" with the app's own form posts.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Refused(Exception):
    """A POST that did not come from this app's own pages."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def client_ip(request: Request) -> str:
    return (request.client.host if request.client else "unknown")[:64]


def is_loopback(request: Request) -> bool:
    host = request.url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_name(request: Request) -> str:
    return _COOKIE if is_loopback(request) else _SECURE_COOKIE


def current(request: Request, db: Session) -> WebSession | None:
    """The signed-in session this request's cookie names, if it is live."""
    secret = request.cookies.get(cookie_name(request))
    if not secret or len(secret) > 100:
        return None
    row = db.scalar(select(WebSession).where(WebSession.secret_hash == digest(secret)))
    now = utcnow()
    if row is None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
        db.commit()
    return row


def start(db: Session, request: Request, response: Response, *, user_id: object,
          settings: Settings, workspace_id: object = None) -> WebSession:
    """A new session for ``user_id`` (looking at ``workspace_id``, else their own), its cookie
    set on ``response``; the caller commits."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(user_id=user_id, workspace_id=workspace_id, secret_hash=digest(secret),
                     form_token=secrets.token_urlsafe(24), client_ip=client_ip(request),
                     user_agent=(request.headers.get("user-agent") or "")[:200],
                     created_at=now, last_seen_at=now,
                     expires_at=now + timedelta(seconds=settings.web_session_ttl_s))
    db.add(row)
    loopback = is_loopback(request)
    response.set_cookie(cookie_name(request), secret, max_age=int(settings.web_session_ttl_s),
                        path="/", secure=not loopback, httponly=True, samesite="lax")
    return row


_NEXT = "claude_notify_next"
"""The page a signed-out visitor asked for (a notification's task link): signing in in this
browser, by either way, ends there."""


def safe_next(value: str | None) -> str | None:
    """``value`` if it is one of this app's own pages (never another site, never the sign-in
    pages themselves), else ``None``."""
    if not value or len(value) > 512 or not value.startswith("/app/"):
        return None
    if value.startswith("/app/signin") or "\\" in value or "//" in value:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    return value


def remember_next(request: Request, response: Response, value: str | None,
                  settings: Settings) -> None:
    if (page := safe_next(value)) is not None:
        response.set_cookie(_NEXT, page, max_age=int(settings.login_ttl_s), path="/app",
                            secure=not is_loopback(request), httponly=True, samesite="lax")


def signed_in(db: Session, request: Request, *, user_id: object,
              settings: Settings, workspace_id: object = None) -> Response:
    """The answer that signs ``user_id`` in: a new session, then the page this browser asked
    for before signing in (else the tasks); the caller commits."""
    from fastapi.responses import RedirectResponse

    target = safe_next(request.cookies.get(_NEXT)) or "/app/tasks"
    response = RedirectResponse(target, status_code=303)
    start(db, request, response, user_id=user_id, settings=settings, workspace_id=workspace_id)
    response.delete_cookie(_NEXT, path="/app", secure=not is_loopback(request), httponly=True,
                           samesite="lax")
    return response


def end(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request), path="/", secure=not is_loopback(request),
                           httponly=True, samesite="lax")


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a POST another site's page made: the browser says where it came from."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Refused(f"a form from another site ({fetch_site})")
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {_origin(str(request.base_url)), _origin(settings.public_url)}
    if origin == "null" or _origin(origin) not in allowed:
        raise Refused("a form from another origin")


def check_form(request: Request, settings: Settings, web: WebSession | None,
               token: str | None) -> None:
    """:func:`check_origin`, and the session's own form token when signed in."""
    check_origin(request, settings)
    if web is not None and not hmac.compare_digest((token or "").encode(),
                                                   web.form_token.encode()):
        raise Refused("a form without this session's token")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class HeadersMiddleware:
    """The security headers on everything under ``/app``; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/app"):
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/app/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _HEADERS
                if not static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
