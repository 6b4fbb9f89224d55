"""Benchmark billing: Stripe's webhook under 50 concurrent deliveries, and the billing page.

For each database (SQLite file, and a scratch PostgreSQL database dropped afterwards), a real
``claude-notify server`` subprocess with Stripe pointed at the stand-in of the tests
(``tests/cloud/standins/stripe.py``, in this process, answering the server's re-reads), in two
shapes: ``one process`` (the API with its embedded worker: a one-machine self-host) and, on
PostgreSQL, ``API + worker`` (Redis configured and a ``server worker`` process of its own, as
``deploy/compose.yaml`` and ``deploy/k8s`` run it). The webhook only records; the worker
re-reads Stripe (in the first shape inside the API's process, after a pause in deliveries):

1. **Seed** ``--accounts`` accounts (in this process, on the server's database), each with a
   Stripe customer made through ``POST /v1/billing/checkout`` and an active subscription, and
   a browser session for one of them (its cookie's SHA-256, as the sign-in writes it).
2. **Webhook.** ``--rounds`` bursts of ``--concurrency`` deliveries sent at once from a sender
   process of its own (raw sockets, connections kept open, see :func:`fire`): each a new,
   signed ``customer.subscription.updated`` for one account, every account at once (the ledger
   insert; then the worker re-reads the customer from the stand-in), ``--pause`` seconds apart
   (the target's case: 50 concurrent deliveries), then again back to back (sustained load: the
   handling competes with the next burst; reported without a target). Latency per delivery as
   the sender sees it (what Stripe's timeout counts) and as the server's access log records
   it; CPU per delivery includes its handling, every event being waited for in the ledger,
   handled.
3. **Page.** ``--requests`` sequential GETs of ``/app/billing`` after five unmeasured; server
   time from the access log, client wall time beside it.

    .venv/bin/python scripts/bench_billing.py                   # both databases
    .venv/bin/python scripts/bench_billing.py --db sqlite --rounds 5 --json out.json
    .venv/bin/python scripts/bench_billing.py --db postgresql --shape api+worker
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cloud"))
import bench_server as srv
import benchkit
from bench_cloud import EXE
from bench_web import ROOT, Server, pct, server_env
from standins.stripe import KEY, PRICE, WEBHOOK_SECRET, StripeStandIn, sign

WEBHOOK_TARGET_MS = 100.0
PAGE_TARGET_MS = 50.0
HOOK = "/v1/stripe/webhook"


def seed(env: dict[str, str], server: Server, n: int) -> tuple[list[str], dict[str, str]]:
    """``n`` free accounts with a customer each (through the API); their tokens and one
    account's browser cookie."""
    from claude_notify.cloud.server import auth
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings
    from claude_notify.cloud.server.web import security
    from claude_notify.cloud.server.web.models import WebSession
    from claude_notify.events import utcnow

    runtime = Runtime.build(Settings.from_env(env).validate())
    tokens: list[str] = []
    try:
        with runtime.sessions.begin() as db:
            for i in range(n):
                user, issued = auth.create_user(db, f"bill-{i}-{uuid.uuid4().hex[:6]}@example.com")
                tokens.append(issued.secret)
                if i == 0:
                    secret, now = uuid.uuid4().hex + uuid.uuid4().hex, utcnow()
                    db.add(WebSession(user_id=user.id, secret_hash=security.digest(secret),
                                      form_token=uuid.uuid4().hex, client_ip="127.0.0.1",
                                      created_at=now, last_seen_at=now,
                                      expires_at=now + timedelta(days=1)))
    finally:
        runtime.close()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for token in tokens:
            made = client.post("/v1/billing/checkout",
                               headers={"Authorization": f"Bearer {token}"})
            if made.status_code != 200:
                raise SystemExit(f"bench_billing: checkout answered {made.status_code}: "
                                 f"{made.text[:200]}")
    return tokens, {security._COOKIE: secret}


