"""Benchmark the web app (``/app``) with a long history: the tasks page, its live poll, how soon a
finished task shows on an open dashboard, and what open dashboards cost the event ingest.

For each database (SQLite file, and a scratch PostgreSQL database dropped afterwards):

1. **Seed** ``--tasks`` tasks for one user through the server's own ingest (``record_event``,
   in this process, on the server's database): a ``started`` and a ``finished`` event each
   (some still running), over a week, four machines and hosts, four sources, varied statuses,
   commands and output tails; a webhook channel whose notifications were delivered (a few given
   up on) and is now off. A browser session is written as the sign-in would (its cookie's
   SHA-256).
   PostgreSQL is then ``ANALYZE``d, as autovacuum would be a minute later.
2. **Pages.** A real ``claude-notify server`` subprocess; ``--requests`` sequential GETs per page
   (first page, ``?status=failure``, a rare status, a machine, a machine that matches nothing,
   a keyset page ``--deep`` tasks in)
   and for the listing fragment answered 304 from its ETag (the page's poll). Server time is the
   time in the app as the server's own access log records it (``AccessLogMiddleware``, JSON on
   its stderr); the client's wall time (httpx, loopback) is beside it. CPU per request: the
   server process, plus in PostgreSQL's case the backends of the scratch database.
3. **Appearance.** A poller that behaves like the page's htmx (the same URL and ``HX-*``
   headers, ``If-None-Match`` as the browser's cache sends it, the next poll 1 s after the last
   answer was swapped in) while ``--trials`` finished events are posted at random moments; from
   ``POST /v1/events`` returning (what the CLI's send waits for) to the poller seeing the task.
4. **Ingest cost.** wrk posting events (as ``bench_server.py`` does) for ``--wrk-seconds``,
   interleaved over ``--rounds``: with no dashboard open, with ``--tabs`` dashboards of the same
   user polling (every event changes their first page, so each poll renders: the worst case),
   and against a server started without the web app mounted. Events/s and CPU per event as
   mean ± standard deviation over the rounds.

    .venv/bin/python scripts/bench_web.py                      # both databases, 10,000 tasks
    .venv/bin/python scripts/bench_web.py --db sqlite --tasks 2000 --requests 30 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_server as srv
import benchkit
from bench_cloud import EXE, wait_up

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 1.0
"""The page's ``hx-trigger="every 1s"``."""
PAGE_TARGET_MS = 50.0
PAGE_TARGET_KB = 100.0
APPEAR_TARGET_MS = 1000.0
NO_WEB = """
import sys
from claude_notify.cloud.server.web import pages
pages.install = lambda app: None  # the same server, without the web app mounted
from claude_notify.cloud.server.cli import server
server(["--port", sys.argv[1]])
"""


# -- seeding -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Seeded:
    token: str
    """The account token: ``POST /v1/events`` as the CLI sends it."""
    cookie: dict[str, str]
    """The browser's session cookie."""
    deep_cursor: str
    """The keyset cursor of the page starting ``deep`` tasks from the newest."""
    statuses: dict[str, int]


COMMANDS = ("make test", "pytest -q tests/", "npm run build", "cargo build --release",
            "docker compose up --build", "./train.py --epochs 20", "rsync -a data/ backup:data/",
            "terraform plan", "go test ./...", "claude -p 'fix the failing test'")
STATUS_WEIGHTS = {"success": 70, "failure": 20, "interrupted": 5, "ended": 2.5, "running": 1.5,
                  "needs_input": 1}


def _events(rng: random.Random, i: int, at: datetime) -> list[tuple[Any, datetime]]:
    """A task's events and when each arrived: started, then (unless still running) the end."""
    from claude_notify.events import TaskEvent

    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    machine = i % 4
    source = rng.choices(("run", "claude-code", "shell", "watch"), weights=(60, 25, 10, 5))[0]
    common = {"source": source, "task_id": uuid.uuid4().hex, "machine_id": f"machine-{machine}",
              "session_id": f"tty-{machine}-{i // 40}", "host": f"build-{machine}.example.net",
              "cwd": f"/home/dev/project-{i % 7}",
              "command": f"{rng.choice(COMMANDS)} # run {i}", "started_at": at.isoformat()}
    started = TaskEvent.from_dict({**common, "type": "started", "status": "running"})
    if status in ("running", "needs_input"):
        kind = "needs_input" if status == "needs_input" else "progress"
        later = TaskEvent.from_dict({**common, "type": kind, "status": status})
        return [(started, at), (later, at + timedelta(seconds=5))]
    took = rng.uniform(1, 1800)
    end = at + timedelta(seconds=took)
    tail = "\n".join(f"[{n:04d}] step {n} of the job: ok" for n in range(rng.randint(5, 60)))
    code = {"success": 0, "failure": rng.choice((1, 2, 127)), "interrupted": 130}.get(status)
    finished = TaskEvent.from_dict({
        **common, "type": "finished", "status": status, "ended_at": end.isoformat(),
        "duration_s": took, "exit_code": code, "tail": tail,
        "signal": "SIGINT" if status == "interrupted" else None})
    return [(started, at), (finished, end)]


