"""Sign-up and sign-in by e-mail link, without a browser session (a device-code flow).

1. The CLI posts an address (and its machine's name) to ``/v1/auth/device`` and gets a
   ``device_code`` to poll with and a short ``user_code`` that it prints.
2. The server e-mails a one-time link; its page shows who asked (client IP, machine name,
   scopes, when) and approves only with the terminal's code typed in, posted to
   ``/v1/auth/approve`` (a GET alone approves nothing, so mail scanners that prefetch links
   cannot sign anyone in, and the e-mail does not carry the code: a stranger's request, clicked
   through by the address's owner, signs nobody in). :data:`MAX_CODE_FAILURES` wrong codes
   cancel that one request.
3. The CLI polls ``/v1/auth/token`` with its device code: ``authorization_pending`` until the link
   is confirmed, then — once — a new API token; the account is created on first sign-in.

Requests are limited per address *from one client IP* and per client IP, counted from the stored
requests so the limit holds across API replicas: a stranger asking for someone's address uses up
only their own allowance, never the owner's.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import socket
import time
import unicodedata
from datetime import timedelta
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from claude_notify.cloud.server import auth, limits, outbox, residency
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Delivery, DeliveryStatus, LoginRequest, User
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

router = APIRouter(tags=["auth"])

POLL_INTERVAL_S = 2
MAX_CODE_FAILURES = 5
CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
"""Consonants only: no words, no 0/O or 1/I to confuse; 20^8 codes, five guesses per request."""


class DeviceIn(StrictBody):
    email: str = Field(max_length=320)
    scopes: list[str] = Field(default_factory=lambda: ["events:write"], min_length=1, max_length=4)
    """What the new token may do; a machine that only reports tasks needs only events:write."""
    machine: str = Field(default="", max_length=200)
    """The asking machine's name, shown to the approver (it says so: the requester chose it)."""


class DeviceOut(BaseModel):
    device_code: str
    user_code: str
    """To print in the asking terminal: the approval page wants it typed in."""
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


def _new_user_code() -> str:
    letters = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def _code_hash(code: str) -> str:
    """The stored form of a user code, as typed: case, spaces and dashes do not count."""
    return _hash("".join(c for c in code.upper() if c.isalnum()))


def _shown(text: str, limit: int = 100) -> str:
    """Requester-controlled text made one plain line: control and format characters (newlines,
    bidirectional overrides) could make it read as something else."""
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    return " ".join(kept.split())[:limit]


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
    check_region(settings, email, ip)  # before anything is stored: another region's data
    check_mail(settings)
    _check_rate(session, settings, email, ip)
    now = utcnow()
    device_code, link_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    user_code, machine = _new_user_code(), _shown(body.machine)
    scopes = sorted(set(body.scopes))
    user_id = session.scalar(select(User.id).where(User.email == email))
    link = f"{settings.public_url.rstrip('/')}/v1/auth/approve?token={link_secret}"
    mail_id = outbox.queue_login(session, user_id=user_id, address=email,
                                 payload=_mail(link, ip, machine, scopes), now=now)
    session.add(
        LoginRequest(
            # The request shares its sign-in mail's id (another table), so the poll can tell
            # the CLI when that mail could not be sent instead of letting it wait for nothing.
            id=mail_id,
            email=email,
            device_hash=_hash(device_code),
            link_hash=_hash(link_secret),
            scopes=" ".join(scopes),
            client_ip=ip,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.login_ttl_s),
            machine_name=machine,
            user_code_hash=_code_hash(user_code),
        )
    )
    session.commit()
    runtime.waker.wake()
    return DeviceOut(device_code=device_code, user_code=user_code,
                     expires_in=int(settings.login_ttl_s), interval=POLL_INTERVAL_S)


def _mail(link: str, ip: str, machine: str, scopes: list[str]) -> dict[str, str]:
    text = (
        "Someone asked to sign in to claude-notify with this address:\n\n"
        f"from IP address {ip}, on a machine that calls itself \"{machine or 'unnamed'}\", "
        f"for a token that may: {', '.join(scopes)}.\n\n"
        f"If it was you, open {link} and type the code your terminal shows.\n\n"
        "If not, ignore this message: nobody can sign in without that link and that code."
    )
    return render_simple("Sign in to claude-notify", text, link)