def _unhandled(env: dict[str, str]) -> int:
    from sqlalchemy import create_engine, func, select

    from claude_notify.cloud.server.billing.models import BillingEvent
    from claude_notify.cloud.server.settings import Settings

    engine = create_engine(Settings.from_env(env).sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(BillingEvent).where(
                BillingEvent.processed_at.is_(None))).scalar_one())
    finally:
        engine.dispose()


_SOCKETS: list[socket.socket] = []


def fire(url: str, signed: list[tuple[bytes, str]]) -> list[tuple[int, float]]:
    """In the sender process: write every delivery at once on its own kept-open connection,
    as Stripe's concurrent deliveries arrive; each one's status and milliseconds as the
    sender sees them.

    Raw sockets and pre-built requests, in a process of its own: an HTTP client library's
    own CPU for 50 requests (~1 ms each with httpx, one interpreter) and the stand-in answering
    the worker's re-reads in the script's process were counted as the server's latency.
    """
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    while len(_SOCKETS) < len(signed):
        _SOCKETS.append(socket.create_connection(address))
    requests = [(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Content-Type: application/json; charset=utf-8\r\n"
                 f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
                 ).encode() + body for body, signature in signed]
    started: dict[int, float] = {}
    with selectors.DefaultSelector() as selector:
        for i, (sock, request) in enumerate(zip(_SOCKETS, requests, strict=False)):
            started[i] = time.perf_counter()
            sock.sendall(request)
            selector.register(sock, selectors.EVENT_READ, [i, b""])
        results: dict[int, tuple[int, float]] = {}
        while len(results) < len(requests):
            for key, _ in selector.select(timeout=30):
                state = key.data
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not chunk:
                    raise SystemExit("bench_billing: the server closed a connection")
                state[1] += chunk
                head, sep, rest = state[1].partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
                if len(rest) >= length:
                    results[state[0]] = (int(head.split(b" ", 2)[1]),
                                         (time.perf_counter() - started[state[0]]) * 1000)
                    selector.unregister(key.fileobj)
    return [results[i] for i in range(len(requests))]


def bench_webhook(report: benchkit.Report, server: Server, stripe: StripeStandIn,
                  env: dict[str, str], *, label: str, rounds: int, concurrency: int,
                  pause: float, workers: list[int]) -> None:
    subs = [stripe.subscribe(customer) for customer in list(stripe.customers)[:concurrency]]
    if len(subs) < concurrency:
        raise SystemExit("bench_billing: fewer accounts than concurrent deliveries")
    walls: list[float] = []
    mark = len(server.access)
    cpu = benchkit.TreeCPU([server.proc.pid, *workers])
    cpu.snapshot()
    with multiprocessing.get_context("spawn").Pool(1) as sender:
        for r in range(rounds + 1):  # the first round warms up (imports, connections)
            bodies = [json.dumps(stripe.event("customer.subscription.updated", s),
                                 indent=2).encode() for s in subs]
            results = sender.apply(fire, (server.url + HOOK, [(b, sign(b)) for b in bodies]))
            time.sleep(pause)
            if any(status != 200 for status, _ in results):
                raise SystemExit(f"bench_billing: the webhook answered {results}")
            if r == 0:
                mark = len(server.access)
                cpu.snapshot()
            else:
                walls += [ms for _, ms in results]
    n = rounds * concurrency
    server_ms = server.server_ms(mark, n, HOOK)
    deadline = time.monotonic() + 120
    while _unhandled(env):
        if time.monotonic() > deadline:
            raise SystemExit("bench_billing: events were not all handled in 120 s")
        time.sleep(0.2)
    kind = f"bursts {pause:g} s apart" if pause else "back to back, sustained"
    report.add(f"webhook, {concurrency} concurrent deliveries, {kind} ({label}): sender p99",
               pct(walls, 0.99), "ms", cpu.seconds() * 1000 / n, "delivery",
               target=f"p99 ≤ {WEBHOOK_TARGET_MS:.0f} ms" if pause else "",
               met=pct(walls, 0.99) <= WEBHOOK_TARGET_MS if pause else None,
               note=f"p50 {pct(walls, 0.5):.1f} ms over {n}; server p99 "
                    f"{pct(server_ms, 0.99):.1f} ms; CPU includes the handlers' re-reads")