def seed(env: dict[str, str], n: int, deep: int) -> Seeded:
    """``n`` tasks for a new pro user, through the ingest's own code; see the module doc."""
    from sqlalchemy import func, select, text, update

    from claude_notify.cloud.server import auth
    from claude_notify.cloud.server.api.pagination import encode_cursor
    from claude_notify.cloud.server.db.migrate import migrate
    from claude_notify.cloud.server.db.models import Channel, Delivery, Task
    from claude_notify.cloud.server.ingest import record_event
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings
    from claude_notify.cloud.server.web import security
    from claude_notify.cloud.server.web.models import WebSession
    from claude_notify.events import utcnow

    settings = Settings.from_env(env).validate()
    runtime = Runtime.build(settings)
    rng = random.Random(16)  # noqa: S311 - a reproducible history, no secret
    try:
        migrate(runtime.engine)
        with runtime.sessions.begin() as db:
            user, issued = auth.create_user(db, f"web-{uuid.uuid4().hex[:8]}@example.com",
                                            plan="pro")
            secret, now = uuid.uuid4().hex + uuid.uuid4().hex, utcnow()
            db.add(WebSession(user_id=user.id, secret_hash=security.digest(secret),
                              form_token=uuid.uuid4().hex, client_ip="127.0.0.1",
                              created_at=now, last_seen_at=now,
                              expires_at=now + timedelta(days=1)))
            db.add(Channel(user_id=user.id, type="webhook", name="ci", rules={},
                           config={"url": "http://127.0.0.1:9/hook"}))
        first = utcnow() - timedelta(minutes=n + 60)
        for start in range(0, n, 500):
            with runtime.sessions.begin() as db:
                for i in range(start, min(n, start + 500)):
                    for event, at in _events(rng, i, first + timedelta(minutes=i)):
                        record_event(db, user=user, event=event, now=at, settings=settings)
        with runtime.sessions.begin() as db:  # delivered long ago, a few given up on; the
            # channel is off now, so the ingest phase measures the ingest, not webhook retries
            db.execute(update(Channel).where(Channel.user_id == user.id).values(enabled=False))
            db.execute(update(Delivery).where(Delivery.user_id == user.id).values(
                status="sent", attempts=1, sent_at=Delivery.created_at))
            db.execute(update(Delivery).where(Delivery.user_id == user.id,
                                              Delivery.created_at < first + timedelta(days=1))
                       .values(status="dead", sent_at=None, reason="HTTP 404"))
        if runtime.engine.dialect.name == "postgresql":
            # What autovacuum does a minute after a bulk load (it is off on some test machines):
            # never analyzed, the planner takes the user's tasks for a few rows and sorts them
            # all instead of reading the newest from ix_tasks_user_created.
            with runtime.engine.begin() as conn:  # committed: a rolled-back ANALYZE is lost
                conn.execute(text("ANALYZE"))
        with runtime.sessions() as db:
            row = db.scalars(select(Task).where(Task.user_id == user.id)
                             .order_by(Task.created_at.desc(), Task.id.desc())
                             .offset(deep - 1).limit(1)).one()
            counted = db.execute(select(Task.status, func.count()).where(
                Task.user_id == user.id).group_by(Task.status)).all()
        return Seeded(token=issued.secret,
                      cookie={security._COOKIE: secret},  # the loopback cookie's name
                      deep_cursor=encode_cursor(row.created_at, row.id),
                      statuses={s: int(c) for s, c in counted})
    finally:
        runtime.close()


# -- the server and its access log -------------------------------------------------------------