_MAIL_PROBE_S = 1.0
_MAIL_PROBE_TTL_S = 5.0
_mail_probes: dict[tuple[str, int], tuple[float, bool]] = {}
"""Recent answers of :func:`_smtp_answers` by SMTP host and port (a sign-in burst connects
once)."""

UNAVAILABLE = "email_unavailable"
"""The error code of a sign-in this server cannot mail: the operator must act, not the CLI retry
(the CLI shows it as a refusal)."""


def _smtp_answers(host: str, port: int) -> bool:
    """Whether something accepts connections at the SMTP address: a TCP connect, not a session
    (a refused login or sender still shows later, as the sign-in mail's failure)."""
    now = time.monotonic()
    seen = _mail_probes.get((host, port))
    if seen is not None and now - seen[0] < _MAIL_PROBE_TTL_S:
        return seen[1]
    try:
        with socket.create_connection((host, port), timeout=_MAIL_PROBE_S):
            ok = True
    except OSError:
        ok = False
    _mail_probes[(host, port)] = (now, ok)
    return ok


def _cannot_mail(why: str) -> ApiError:
    return ApiError(503, f"this server cannot send e-mail: {why}; ask its operator for a token "
                         "(claude-notify login --token)", code=UNAVAILABLE)


def check_mail(settings: Settings) -> None:
    """503 at once when nothing answers at the SMTP address: a link never sent leaves the CLI
    waiting for nothing."""
    if not _smtp_answers(settings.smtp_host, settings.smtp_port):
        raise _cannot_mail(
            f"nothing answers at SMTP {settings.smtp_host}:{settings.smtp_port}")


WRONG_REGION = "wrong_region"
"""The error code of a sign-in asked of the wrong region's server; ``details`` name the right
one (``region``, ``server``), which the CLI signs in at instead."""


def check_region(settings: Settings, email: str, ip: str) -> None:
    """421 naming the home region's server when ``email``'s account lives in another region
    (429 past the per-IP limit, as for any sign-in); 503 when the region directory cannot say
    (a sign-in here might make a second account)."""
    try:
        elsewhere = residency.home(settings, email)
    except residency.ResidencyError as exc:
        raise ApiError(503, str(exc), code=exc.code) from None
    if elsewhere is not None:
        if not residency.may_point(ip, settings.login_per_ip_per_hour):
            raise ApiError(429, "too many sign-in requests; try again later",
                           headers={"Retry-After": "3600"})
        raise ApiError(421, f"this account lives in region {elsewhere.region}: sign in at "
                            f"{elsewhere.server}", code=WRONG_REGION,
                       details=[{"region": elsewhere.region, "server": elsewhere.server}])


def _check_rate(session: SessionDep, settings: Settings, email: str, ip: str) -> None:
    """429 past the hourly limits: per address from this client IP, and per client IP."""
    for where, limit in (
        ((LoginRequest.email == email, LoginRequest.client_ip == ip),
         settings.login_per_address_per_hour),
        ((LoginRequest.client_ip == ip,), settings.login_per_ip_per_hour),
    ):
        if limits.reached(session, limit, 3600.0, LoginRequest.created_at, *where):
            raise ApiError(
                429, "too many sign-in requests; try again later", headers={"Retry-After": "3600"}
            )


_PAGE = (
    "<!doctype html><html><body><h2>Sign in to claude-notify</h2>"
    "<p>A sign-in as <b>{email}</b> was asked for:</p><ul>"
    "<li>from IP address <b>{ip}</b></li>"
    "<li>on a machine that calls itself <b>{machine}</b> (the asker chose this name)</li>"
    "<li>for a token that may: <b>{scopes}</b></li>"
    "<li>at {when} UTC</li></ul>"
    "<p>If that was you, type the code your terminal shows. If you did not ask, close this "
    "page: nobody can sign in without the code.</p>{problem}"
    "<form method='post' action='/v1/auth/approve'>"
    "<input type='hidden' name='token' value='{token}'>"
    "<label>Code <input name='code' autocomplete='off' autofocus required maxlength='20'>"
    "</label> <button>Sign in</button></form>"
    "</body></html>"
)


