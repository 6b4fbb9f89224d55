"""Expired sign-in links, device codes, GitHub flows and browser sessions are cleared a day
after they expire, by the worker when it starts (and hourly), on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from claude_notify.cloud.server import housekeeping
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import LoginRequest, User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.web.models import WebOAuthState, WebSession, WebSignin
from claude_notify.events import utcnow


def _rows(runtime: Runtime, user: Account, *, ago: timedelta) -> None:
    """One row of each kind, expired ``ago``."""
    expires = utcnow() - ago
    with runtime.sessions.begin() as db:
        db.add(WebSignin(email=user.email, link_hash=secrets.token_hex(32), client_ip="1.2.3.4",
                         expires_at=expires))
        db.add(WebOAuthState(provider="github", state_hash=secrets.token_hex(32),
                             browser_hash=secrets.token_hex(32), client_ip="1.2.3.4",
                             expires_at=expires))
        db.add(WebSession(user_id=user.user_id, secret_hash=secrets.token_hex(32),
                          form_token=secrets.token_hex(8), client_ip="1.2.3.4", expires_at=expires))
        db.add(LoginRequest(email=user.email, device_hash=secrets.token_hex(32),
                            link_hash=secrets.token_hex(32), scopes="events:write",
                            client_ip="1.2.3.4", expires_at=expires))


def _counts(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as db:
        return {m.__tablename__: int(db.scalar(select(func.count()).select_from(m)) or 0)
                for m in (LoginRequest, WebSignin, WebOAuthState, WebSession)}


def test_rows_expired_over_a_day_ago_go_and_the_rest_stay(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    _rows(runtime, user, ago=housekeeping.KEEP + timedelta(minutes=1))
    _rows(runtime, user, ago=housekeeping.KEEP - timedelta(minutes=1))  # expired, but recently
    _rows(runtime, user, ago=-timedelta(hours=1))  # still good
    before = _counts(runtime)
    assert housekeeping.sweep(runtime.sessions) == dict.fromkeys(before, 1)
    assert _counts(runtime) == {name: n - 1 for name, n in before.items()}
    assert housekeeping.sweep(runtime.sessions) == dict.fromkeys(before, 0)


def test_the_worker_clears_them_when_it_starts(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    _rows(runtime, user, ago=timedelta(days=3))
    assert set(_counts(runtime).values()) == {1}
    with TestClient(create_app(runtime=runtime)):
        wait_for(lambda: set(_counts(runtime).values()) == {0}, what="the expired rows to go")
    with runtime.sessions() as db:  # the account itself is untouched
        assert db.get(User, user.user_id) is not None