class Server:
    """``claude-notify server`` on a free port; its JSON access log read as it is written."""

    def __init__(self, env: dict[str, str], *, web: bool = True) -> None:
        self.port = srv.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = ([EXE, "server", "--port", str(self.port)] if web
                else [sys.executable, "-c", NO_WEB, str(self.port)])
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.access: list[tuple[str, int, float]] = []
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        wait_up(self.url, timeout=60)

    def _read(self) -> None:
        assert self.proc.stderr is not None  # noqa: S101 - for the type checker
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:  # its banner
                continue
            if entry.get("logger") == "claude_notify.server.access":
                with self._lock:
                    self.access.append((entry["path"], entry["status"], float(entry["ms"])))
                    self._lock.notify_all()
            elif entry.get("level") in ("warning", "error", "critical"):
                sys.stderr.write(line)

    def server_ms(self, start: int, count: int, path: str) -> list[float]:
        """The app's own time of ``count`` requests to ``path`` logged from index ``start``."""
        deadline = time.monotonic() + 30
        with self._lock:
            while sum(p == path for p, _, _ in self.access[start:]) < count:
                if not self._lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise SystemExit(f"bench_web: the access log missed requests to {path}")
            return [ms for p, _, ms in self.access[start:] if p == path][:count]

    def stop(self) -> None:
        srv.stop_processes([self.proc])  # type: ignore[list-item]


def cpu_meter(server: Server, pg: tuple[str, str] | None) -> benchkit.TreeCPU:
    """The server's process tree, and with PostgreSQL the backends of the scratch database."""
    extra = benchkit.postgres_backends(*pg) if pg else None
    return benchkit.TreeCPU([server.proc.pid], extra=extra)


# -- 1: pages ------------------------------------------------------------------------------------


HTMX = {"HX-Request": "true", "HX-Target": "listing", "HX-Trigger": "listing"}


def pct(samples: list[float], q: float) -> float:
    """The nearest-rank percentile: of 20 samples, p95 is the 19th."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def bench_pages(report: benchkit.Report, server: Server, seeded: Seeded, *, label: str,
                requests: int, pg: tuple[str, str] | None, deep: int) -> None:
    rare = min(seeded.statuses, key=lambda s: seeded.statuses[s])
    cases = [("first page", {}), ("?status=failure", {"status": "failure"}),
             (f"?status={rare} ({seeded.statuses[rare]} tasks)", {"status": rare}),
             ("?machine=machine-2", {"machine": "machine-2"}),
             ("?machine=typo (no match: every task read)", {"machine": "typo"}),
             (f"keyset page {deep:,} tasks in", {"cursor": seeded.deep_cursor})]
    cpu = cpu_meter(server, pg)
    with httpx.Client(base_url=server.url, cookies=seeded.cookie, timeout=30) as client:
        for name, params in cases:
            walls, size, logged = _timed_gets(client, server, cpu, params, {}, requests, 200)
            p99 = pct(logged, 0.99)
            report.add(f"GET /app/tasks {name} ({label}): server p99", p99, "ms",
                       cpu.seconds() * 1000 / requests, "request",
                       f"p99 ≤ {PAGE_TARGET_MS:.0f} ms, ≤ {PAGE_TARGET_KB:.0f} KB",
                       p99 <= PAGE_TARGET_MS and size / 1024 <= PAGE_TARGET_KB,
                       f"p50 {statistics.median(logged):.1f} ms, client p50 "
                       f"{statistics.median(walls):.1f} ms, {size / 1024:.1f} KB, "
                       f"{requests} requests")
        listing = listing_url(client)
        first = client.get(listing, headers=HTMX)
        poll = {**HTMX, "If-None-Match": first.headers["etag"]}
        walls, _, logged = _timed_gets(client, server, cpu, listing, poll, requests, 304)
        report.add(f"listing poll answered 304 from its ETag ({label}): server p50",
                   statistics.median(logged), "ms", cpu.seconds() * 1000 / requests, "request",
                   note=f"p99 {pct(logged, 0.99):.1f} ms, client p50 "
                        f"{statistics.median(walls):.1f} ms; the fragment it saves: "
                        f"{len(first.content) / 1024:.1f} KB")


def listing_url(client: httpx.Client) -> str:
    """What the first page's listing polls, as the page says (``hx-get``)."""
    page = client.get("/app/tasks").text
    found = re.search(r'<div id="listing" hx-get="([^"]+)"', page)
    if found is None:
        raise SystemExit("bench_web: the tasks page has no polled listing (hx-get)")
    return html.unescape(found.group(1))