def _pending(session: SessionDep, link_secret: str) -> LoginRequest:
    row = session.scalar(select(LoginRequest).where(LoginRequest.link_hash == _hash(link_secret)))
    if row is None or row.expires_at <= utcnow() or row.consumed_at is not None:
        raise ApiError(404, "this sign-in link is unknown, used or expired", code="not_found")
    return row


def _page(row: LoginRequest, token: str, problem: str = "", status: int = 200) -> HTMLResponse:
    page = _PAGE.format(
        email=html.escape(row.email),
        ip=html.escape(row.client_ip),
        machine=html.escape(_shown(row.machine_name) or "(no name given)"),
        scopes=html.escape(", ".join(row.scopes.split())),
        when=row.created_at.strftime("%Y-%m-%d %H:%M"),
        problem=f"<p><b>{html.escape(problem)}</b></p>" if problem else "",
        token=html.escape(token, quote=True),
    )
    return HTMLResponse(page, status_code=status)


@router.get("/v1/auth/approve", response_class=HTMLResponse, summary="The sign-in link's page")
def approve_page(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: SessionDep
) -> HTMLResponse:
    return _page(_pending(session, token), token)


@router.post("/v1/auth/approve", response_class=HTMLResponse, summary="Confirm a sign-in")
def approve(
    token: Annotated[str, Form(min_length=1, max_length=200)],
    code: Annotated[str, Form(min_length=1, max_length=40)],
    session: SessionDep,
) -> HTMLResponse:
    """Approve with the code the asking terminal printed; wrong codes are counted per request,
    so guessing is cut short without touching the owner's other sign-ins."""
    row = _pending(session, token)
    expected = row.user_code_hash or ""  # a request from before codes: never approved
    if not expected or not hmac.compare_digest(_code_hash(code).encode(), expected.encode()):
        # Counted in the database (the row stays locked to the commit): parallel guesses on
        # several replicas cannot each see the old count.
        session.execute(update(LoginRequest).where(LoginRequest.id == row.id)
                        .values(code_failures=LoginRequest.code_failures + 1))
        failures = session.scalar(select(LoginRequest.code_failures)
                                  .where(LoginRequest.id == row.id)) or MAX_CODE_FAILURES
        if failures >= MAX_CODE_FAILURES:
            session.execute(update(LoginRequest).where(LoginRequest.id == row.id)
                            .values(expires_at=utcnow()))  # cancelled; the CLI's poll says so
            session.commit()
            return HTMLResponse(
                "<!doctype html><p>Too many wrong codes: this sign-in request is cancelled. "
                "Run <code>claude-notify login</code> again if it was yours.</p>",
                status_code=403)
        session.commit()
        left = MAX_CODE_FAILURES - failures
        return _page(row, token, f"That is not the code the terminal shows ({left} tries left).",
                     status=400)
    row.approved_at = row.approved_at or utcnow()
    session.commit()
    return HTMLResponse("<!doctype html><p>Signed in. You can return to your terminal.</p>")


@router.post("/v1/auth/token", summary="Poll for the token of an approved sign-in")
def redeem(body: TokenIn, session: SessionDep, runtime: RuntimeDep) -> TokenOut:
    row = session.scalar(
        select(LoginRequest)
        .where(LoginRequest.device_hash == _hash(body.device_code))
        .with_for_update()
    )
    if row is None or row.consumed_at is not None or row.expires_at <= utcnow():
        raise ApiError(400, "this device code is unknown, used or expired", code="expired_token")
    if row.approved_at is None:
        mail = session.get(Delivery, row.id)
        if mail is not None and mail.kind == outbox.LOGIN and mail.reason and (
                mail.status == DeliveryStatus.DEAD or mail.attempts > 0):
            # Dead, or failed once and waiting to retry: either way nobody has the link now.
            raise _cannot_mail(f"the sign-in e-mail failed ({mail.reason})")
        raise ApiError(
            400, "waiting for the e-mailed link to be confirmed", code="authorization_pending"
        )
    row.consumed_at = utcnow()
    user = session.scalar(select(User).where(User.email == row.email))
    if user is None:
        user = auth.create_account(session, row.email, plan=runtime.settings.default_plan)
        residency.claim(runtime.settings, row.email)
    issued = auth.issue_token(session, user, scopes=row.scopes.split(), name="device login")
    session.commit()
    return TokenOut(token=issued.secret, email=row.email, scopes=row.scopes.split())
