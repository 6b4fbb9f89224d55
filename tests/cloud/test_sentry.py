"""Errors to Sentry, against a local envelope receiver (Sentry's ingestion protocol on 127.0.0.1).

A real ``claude-notify server`` with a DSN pointing at the receiver, and a channel plugin whose
send raises with the user's task output and the channel's secret in its text and in its frame's
locals: the event arrives with the exception's type, and none of the secrets or the user's data
is anywhere in what was sent. The API's unhandled-error path is checked the same way in a process
serving the real app plus one failing route, hit with an API token, a cookie, a query string
and a body. Without a DSN, ``sentry_sdk`` is never imported.

What this does not prove: that sentry.io accepts these envelopes (the receiver parses the
documented envelope format, it does not validate the event schema).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, free_port, wait_for
from relay_kit import Server, email

from claude_notify.cloud.server import redact
from claude_notify.cloud.server.sentry import scrub
from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError

pytest.importorskip("sentry_sdk")

SENTRY_KEY = "5e57e7b1c0ffee0ddba11deadbeef42a"
TELEGRAM_SECRET = "tg-webhook-secret-" + uuid.uuid4().hex
SLACK_SECRET = "slack-signing-secret-" + uuid.uuid4().hex
CHANNEL_SECRET = "whsec-of-the-users-channel-" + uuid.uuid4().hex
TAIL = "tail-line-the-user-owns-" + uuid.uuid4().hex
COMMAND = "deploy --to prod-" + uuid.uuid4().hex

PROBE_MODULE = '''\
from claude_notify.cloud.server.channels.base import SendResult


class Channel:
    """Every send raises, quoting the message it was sending and the channel's secret."""

    def __init__(self, settings, http):
        self.http = http

    @staticmethod
    def validate_config(config):
        return dict(config)

    async def send(self, message):
        secret = message.config["secret"]
        raise LookupError(f"cannot send {message.text!r} {message.event!r} with {secret}")