def _timed_gets(client: httpx.Client, server: Server, cpu: benchkit.TreeCPU,
                params: dict[str, str] | str, headers: dict[str, str], n: int,
                expect: int) -> tuple[list[float], int, list[float]]:
    """Client wall ms, the body's size and the server's own ms of ``n`` sequential GETs of
    ``/app/tasks`` with ``params`` (or of that URL), after five unmeasured ones; ``cpu`` is
    snapshot after the warm-up."""
    url, query = (params, None) if isinstance(params, str) else ("/app/tasks", params)
    for _ in range(5):
        client.get(url, params=query, headers=headers)
    cpu.snapshot()
    mark = len(server.access)
    walls, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, params=query, headers=headers)
        walls.append((time.perf_counter() - started) * 1000)
        if response.status_code != expect:
            raise SystemExit(f"bench_web: /app/tasks {params} answered "
                             f"{response.status_code}, not {expect}")
        size = len(response.content)
    return walls, size, server.server_ms(mark, n, "/app/tasks")


# -- 2: a finished task on an open dashboard -------------------------------------------------


class Dashboard:
    """An open tasks page: its htmx poll of the listing, with the browser's ETag revalidation.

    htmx swaps the answer in (a 304 reaches it as the cached 200) and the new element starts its
    own 1 s timer: the next poll goes 1 s after the previous answer.
    """

    def __init__(self, url: str, cookie: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=url, cookies=cookie, timeout=30, headers={
            **HTMX, "HX-Current-URL": f"{url}/app/tasks"})
        self.waiting: dict[str, float] = {}
        """Task key → when its event was accepted; the poller replaces it by when it was seen."""
        self.seen: dict[str, float] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        etag = None
        url = listing_url(self.client)
        while not self._stop.is_set():
            headers: dict[str, str] = {"If-None-Match": etag} if etag else {}
            try:
                response = self.client.get(url, headers=headers)
            except httpx.TransportError:
                response = None
            now = time.monotonic()
            self.polls += 1
            if response is not None and response.status_code == 200:
                etag = response.headers.get("etag")
                for key in [k for k in list(self.waiting) if k in response.text]:
                    self.seen[key] = now
            self._stop.wait(POLL_S)

    def __enter__(self) -> Dashboard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


@contextmanager
def dashboards(url: str, cookie: dict[str, str], n: int) -> Iterator[list[Dashboard]]:
    opened = [Dashboard(url, cookie) for _ in range(n)]
    for tab in opened:  # opened at different moments of the second, as people do
        tab.__enter__()
        time.sleep(POLL_S / n)
    try:
        yield opened
    finally:
        for tab in opened:
            tab.__exit__()


def bench_appearance(report: benchkit.Report, server: Server, seeded: Seeded, *, label: str,
                     trials: int) -> None:
    rng = random.Random(2)  # noqa: S311 - moments of a cycle, no secret
    waits: list[float] = []
    headers = {"Authorization": f"Bearer {seeded.token}"}
    with Dashboard(server.url, seeded.cookie) as tab, \
            httpx.Client(base_url=server.url, headers=headers, timeout=30) as cli:
        time.sleep(POLL_S * 1.5)
        for _ in range(trials):
            time.sleep(rng.uniform(0.2, 0.2 + POLL_S))  # a random moment of the poll's cycle
            body = srv.event(f"appear-{uuid.uuid4().hex}")
            cli.post("/v1/events", json=body).raise_for_status()
            tab.waiting[str(body["task_id"])] = accepted = time.monotonic()
            deadline = accepted + 10
            while str(body["task_id"]) not in tab.seen and time.monotonic() < deadline:
                time.sleep(0.005)
            seen = tab.seen.get(str(body["task_id"]))
            if seen is None:
                raise SystemExit("bench_web: a finished task did not appear within 10 s")
            waits.append((seen - accepted) * 1000)
    report.add(f"finished task on an open dashboard after POST /v1/events returned ({label}): "
               "p95", pct(waits, 0.95), "ms", target="p95 ≤ 1 s",
               met=pct(waits, 0.95) <= APPEAR_TARGET_MS,
               note=f"p50 {statistics.median(waits):.0f} ms, max {max(waits):.0f} ms, "
                    f"{trials} trials; the page polls 1 s after its last answer, so the worst "
                    "case is 1 s + one poll")


# -- 3: what open dashboards cost the ingest ---------------------------------------------------


