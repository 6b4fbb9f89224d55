"""``/readyz`` takes a replica out of the load balancer for what a restart would not fix (its
database, its migrations, Redis); ``/healthz`` only says the process answers.

Each case runs on SQLite and on PostgreSQL, against databases migrated for real to the state
described (never a faked answer from the check itself)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import empty_pg, require_redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.migrate import code_heads, known_revisions, migrate
from claude_notify.cloud.server.logcrypt import new_key
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind with nothing in it, not even migrations: each test brings it to
    the revision it needs (a database of its own, so the shared scratch one is never touched)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    with empty_pg("cn_ready") as url:
        yield url


@contextlib.contextmanager
def serving(db_url: str, *, revision: str | None = "head",
            **changes: object) -> Iterator[TestClient]:
    """The app on ``db_url`` migrated to ``revision`` (``None``: not at all)."""
    settings = Settings(database_url=db_url, auto_migrate=False, log_keys=(new_key("k1"),),
                        **changes).validate()  # type: ignore[arg-type]
    runtime = Runtime.build(settings)
    try:
        if revision is not None:
            migrate(runtime.engine, revision)
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused, and no other
    process can take it while the test runs (unlike a port picked free and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def previous_revision() -> str:
    [head] = code_heads()
    return f"{int(head) - 1:04d}"


def test_ready_when_migrated(fresh_db: str) -> None:
    with serving(fresh_db) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {
            "database": "ok", "migrations": "ok", "redis": "not configured"}}
        assert client.get("/healthz").json() == {"status": "ok"}


def test_a_database_behind_on_migrations_is_not_ready(fresh_db: str) -> None:
    before = previous_revision()
    assert before in known_revisions()
    with serving(fresh_db, revision=before) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "unavailable"
        assert "behind on migrations" in error["message"]
        assert f"at {before}" in error["message"]
        assert {"check": "migrations", "status": "behind"} in error["details"]
        # Alive all the same: restarting it would not migrate the database.
        assert client.get("/healthz").status_code == 200

        migrate(client.app.state.runtime.engine)  # type: ignore[attr-defined]
        assert client.get("/readyz").status_code == 200


def test_a_database_never_migrated_is_not_ready(fresh_db: str) -> None:
    with serving(fresh_db, revision=None) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "no migrations applied" in answer.json()["error"]["message"]
        assert client.get("/healthz").status_code == 200


def test_a_database_ahead_of_this_code_stays_ready(fresh_db: str) -> None:
    """A newer release's migrate Job has run: the old replicas keep serving until replaced."""
    with serving(fresh_db) as client:
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["migrations"] == "ahead"


def test_an_unreachable_database_is_not_ready_but_alive(tmp_path: Path) -> None:
    """The database file's directory is gone: SQLite cannot open it (PostgreSQL's equivalent,
    a connection cut by a proxy, is in test_faults.py)."""
    where = tmp_path / "gone"
    where.mkdir()
    with serving(f"sqlite:///{where / 'server.db'}") as client:
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        engine.dispose()
        # Moved away in one step: the embedded worker keeps opening the database, and a file
        # deleted by name could be made again before the directory went.
        where.rename(tmp_path / "moved")
        answer = client.get("/readyz")
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["message"] == "database unreachable"
        assert {"check": "database", "status": "unreachable"} in error["details"]
        assert client.get("/healthz").status_code == 200


def test_redis_on_a_closed_port_is_not_ready(fresh_db: str) -> None:
    with closed_port() as port, serving(
            fresh_db, redis_url=f"redis://127.0.0.1:{port}/0") as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["message"] == "redis unreachable"
        assert {"check": "redis", "status": "unreachable"} in error["details"]
        assert {"check": "migrations", "status": "ok"} in error["details"]


@pytest.mark.redis
def test_ready_with_redis(fresh_db: str) -> None:
    with serving(fresh_db, redis_url=require_redis()) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"] == "ok"