'''


@dataclass
class Envelopes:
    """A Sentry ingestion endpoint: ``POST /api/<project>/envelope/``, bodies decoded."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            bodies = list(self.bodies)
        return [payload for body in bodies for kind, payload in _items(body) if kind == "event"]

    def everything(self) -> bytes:
        """Every envelope's bytes (not the ``X-Sentry-Auth`` header: the DSN's key is how a
        client authenticates, so that is the one place it belongs)."""
        with self.lock:
            return b"\n".join(self.bodies)


def _items(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """Sentry's envelope: a header line, then (item header, payload) pairs, a payload's size
    from its header's ``length`` or else up to the next newline."""
    json.loads(body.split(b"\n", 1)[0])  # the envelope's header
    rest = body.split(b"\n", 1)[1] if b"\n" in body else b""
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[:header["length"]], rest[header["length"]:].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        if header.get("type") in ("event", "transaction"):
            yield header["type"], json.loads(payload)


@pytest.fixture
def envelopes() -> Iterator[Envelopes]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "api" or parts[2] != "envelope":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding:
                self.send_error(415, f"cannot read {encoding}")
                return
            with sink.lock:
                sink.bodies.append(body)
                sink.auth.append(self.headers.get("X-Sentry-Auth", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = Envelopes(f"http://127.0.0.1:{httpd.server_port}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield sink
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def probe_plugin(tmp_path: Path) -> Path:
    where = tmp_path / "plugins"
    info = where / "cn_sentry_probe-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cn-sentry-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[claude_notify.channels]\nsentryprobe = cn_sentry_probe:Channel\n")
    (where / "cn_sentry_probe.py").write_text(PROBE_MODULE)
    return where


def _dsn(envelopes: Envelopes) -> str:
    return envelopes.url.replace("http://", f"http://{SENTRY_KEY}@") + "/1"


def _forbidden(*more: str) -> list[str]:
    return [SENTRY_KEY, TELEGRAM_SECRET, SLACK_SECRET, CHANNEL_SECRET, TAIL, COMMAND, *more]


def test_a_worker_error_reaches_sentry_with_its_type_and_without_secrets_or_output(
    tmp_path: Path, smtp_server: Mailbox, envelopes: Envelopes, probe_plugin: Path,
) -> None:
    server = Server.make(
        f"sqlite:///{tmp_path / 'server.db'}", smtp_server,
        PYTHONPATH=os.pathsep.join([str(probe_plugin), os.environ.get("PYTHONPATH", "")]),
        CLAUDE_NOTIFY_SERVER_CHANNEL_PLUGINS="sentryprobe",
        CLAUDE_NOTIFY_SERVER_SENTRY_DSN=_dsn(envelopes),
        CLAUDE_NOTIFY_SERVER_SENTRY_ENVIRONMENT="loopback-test",
        CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
        CLAUDE_NOTIFY_SERVER_SLACK_SIGNING_SECRET=SLACK_SECRET,
        CLAUDE_NOTIFY_SERVER_MAX_ATTEMPTS="1")
    server.start()
    try:
        token = server.admin("create-user", email("sentry"), "--plan", "pro")
        headers = {"Authorization": f"Bearer {token}"}
        added = httpx.post(f"{server.url}/v1/channels", headers=headers, timeout=30, json={
            "type": "sentryprobe", "config": {"secret": CHANNEL_SECRET},
            "rules": {"on": ["finished"]}})
        assert added.status_code == 201, added.text
        event = {"type": "finished", "source": "run", "task_id": "t-sentry", "machine_id": "m-1",
                 "status": "failure", "exit_code": 2, "command": COMMAND, "tail": TAIL}
        posted = httpx.post(f"{server.url}/v1/events", headers=headers, json=event, timeout=30)
        assert posted.status_code == 202, posted.text

        def reported() -> list[dict[str, Any]]:
            return [e for e in envelopes.events()
                    if any(v.get("type") == "LookupError"
                           for v in (e.get("exception") or {}).get("values", []))]

        [report] = wait_for(reported, timeout=60, what="the send's error to reach Sentry")
    finally:
        server.stop()
    assert report["environment"] == "loopback-test"
    assert report["tags"]["component"] == "api"
    assert report["logentry"]["message"] == "adapter sentryprobe raised"
    frames = report["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "send" and "vars" not in frames[-1]
    sent = envelopes.everything()
    leaked = [s for s in _forbidden(token) if s.encode() in sent]
    assert not leaked, leaked
    assert all(f"sentry_key={SENTRY_KEY}" in a for a in envelopes.auth)


CRASHING_APP = textwrap.dedent('''\
    import sys

    import uvicorn
    from fastapi import Request

    from claude_notify.cloud.server.app import create_app
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.sentry import init
    from claude_notify.cloud.server.settings import Settings

    settings = Settings.from_env().validate()
    runtime = Runtime.build(settings)
    print("sentry on:", init(settings, component="api"), flush=True)
    app = create_app(runtime=runtime)

    @app.post("/v1/test-only-crash")
    async def crash(request: Request) -> None:
        body = (await request.body()).decode()
        raise KeyError(f"{body} {request.headers} {request.url}")

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
''')


def test_an_api_crash_reaches_sentry_without_headers_cookies_query_or_body(
    tmp_path: Path, envelopes: Envelopes,
) -> None:
    port = free_port()
    token = "cnt_" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
                "CLAUDE_NOTIFY_SERVER_SENTRY_DSN": _dsn(envelopes),
                "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET})
    script = tmp_path / "crashing_app.py"
    script.write_text(CRASHING_APP)
    proc = subprocess.Popen([sys.executable, str(script), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None  # died: fail below, not after the deadline

        wait_for(up, timeout=60, what="the app to answer /healthz")
        assert proc.poll() is None
        answer = httpx.post(
            f"{base}/v1/test-only-crash?code=link-secret-{TELEGRAM_SECRET}",
            headers={"Authorization": f"Bearer {token}", "Cookie": f"session={CHANNEL_SECRET}",
                     "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
            content=json.dumps({"command": COMMAND, "tail": TAIL}), timeout=30)
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"

        def reported() -> list[dict[str, Any]]:
            return [e for e in envelopes.events()
                    if any(v.get("type") == "KeyError"
                           for v in (e.get("exception") or {}).get("values", []))]

        report = wait_for(reported, timeout=30, what="the crash to reach Sentry")[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert report["request"] == {"method": "POST", "url": f"{base}/v1/test-only-crash"}
    sent = envelopes.everything()
    leaked = [s for s in _forbidden(token, "link-secret") if s.encode() in sent]
    assert not leaked, leaked


def test_without_a_dsn_sentry_sdk_is_never_imported(tmp_path: Path) -> None:
    code = textwrap.dedent(f'''\
        import sys
        from claude_notify.cloud.server.app import create_app
        from claude_notify.cloud.server.runtime import Runtime
        from claude_notify.cloud.server.sentry import init
        from claude_notify.cloud.server.settings import Settings

        settings = Settings(database_url="sqlite:///{tmp_path / 'plain.db'}").validate()
        create_app(runtime=Runtime.build(settings))
        print(init(settings, component="api"), "sentry_sdk" in sys.modules)
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env["SENTRY_DSN"] = "http://ignored@127.0.0.1:9/1"  # Sentry's own variable is not ours
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_scrubber_keeps_an_allowlist_of_a_hostile_event() -> None:
    redact.add([TELEGRAM_SECRET])
    event = {
        "event_id": "e1", "level": "error", "logger": "claude_notify.server",
        "logentry": {"message": f"sent {TELEGRAM_SECRET}", "params": [TAIL],
                     "formatted": TAIL},
        "exception": {"values": [{
            "type": "IntegrityError", "module": "sqlalchemy.exc",
            "value": f"[parameters: ('{TAIL}',)]",
            "mechanism": {"type": "logging", "handled": True, "data": {"x": TAIL}},
            "stacktrace": {"frames": [
                {"filename": "x.py", "abs_path": "/app/x.py", "function": "f", "lineno": 3,
                 "context_line": f"token = '{TELEGRAM_SECRET}'", "vars": {"tail": TAIL}},
                {"filename": "<template>", "abs_path": "<template>", "function": "top",
                 "lineno": 1, "context_line": TAIL, "pre_context": [COMMAND]},
            ]}}]},
        "request": {"method": "POST", "url": f"https://u:{CHANNEL_SECRET}@h.example/v1/x?c=1",
                    "query_string": "c=1", "headers": {"Authorization": "Bearer x"},
                    "cookies": {"s": "x"}, "data": TAIL, "env": {"REMOTE_ADDR": "1.2.3.4"}},
        "contexts": {"trace": {"trace_id": "t", "span_id": "s",
                               "dynamic_sampling_context": {"public_key": SENTRY_KEY}},
                     "runtime": {"name": "CPython"}, "response": {"body": TAIL}},
        "breadcrumbs": {"values": [
            {"type": "log", "category": "claude_notify.server", "message": TELEGRAM_SECRET,
             "data": {"tail": TAIL}},
            {"type": "http", "category": "httpx", "data": {"url": TELEGRAM_SECRET}},
            {"category": "query", "message": f"INSERT … '{TAIL}'"},
        ]},
        "extra": {"sys.argv": [COMMAND]}, "user": {"ip_address": "1.2.3.4"},
        "modules": {"x": "1"}, "tags": {"t": TELEGRAM_SECRET},
    }
    kept = scrub(event)
    text = json.dumps(kept)
    assert not [s for s in (TAIL, COMMAND, TELEGRAM_SECRET, CHANNEL_SECRET, SENTRY_KEY,
                            "Bearer", "1.2.3.4", "c=1") if s in text], text
    assert kept["exception"]["values"][0]["type"] == "IntegrityError"
    assert kept["request"] == {"method": "POST", "url": "https://h.example/v1/x"}
    [crumb] = kept["breadcrumbs"]["values"]
    assert crumb == {"type": "log", "category": "claude_notify.server", "message": "[redacted]"}
    assert kept["contexts"] == {"trace": {"trace_id": "t", "span_id": "s"},
                                "runtime": {"name": "CPython"}}


def test_the_dsn_is_checked_and_masked_in_logs() -> None:
    with pytest.raises(ConfigError, match="SENTRY_DSN"):
        Settings(sentry_dsn="not-a-dsn").validate()
    dsn = f"https://{SENTRY_KEY}@o1.ingest.example/42"
    redact.remember(Settings(sentry_dsn=dsn).validate())
    assert SENTRY_KEY not in redact.redact(f"posting to {dsn} with key {SENTRY_KEY}")
