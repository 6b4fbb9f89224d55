"""Signing in with GitHub: OAuth's authorization code with PKCE, on httpx.

- ``GET /app/signin/github`` makes a random ``state`` and PKCE verifier, stores both only as
  SHA-256 (:class:`.WebOAuthState`), puts the verifier in a ten-minute ``HttpOnly`` cookie and
  sends the browser to GitHub.
- ``GET /app/signin/github/callback`` acts only in the browser holding that cookie, with the
  state it was given (compared in constant time), once and within the ten minutes: a callback
  URL from someone else's sign-in (login CSRF) or a replayed one finds nothing. It is a GET
  because GitHub sends the browser back that way.
- The code is exchanged with the verifier, so a code read from a URL is useless alone; then
  ``/user`` gives GitHub's immutable account id and ``/user/emails`` the addresses. A linked id
  signs its user in; otherwise only the **primary and verified** address may find or make (by
  the sign-up policy) the account to link. ``/user``'s own ``email`` is never used: it is null
  for private addresses, and an unverified one would hand anyone any account (Paymenter#1285).

GitHub's answers are translated at this edge into :class:`GitHubFailed`, shown as a page with
502 or 504; the access token is used for those two calls and then dropped, never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from email_validator import EmailNotValidError, validate_email
from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from claude_notify.cloud.server import limits
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebIdentity, WebOAuthState
from claude_notify.cloud.server.web.pages import NotFound, router, see_other
from claude_notify.cloud.server.web.signin import account_for, signin_view
from claude_notify.events import utcnow

log = logging.getLogger(__name__)

PROVIDER = "github"
SCOPE = "read:user user:email"
FLOW_TTL = timedelta(minutes=10)
_COOKIE = "claude_notify_github"
_SECURE_COOKIE = "__Host-claude_notify_github"
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubFailed(Exception):
    """GitHub could not be asked, or answered something unusable; ``message`` says which."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class GitHubUser:
    subject: str
    """GitHub's numeric account id: logins and addresses change, it does not."""
    email: str | None
    """The primary address if GitHub has verified it, else ``None``."""