def bench_page(report: benchkit.Report, server: Server, cookie: dict[str, str], *, label: str,
               requests: int) -> None:
    with httpx.Client(base_url=server.url, cookies=cookie, timeout=30) as client:
        for _ in range(5):
            client.get("/app/billing")
        mark = len(server.access)
        walls = []
        for _ in range(requests):
            started = time.perf_counter()
            page = client.get("/app/billing")
            walls.append((time.perf_counter() - started) * 1000)
            if page.status_code != 200 or 'id="plan"' not in page.text:
                raise SystemExit(f"bench_billing: /app/billing answered {page.status_code}")
    logged = server.server_ms(mark, requests, "/app/billing")
    report.add(f"GET /app/billing ({label}): server p99", pct(logged, 0.99), "ms",
               target=f"p99 ≤ {PAGE_TARGET_MS:.0f} ms", met=pct(logged, 0.99) <= PAGE_TARGET_MS,
               note=f"median {pct(logged, 0.5):.1f} ms; client p99 {pct(walls, 0.99):.1f} ms")


def bench_database(report: benchkit.Report, args: argparse.Namespace, kind: str,
                   shape: str) -> None:
    scratch = None
    with tempfile.TemporaryDirectory(prefix="bench-billing-", ignore_cleanup_errors=True) as tmp, \
            StripeStandIn() as stripe:
        assert isinstance(stripe, StripeStandIn)  # noqa: S101 - for the type checker
        stripe.record = False  # memory stays flat
        try:
            if kind == "postgresql":
                scratch, url = srv.create_scratch_database(args.pg_admin_url)
            else:
                url = f"sqlite:///{tmp}/billing.db"
            env = server_env(url)
            label = f"{kind}, {shape}"
            if shape == "api+worker":
                env["REDIS_URL"] = args.redis_url  # wakes the worker; the API runs none
            env.update({"CLAUDE_NOTIFY_SERVER_STRIPE_SECRET_KEY": KEY,
                        "CLAUDE_NOTIFY_SERVER_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "CLAUDE_NOTIFY_SERVER_STRIPE_PRICE_ID": PRICE,
                        "CLAUDE_NOTIFY_SERVER_STRIPE_API_BASE": stripe.base_url})
            server = Server(env)
            workers = [subprocess.Popen([EXE, "server", "worker"], env=env, cwd=ROOT,
                                        stderr=subprocess.DEVNULL)
                       for _ in range(shape == "api+worker")]
            try:
                _, cookie = seed(env, server, args.accounts)
                for pause in (args.pause, 0.0):
                    bench_webhook(report, server, stripe, env, label=label, rounds=args.rounds,
                                  concurrency=args.concurrency, pause=pause,
                                  workers=[w.pid for w in workers])
                bench_page(report, server, cookie, label=label, requests=args.requests)
            finally:
                srv.stop_processes(workers)
                server.stop()
        finally:
            if scratch:
                srv.drop_scratch_database(args.pg_admin_url, scratch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where the scratch database is created (and dropped)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the API + worker shape's Redis (queues named per database)")
    parser.add_argument("--shape", choices=["one-process", "api+worker", "both"],
                        default="both", help="api+worker runs on PostgreSQL only")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="bursts measured")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between bursts (then again with none: sustained)")
    parser.add_argument("--requests", type=int, default=200, help="page GETs measured")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with benchkit.reporting("billing", args.json) as report:
        for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            for shape in ("one-process", "api+worker"):
                if args.shape in (shape, "both") and (shape, kind) != ("api+worker", "sqlite"):
                    bench_database(report, args, kind, shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
