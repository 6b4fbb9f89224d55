"""A GitHub stand-in on 127.0.0.1 for the web app's "Sign in with GitHub".

It serves the four endpoints the server uses and holds each request to GitHub's documented
contract, so a server that strays from it fails here rather than in production:

- ``GET /login/oauth/authorize`` approves at once (a user who already said yes): a redirect to
  ``redirect_uri`` with a ``code`` and the ``state``; the PKCE challenge is kept with the code.
- ``POST /login/oauth/access_token`` takes a form with the client id and secret, the code (once,
  within ten minutes), the same ``redirect_uri`` and a ``code_verifier`` whose S256 is the
  challenge. Like GitHub it answers a refused code with 200 and ``{"error": ...}``, and form
  encoding unless asked for JSON.
- ``GET /user`` and ``GET /user/emails`` want ``Authorization: Bearer``, an ``Accept`` GitHub
  serves and a ``User-Agent`` (GitHub refuses requests without one); the e-mails need the
  ``user:email`` scope.

Whatever breaks the contract is answered as GitHub would and also listed in ``violations``,
which the tests' fixtures require to be empty.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CODE_TTL_S = 600.0
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


@dataclass
class Person:
    """The GitHub account that signs in: what ``/user`` and ``/user/emails`` say about it."""

    id: int = 4242
    login: str = "octo"
    email: str | None = None
    """``/user``'s ``email``: null unless the address is public."""
    emails: list[dict[str, Any]] = field(default_factory=list)


def address(email: str, *, primary: bool = True, verified: bool = True) -> dict[str, Any]:
    """One entry of ``/user/emails``."""
    return {"email": email, "primary": primary, "verified": verified,
            "visibility": "private" if primary else None}


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    person: Person
    issued: float
    used: bool = False


@dataclass
class GitHubStandIn:
    url: str
    client_id: str
    client_secret: str
    person: Person = field(default_factory=Person)
    deny: bool = False
    """The user presses Cancel: the redirect carries ``error=access_denied``."""
    stall: threading.Event | None = None
    """When set, the token endpoint holds its answer until this event is set (a slow GitHub)."""
    authorized: list[dict[str, str]] = field(default_factory=list)
    """The query of every authorize request, as received."""
    exchanges: list[dict[str, str]] = field(default_factory=list)
    """The form of every token request, as received."""
    tokens: list[str] = field(default_factory=list)
    """Every access token handed out."""
    violations: list[str] = field(default_factory=list)
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _tokens: dict[str, _Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def breach(self, what: str) -> None:
        with self._lock:
            self.violations.append(what)

    # -- the endpoints ---------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.authorized.append(query)
        if query.get("client_id") != self.client_id:
            return 404, {}, b"unknown client_id"
        redirect = query.get("redirect_uri", "")
        if not redirect.startswith(("http://", "https://")):
            self.breach(f"authorize without a usable redirect_uri: {redirect!r}")
            return 400, {}, b"redirect_uri"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            self.breach("authorize without an S256 PKCE challenge")
        if not query.get("state"):
            self.breach("authorize without a state")
        back = {"state": query.get("state", "")}
        if self.deny:
            back = {"error": "access_denied", "error_description": "The user has denied.",
                    **back}
        else:
            code = secrets.token_hex(10)
            with self._lock:
                self._grants[code] = _Grant(self.client_id, redirect,
                                            query.get("code_challenge", ""),
                                            query.get("scope", ""), self.person, time.time())
            back = {"code": code, **back}
        joiner = "&" if urlsplit(redirect).query else "?"
        return 302, {"Location": redirect + joiner + urlencode(back)}, b""

    def access_token(self, form: dict[str, str], headers: Any) -> tuple[int, dict[str, str],
                                                                       bytes]:
        with self._lock:
            self.exchanges.append(form)
        if self.stall is not None:
            self.stall.wait(30)
        wants_json = "application/json" in (headers.get("Accept") or "")
        if not wants_json:
            self.breach("token request without Accept: application/json")

        def answer(body: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            if wants_json:
                return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
            return 200, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(
                body).encode()

        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                  self.client_secret):
            self.breach("token request with the wrong client credentials")
            return answer({"error": "incorrect_client_credentials"})
        with self._lock:
            grant = self._grants.get(form.get("code", ""))
            fresh = (grant is not None and not grant.used
                     and time.time() - grant.issued < CODE_TTL_S)
            if grant is not None:
                grant.used = True  # a code is spent by its first exchange, good or bad
        if grant is None or not fresh:
            return answer({"error": "bad_verification_code",
                           "error_description": "The code passed is incorrect or expired."})
        if form.get("redirect_uri") != grant.redirect_uri:
            self.breach("token request with another redirect_uri than authorized")
            return answer({"error": "redirect_uri_mismatch"})
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.fullmatch(verifier):
            self.breach("token request without a well-formed code_verifier")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return answer({"error": "bad_verification_code",
                           "error_description": "The code_verifier does not match."})
        token = "gho_" + secrets.token_urlsafe(27)
        with self._lock:
            self._tokens[token] = grant
            self.tokens.append(token)
        return answer({"access_token": token, "token_type": "bearer",
                       "scope": grant.scope.replace(" ", ",")})

    def api(self, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        if not headers.get("User-Agent"):
            self.breach(f"{path} without a User-Agent")
            return 403, {}, b"Request forbidden by administrative rules."
        accept = headers.get("Accept") or ""
        if "application/vnd.github+json" not in accept and "application/json" not in accept:
            self.breach(f"{path} with Accept {accept!r}")
        kind, _, token = (headers.get("Authorization") or "").partition(" ")
        if kind != "Bearer":
            self.breach(f"{path} without a Bearer token")
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None:
            return _json(401, {"message": "Bad credentials"})
        person = grant.person
        if path == "/user":
            return _json(200, {"id": person.id, "login": person.login, "email": person.email,
                               "name": None, "type": "User"})
        if "user:email" not in grant.scope.split():
            return _json(404, {"message": "Not Found"})
        return _json(200, person.emails)


def _json(status: int, body: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


def _handler(github: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/login/oauth/authorize":
                self._send(*github.authorize(query))
            elif parts.path in ("/user", "/user/emails"):
                self._send(*github.api(parts.path, self.headers))
            else:
                self._send(404, {}, b"not found")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path != "/login/oauth/access_token":
                self._send(404, {}, b"not found")
                return
            if not (self.headers.get("Content-Type") or "").startswith(
                    "application/x-www-form-urlencoded"):
                github.breach("token request not form-encoded")
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self._send(*github.access_token(form, self.headers))

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running(client_id: str = "Iv1.standin0001",
            client_secret: str = "standin-client-secret-0123456789",  # noqa: S107 - a test value
            ) -> Iterator[GitHubStandIn]:
    """A stand-in serving on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    github = GitHubStandIn(f"http://127.0.0.1:{server.server_address[1]}", client_id,
                           client_secret)
    server.RequestHandlerClass = _handler(github)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield github
    finally:
        if github.stall is not None:
            github.stall.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