def challenge(verifier: str) -> str:
    """PKCE's S256: the verifier's SHA-256, base64url without padding (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def callback_url(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/app/signin/github/callback"


def _cookie(request: Request) -> str:
    return _COOKIE if security.is_loopback(request) else _SECURE_COOKIE


@router.get("/signin/github")
def github_start(request: Request, db: SessionDep, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    if not settings.github_enabled:
        raise NotFound
    ip = security.client_ip(request)
    if limits.reached(db, settings.login_per_ip_per_hour, 3600.0, WebOAuthState.created_at,
                      WebOAuthState.client_ip == ip):
        return signin_view(request, settings, code=429,
                           problem="Too many sign-ins started from here; try again in an hour.")
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    now = utcnow()
    db.add(WebOAuthState(provider=PROVIDER, state_hash=security.digest(state),
                         browser_hash=security.digest(verifier), client_ip=ip, created_at=now,
                         expires_at=now + FLOW_TTL))
    db.commit()
    query = urlencode({"client_id": settings.github_client_id,
                       "redirect_uri": callback_url(settings), "scope": SCOPE, "state": state,
                       "code_challenge": challenge(verifier), "code_challenge_method": "S256"})
    response = see_other(f"{settings.github_url.rstrip('/')}/login/oauth/authorize?{query}")
    loopback = security.is_loopback(request)
    response.set_cookie(_cookie(request), verifier, max_age=int(FLOW_TTL.total_seconds()),
                        path="/", secure=not loopback, httponly=True, samesite="lax")
    return response


@router.get("/signin/github/callback")
def github_callback(request: Request, db: SessionDep, runtime: RuntimeDep,
                    code: Annotated[str, Query(max_length=200)] = "",
                    state: Annotated[str, Query(max_length=200)] = "",
                    error: Annotated[str, Query(max_length=200)] = "") -> Response:
    settings = runtime.settings
    if not settings.github_enabled:
        raise NotFound
    verifier = request.cookies.get(_cookie(request), "")
    response = _finish(request, db, settings, verifier, code=code, state=state, error=error)
    response.delete_cookie(_cookie(request), path="/", secure=not security.is_loopback(request),
                           httponly=True, samesite="lax")
    return response


def _finish(request: Request, db: Session, settings: Settings, verifier: str, *, code: str,
            state: str, error: str) -> Response:
    if not _spend(db, verifier, state):
        return signin_view(request, settings, code=403, problem=(
            "This GitHub sign-in was not started in this browser, or it has expired or was "
            "used already. Start again."))
    if error or not code:
        return signin_view(request, settings, code=403, problem=(
            f"GitHub did not sign you in ({error[:60] or 'no code'}). Start again."))
    try:
        github = fetch_user(settings, code, verifier)
    except GitHubFailed as exc:
        log.warning("GitHub sign-in failed: %s (%s)", exc.message,
                    type(exc.__cause__).__name__ if exc.__cause__ else "answer")
        return signin_view(request, settings, code=exc.status, problem=exc.message)
    user = _account(db, settings, github)
    if isinstance(user, str):
        db.commit()
        return signin_view(request, settings, code=403, problem=user)
    response = security.signed_in(db, request, user_id=user.id, settings=settings)
    db.commit()
    return response


def _spend(db: Session, verifier: str, state: str) -> bool:
    """Whether this browser started the flow ``state`` names, marking it used if so (once)."""
    if not verifier or not state or len(verifier) > 100:
        return False
    row = db.scalar(select(WebOAuthState).where(
        WebOAuthState.browser_hash == security.digest(verifier),
        WebOAuthState.provider == PROVIDER))
    if row is None or not hmac.compare_digest(row.state_hash.encode(),
                                              security.digest(state).encode()):
        return False
    now = utcnow()
    spent = db.execute(update(WebOAuthState).where(
        WebOAuthState.id == row.id, WebOAuthState.used_at.is_(None),
        WebOAuthState.expires_at > now).values(used_at=now))
    db.commit()  # before GitHub is asked: no transaction waits on the network
    return bool(getattr(spent, "rowcount", 0) == 1)


def _account(db: Session, settings: Settings, github: GitHubUser) -> User | str:
    """The user this GitHub account signs in, linked now if it was not; else why not."""
    linked = db.scalar(select(WebIdentity.user_id).where(WebIdentity.provider == PROVIDER,
                                                         WebIdentity.subject == github.subject))
    if linked is not None:
        user = db.get(User, linked)
        if user is not None:
            return user
    if github.email is None:
        return ("Your GitHub account has no verified primary e-mail address. Verify it on "
                "GitHub (Settings → Emails) and try again, or sign in by e-mail.")
    try:
        address = validate_email(github.email, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return "GitHub's primary address for your account is not one this server can use."
    user = account_for(db, settings, address)
    if user is None:
        return (f"There is no account for {address} here, and this server does not open one "
                "for it. Ask its operator, or sign in with another address.")
    try:
        with db.begin_nested():  # the same GitHub account may be signing in elsewhere at once
            db.add(WebIdentity(provider=PROVIDER, subject=github.subject, user_id=user.id,
                               created_at=utcnow()))
    except IntegrityError:
        linked = db.scalar(select(WebIdentity.user_id).where(
            WebIdentity.provider == PROVIDER, WebIdentity.subject == github.subject))
        other = db.get(User, linked) if linked is not None else None
        if other is None:
            raise
        return other
    return user


# -- GitHub's side ---------------------------------------------------------------------------


def fetch_user(settings: Settings, code: str, verifier: str) -> GitHubUser:
    """Exchange ``code`` (with the PKCE ``verifier``) and read who signed in."""
    with httpx.Client(timeout=settings.provider_timeout_s, follow_redirects=False,
                      headers={"User-Agent": "claude-notify"}) as http:
        answer = _json(lambda: http.post(
            f"{settings.github_url.rstrip('/')}/login/oauth/access_token",
            headers={"Accept": "application/json"},
            data={"client_id": settings.github_client_id,
                  "client_secret": settings.github_client_secret, "code": code,
                  "redirect_uri": callback_url(settings), "code_verifier": verifier}),
            "the sign-in code")
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            # GitHub answers a bad, used or expired code with 200 and an "error" field.
            why = answer.get("error") if isinstance(answer, dict) else None
            raise GitHubFailed(f"GitHub refused the sign-in ({str(why or 'no token')[:60]}). "
                               "Start again.", status=403)
        auth = {**_API_HEADERS, "Authorization": f"Bearer {token}"}
        api = settings.github_api_url.rstrip("/")
        profile = _json(lambda: http.get(f"{api}/user", headers=auth), "/user")
        emails = _json(lambda: http.get(f"{api}/user/emails", headers=auth,
                                        params={"per_page": 100}), "/user/emails")
    subject = profile.get("id") if isinstance(profile, dict) else None
    if not isinstance(subject, int) or isinstance(subject, bool) or not isinstance(emails, list):
        raise GitHubFailed("GitHub's answer about your account was not what it documents.")
    primary = next((e["email"] for e in emails
                    if isinstance(e, dict) and e.get("primary") is True
                    and e.get("verified") is True and isinstance(e.get("email"), str)), None)
    return GitHubUser(subject=str(subject), email=primary)


def _json(send: Callable[[], httpx.Response], what: str) -> Any:
    """``send()``'s JSON body, or :class:`GitHubFailed` saying what went wrong with ``what``."""
    try:
        response = send()
    except httpx.TimeoutException as exc:
        raise GitHubFailed(f"GitHub did not answer in time ({what}); try again.",
                           status=504) from exc
    except httpx.HTTPError as exc:
        raise GitHubFailed(f"GitHub could not be reached ({what}); try again.") from exc
    if response.status_code != 200:
        raise GitHubFailed(f"GitHub answered {response.status_code} ({what}); try again.")
    try:
        return response.json()
    except ValueError as exc:
        raise GitHubFailed(f"GitHub's answer was not JSON ({what}); try again.") from exc