def bench_ingest(report: benchkit.Report, env: dict[str, str], seeded: Seeded, *, label: str,
                 args: argparse.Namespace, pg: tuple[str, str] | None, workdir: Path) -> None:
    arms = {"no dashboard": (True, 0), f"{args.tabs} dashboards polling": (True, args.tabs),
            "web app not mounted": (False, 0)}
    servers = {web: Server(env, web=web) for web in (True, False)}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    try:
        for r in range(args.rounds):
            order = list(arms.items())
            for name, (web, tabs) in order[r % 3:] + order[:r % 3]:
                server = servers[web]
                cpu = cpu_meter(server, pg)
                with dashboards(server.url, seeded.cookie, tabs):
                    cpu.snapshot()
                    rate, sent = srv.throughput_wrk(server.url, seeded.token, args.wrk_seconds,
                                                    workdir, args.wrk_connections)
                    figures[name].append((rate, cpu.seconds() * 1000 / max(1, sent)))
                print(f"  round {r + 1} {name}: {rate:.0f} events/s, "
                      f"{figures[name][-1][1]:.2f} ms CPU/event", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    _report_ingest(report, figures, label=label, args=args)


def _report_ingest(report: benchkit.Report, figures: dict[str, list[tuple[float, float]]], *,
                   label: str, args: argparse.Namespace) -> None:
    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    base_rates = [rate for rate, _ in figures["no dashboard"]]
    for name, samples in figures.items():
        rates, cpus = [r for r, _ in samples], [c for _, c in samples]
        change = (statistics.mean(rates) / statistics.mean(base_rates) - 1) * 100
        note = (f"± {spread(rates):.0f} events/s, CPU ± {spread(cpus):.2f} ms; "
                f"{len(samples)} round(s) of wrk -c{args.wrk_connections} "
                f"{args.wrk_seconds:.0f} s")
        if name != "no dashboard":
            note += f"; {change:+.1f} % events/s against no dashboard"
        report.add(f"POST /v1/events, {name} ({label})", statistics.mean(rates), "events/s",
                   statistics.mean(cpus), "event", note=note)


# -- running -----------------------------------------------------------------------------------


def server_env(database_url: str) -> dict[str, str]:
    from claude_notify.cloud.server.logcrypt import new_key

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.pop("REDIS_URL", None)  # one process: the API and its embedded worker
    env.update({"DATABASE_URL": database_url, "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                "CLAUDE_NOTIFY_SERVER_LOG_KEYS": new_key(),
                "CLAUDE_NOTIFY_SERVER_EVENTS_PER_MINUTE": "0"})  # one token sends them all
    return env


def bench_database(report: benchkit.Report, args: argparse.Namespace, kind: str) -> None:
    scratch = None
    with tempfile.TemporaryDirectory(prefix="bench-web-", ignore_cleanup_errors=True) as tmp:
        try:
            if kind == "postgresql":
                scratch, url = srv.create_scratch_database(args.pg_admin_url)
            else:
                url = f"sqlite:///{tmp}/web.db"
            pg = (args.pg_admin_url, scratch) if scratch else None
            env = server_env(url)
            label = f"{kind}, {args.tasks:,} tasks"
            started = time.monotonic()
            deep = min(args.deep, max(1, args.tasks * 9 // 10))  # a full page still follows
            seeded = seed(env, args.tasks, deep)
            print(f"== {label}: seeded in {time.monotonic() - started:.0f} s: "
                  f"{seeded.statuses}", file=sys.stderr)
            server = Server(env)
            try:
                bench_pages(report, server, seeded, label=label, requests=args.requests, pg=pg,
                            deep=deep)
                if args.trials:
                    bench_appearance(report, server, seeded, label=label, trials=args.trials)
            finally:
                server.stop()
            if args.rounds:
                bench_ingest(report, env, seeded, label=kind, args=args, pg=pg,
                             workdir=Path(tmp))
        finally:
            if scratch:
                srv.drop_scratch_database(args.pg_admin_url, scratch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where the scratch database is created (and dropped)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--deep", type=int, default=9_000,
                        help="how far in the keyset page starts (tasks from the newest)")
    parser.add_argument("--requests", type=int, default=200, help="GETs per page measured")
    parser.add_argument("--trials", type=int, default=20, help="tasks watched appear (0: skip)")
    parser.add_argument("--tabs", type=int, default=5, help="dashboards polling during ingest")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the ingest comparison (0: skip it)")
    parser.add_argument("--wrk-seconds", type=float, default=8.0)
    parser.add_argument("--wrk-connections", type=int, default=8)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with benchkit.reporting("web", args.json) as report:
        for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            bench_database(report, args, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
