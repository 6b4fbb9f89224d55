"""Fixtures for the hosted server: real databases, a real SMTP server, a real webhook receiver.

Every storage test runs twice: on a fresh SQLite file and on a scratch database on the shared
PostgreSQL at 127.0.0.1:5432 (created for this session, dropped at its end; other databases are
never touched). PostgreSQL tests skip only when the server is unreachable outside CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cloud_kit import (
    HANG,
    Account,
    Mailbox,
    Received,
    Receiver,
    free_port,
    needed,
    verification_code,
    wait_for,
)
from fastapi.testclient import TestClient

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.engine import make_engine
from claude_notify.cloud.server.db.migrate import migrate
from claude_notify.cloud.server.db.models import Base
from claude_notify.cloud.server.logcrypt import new_key
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

PG_ADMIN_URL = os.environ.get("CLAUDE_NOTIFY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CLAUDE_NOTIFY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``one_database`` keep only their SQLite variant (deselected, not skipped):
    what they test, such as the real Claude Code CLI, does not depend on the database."""
    dropped = [item for item in items
               if item.get_closest_marker("one_database") and "postgres" in item.name]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in gone]


# --------------------------------------------------------------------------- databases


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session, migrated once."""
    _require_pg()
    with _scratch_pg() as url:
        yield url


@contextlib.contextmanager
def empty_pg(prefix: str = "cn_test") -> Iterator[str]:
    """A new PostgreSQL database that nothing has migrated, dropped (with its connections) on
    exit: for tests that migrate it themselves, or check what an unmigrated one does."""
    _require_pg()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _scratch_pg() -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped on exit."""
    with empty_pg() as url:
        engine = make_engine(Settings(database_url=url).sqlalchemy_url)
        migrate(engine)
        engine.dispose()
        yield url


def _require_pg() -> None:
    if not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "server.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert not path.with_name("server.db-wal").exists()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "server.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    return _emptied(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  sqlite_template: Path) -> Iterator[str]:
    """A migrated database of each kind for one module's shared server (see ``relay_kit``).

    PostgreSQL gets a database of its own, so the tests of other modules, which empty the
    session's scratch database, never pull rows from under a server still running."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module-db") / "server.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    _require_pg()
    with _scratch_pg() as url:
        yield url


def _emptied(url: str) -> str:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} CASCADE")
    return url


def require_redis(url: str = REDIS_URL) -> str:
    """``url``, once Redis answers there; else the test fails in CI and is skipped elsewhere."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url}")
    return url


@pytest.fixture
def replicas(pg_db: str, smtp_server: Mailbox) -> Iterator[tuple[Any, Any]]:
    """Two ``relay_kit.Server`` replicas on one PostgreSQL database and Redis, the relay's own
    poll slowed to 120 s: whatever reaches an agent on the other replica came through Redis."""
    from relay_kit import Server

    servers = [Server.make(pg_db, smtp_server, REDIS_URL=require_redis(),
                           CLAUDE_NOTIFY_SERVER_RELAY_POLL_S="120") for _ in range(2)]
    for server in servers:
        server.start()  # one after the other: the first migrates
    yield servers[0], servers[1]
    for server in servers:
        server.stop()


@pytest.fixture
def pg_db(pg_url: str) -> str:
    """The scratch PostgreSQL database, emptied: for tests that only make sense there."""
    return _emptied(pg_url)


# --------------------------------------------------------------------------- a browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (nothing downloaded), one per module."""
    executable = needed("chromium", "chromium", "chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # the dev group installs it
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (scripts/test.sh installs it)")
        pytest.skip("playwright is not installed (scripts/test.sh installs it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


# --------------------------------------------------------------------------- SMTP


class _Capture:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.box.lock:
            self.box.messages.append(envelope)
            self.box.tls.append(session.ssl is not None)
        return "250 OK queued"


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@contextlib.contextmanager
def _smtp(where: Path, tls_ca: trustme.CA) -> Iterator[Mailbox]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    ca_file = where / "smtp-ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    box = Mailbox(host="127.0.0.1", port=free_port(), ca_file=str(ca_file))
    controller = Controller(_Capture(box), hostname=box.host, port=box.port, tls_context=server_ctx)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(tmp_path: Path, tls_ca: trustme.CA) -> Iterator[Mailbox]:
    """A real aiosmtpd server on 127.0.0.1 that offers STARTTLS with a test CA's certificate."""
    with _smtp(tmp_path, tls_ca) as box:
        yield box


@pytest.fixture(scope="module")
def module_smtp(tmp_path_factory: pytest.TempPathFactory, tls_ca: trustme.CA) -> Iterator[Mailbox]:
    """The same, for one module's shared server: tests count the mails they caused."""
    with _smtp(tmp_path_factory.mktemp("smtp"), tls_ca) as box:
        yield box


# --------------------------------------------------------------------------- webhooks


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with _receiving() as rec:
        yield rec


@pytest.fixture(scope="module")
def module_receiver(module_db_url: str) -> Iterator[Receiver]:
    """A receiver for what one module's shared server sends: a new one for each database."""
    with _receiving() as rec:
        yield rec


@contextlib.contextmanager
def _receiving() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with rec.lock:
                rec.received.append(
                    Received(
                        {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                    )
                )
                status, headers = rec.script.pop(0) if rec.script else (200, {})
            if status == HANG:
                rec.release.wait(timeout=30)
                status = 200
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the sender may be killed mid-request
                super().handle()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the server


@pytest.fixture
def settings(db_url: str, smtp_server: Mailbox) -> Settings:
    """Fast retries and polls, private webhook targets allowed, SMTP at the test server."""
    return Settings(
        database_url=db_url,
        auto_migrate=False,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_ca_file=smtp_server.ca_file,
        smtp_from="claude-notify <noreply@example.com>",
        webhook_allow_private=True,
        retry_delays_s=(0.05, 0.1, 0.2),
        max_attempts=4,
        worker_poll_s=0.05,
        lease_s=5.0,
        log_keys=(new_key("k1"),),
    ).validate()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.build(settings)
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    """The app with its embedded worker running."""
    with TestClient(create_app(runtime=runtime)) as c:
        yield c


@pytest.fixture
def make_user(runtime: Runtime) -> Callable[..., Account]:
    def make(email: str | None = None, plan: str = "free") -> Account:
        address = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        with runtime.sessions.begin() as session:
            user, token = auth.create_user(session, address, plan=plan)
            return Account(user.email, token.secret, user.id)

    return make


@pytest.fixture
def verified_email(smtp_server: Mailbox) -> Callable[[TestClient, Account, str], str]:
    """Add an e-mail channel and confirm it as a user would: with the code from the e-mail."""

    def add(client: TestClient, account: Account, address: str) -> str:
        before = smtp_server.count()
        created = client.post(
            "/v1/channels",
            json={"type": "email", "config": {"address": address}},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        mail = smtp_server.wait(before + 1)[before]
        assert mail.rcpt_tos == [address]
        code = verification_code(mail)
        done = client.post(
            f"/v1/channels/{channel_id}/verify", json={"code": code}, headers=account.headers
        )
        assert done.status_code == 200, done.text
        return channel_id

    return add


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port, for concurrency tests."""
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=15)
