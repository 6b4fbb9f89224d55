"""Benchmark the hosted server on this machine: ingest throughput and event-to-webhook latency.

Two set-ups, everything on loopback:

* ``--mode embedded``: the one-machine default, a SQLite file and the in-process worker;
* ``--mode distributed``: PostgreSQL, API processes and ``server worker`` processes woken
  through Redis (needs ``--database-url`` and ``--redis-url``).

Phase 1 sends ``--events`` finished events as fast as ``--concurrency`` connections allow and
reports accepted events/s. Phase 2 sends at a steady ``--rate`` for ``--seconds`` and reports
p50/p99 from posting a finished event to the webhook arriving at a local receiver. Beside each:
the CPU per event of the API and worker processes (their /proc), plus in distributed mode the
PostgreSQL backends serving the benchmark's database (pg is local: their /proc too), counted
from the first post to the last webhook delivered. ``--json FILE`` writes the results.

    .venv/bin/python scripts/bench_server.py --mode embedded
    .venv/bin/python scripts/bench_server.py --mode distributed \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A minimal HTTP/1.1 webhook receiver on the benchmark's own event loop."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.port = free_port()

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                event_id = json.loads(body)["data"]["event_id"]
                self.arrivals.setdefault(event_id, time.monotonic())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


def start_processes(
    args: argparse.Namespace, env: dict[str, str], port: int
) -> list[subprocess.Popen[bytes]]:
    api = [
        sys.executable,
        "-m",
        "uvicorn",
        "claude_notify.cloud.server.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--workers",
        str(args.api_processes),
    ]
    procs = [subprocess.Popen(api, env=env, cwd=ROOT)]
    if args.mode == "distributed":
        worker = [
            sys.executable,
            "-c",
            "from claude_notify.cloud.server.cli import server; server(['worker'])",
        ]
        procs += [
            subprocess.Popen(worker, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            for _ in range(args.workers)
        ]
    return procs


def make_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    from claude_notify.cloud.server.logcrypt import new_key

    env = {
        **os.environ,
        "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE": "1",
        "CLAUDE_NOTIFY_SERVER_LOG_KEYS": new_key(),
        "CLAUDE_NOTIFY_SERVER_EVENTS_PER_MINUTE": "0",  # one token sends them all
    }
    if args.mode == "embedded":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
        env.pop("REDIS_URL", None)
    else:
        env["DATABASE_URL"] = args.database_url or ""
        env["REDIS_URL"] = args.redis_url
        env["CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE"] = "0"
    return env


def create_scratch_database(admin_url: str) -> tuple[str, str]:
    """A database of the benchmark's own, so shared ones are never touched."""
    import psycopg

    name = f"cn_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


def drop_scratch_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_wake_queue(redis_url: str, database_url: str) -> None:
    """Drop the scratch database's Celery queue and bindings: each run's queue has its own name."""
    import redis

    from claude_notify.cloud.server.delivery.celery_wake import queue_name

    client = redis.Redis.from_url(redis_url)
    name = queue_name(database_url)
    keys = list(client.scan_iter(match=f"*{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def prepare_database(env: dict[str, str]) -> str:
    """Migrate and create a pro user; returns its token."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    code = "\n".join(
        [
            "from claude_notify.cloud.server.cli import _ready_runtime",
            "from claude_notify.cloud.server import auth",
            "from claude_notify.cloud.server.db.migrate import migrate",
            "rt = _ready_runtime()",
            "migrate(rt.engine)",
            "with rt.sessions.begin() as s:",
            f"    u, t = auth.create_user(s, {email!r}, plan='pro')",
            "print(t.secret)",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def event(task: str) -> dict[str, object]:
    return {
        "type": "finished",
        "source": "run",
        "task_id": task,
        "machine_id": "bench",
        "status": "success",
        "exit_code": 0,
        "command": "make bench",
        "event_id": str(uuid.uuid4()),
    }


async def wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("the API did not start within 60 s")


def _generate(base_url: str, token: str, start: int, count: int) -> int:
    """One load-generator process: sequential keep-alive posts, the cheapest client there is."""
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for i in range(start, start + count):
            failures += client.post("/v1/events", json=event(f"tp-{i}")).status_code != 202
    return failures


def throughput_processes(base_url: str, token: str, n: int, processes: int) -> tuple[float, int]:
    """Events/s and events sent, from ``processes`` generator processes.

    One async client in one process would measure the client: httpx spends more CPU per request
    than the server does.
    """
    from concurrent.futures import ProcessPoolExecutor

    share = n // processes
    with ProcessPoolExecutor(processes) as pool:
        list(
            pool.map(
                _generate,
                [base_url] * processes,
                [token] * processes,
                [0] * processes,
                [1] * processes,
            )
        )  # warm the pool
        started = time.perf_counter()
        futures = [
            pool.submit(_generate, base_url, token, 10 + k * share, share) for k in range(processes)
        ]
        failures = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - started
    if failures:
        print(f"  {failures} of {n} events were not accepted")
    return share * processes / elapsed, share * processes + processes


WRK_SCRIPT = """
-- Unique events: a per-thread random prefix and a counter make every event_id (and task) new,
-- so the server never answers from its idempotency cache.
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(os.time() * 1000 + tid)
  prefix = string.format("%08x-%04x-4%03x", math.random(0, 0x7fffffff), math.random(0, 0xffff),
                         tid)
  counter = 0
  token = os.getenv("CN_TOKEN")
end
function request()
  counter = counter + 1
  local id = string.format("%s-8000-%012d", prefix, counter)
  local body = '{"type":"finished","source":"run","task_id":"tp-' .. id ..
    '","machine_id":"bench","status":"success","exit_code":0,"command":"make bench",' ..
    '"event_id":"' .. id .. '"}'
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
"""


def throughput_wrk(
    base_url: str, token: str, seconds: float, workdir: Path, connections: int
) -> tuple[float, int]:
    """Events/s accepted and events sent, with wrk as the load generator.

    wrk is C: on 2 cores it leaves the CPU to the server, where Python generators (httpx costs
    more per request than the server) would measure themselves.
    """
    import re

    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "-s", str(script), base_url]
    env = {**os.environ, "CN_TOKEN": token}
    warm = subprocess.run([*args[:3], "-d2s", *args[4:]], env=env, capture_output=True,
                          text=True, check=True).stdout
    warmed = re.search(r"(\d+) requests in", warm)
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if total is None:
        raise SystemExit(f"bench_server: cannot read wrk's output:\n{out}")
    elapsed = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(refused.group(1)) if refused else 0
    if bad:
        print(f"  {bad} of {total.group(1)} events were not accepted")
    sent = int(total.group(1))
    return (sent - bad) / elapsed, sent + (int(warmed.group(1)) if warmed else 0)


async def throughput(client: httpx.AsyncClient, n: int, concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    failures = 0

    async def sender() -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            response = await client.post("/v1/events", json=event(f"tp-{i}"))
            failures += response.status_code != 202

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        print(f"  {failures} of {n} events were not accepted")
    return n / elapsed


async def drain(receiver: Receiver, n: int) -> float:
    """Wait for the throughput phase's webhooks, so the latency phase starts on an empty queue."""
    started = time.monotonic()
    deadline = started + 300
    while len(receiver.arrivals) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _timed_post(
    client: httpx.AsyncClient, body: dict[str, object], accepted: list[float]
) -> bool:
    """Post one event; False when it was not accepted.

    A transport error is retried once on a fresh connection: a keep-alive connection the server
    closed while the pool held it idle (uvicorn drops them after 5 s, the length of a phase)
    fails with ``httpx.ReadError`` on reuse, which used to end the whole benchmark.
    """
    started = time.monotonic()
    for attempt in range(2):
        try:
            response = await client.post("/v1/events", json=body)
        except httpx.TransportError:
            if attempt:
                return False
            continue
        accepted.append(time.monotonic() - started)
        return response.status_code == 202
    return False


async def latency(
    client: httpx.AsyncClient, receiver: Receiver, rate: float, seconds: float
) -> tuple[list[float], int]:
    """Event → webhook seconds of every event delivered, and how many posts failed."""
    sent: dict[str, float] = {}
    accepted: list[float] = []
    tasks = []
    interval = 1 / rate
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        body = event(f"lat-{i}")
        sent[str(body["event_id"])] = time.monotonic()
        tasks.append((str(body["event_id"]),
                      asyncio.create_task(_timed_post(client, body, accepted))))
    failed = 0
    for event_id, task in tasks:
        if not await task:
            failed += 1
            del sent[event_id]  # no webhook to wait for
    if failed:
        print(f"  {failed} of {len(tasks)} posts failed")
    if accepted:
        accepted.sort()
        print(f"  POST /v1/events answered in p50 {statistics.median(accepted) * 1000:.0f} ms")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(sent) <= set(receiver.arrivals):
        await asyncio.sleep(0.05)
    missing = set(sent) - set(receiver.arrivals)
    if missing:
        print(f"  {len(missing)} webhooks never arrived within 30 s")
    samples = sorted(receiver.arrivals[e] - t for e, t in sent.items() if e in receiver.arrivals)
    return samples, failed


async def main(args: argparse.Namespace, report: benchkit.Report) -> None:
    receiver = Receiver()
    server = await receiver.start()
    scratch = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.mode == "distributed" and not args.database_url:
            scratch, args.database_url = create_scratch_database(args.pg_admin_url)
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            env = make_env(args, Path(tmp))
            token = prepare_database(env)
            port = free_port()
            procs = start_processes(args, env, port)
            await measure(args, report, receiver, procs, token, port, Path(tmp))
    finally:
        stop_processes(procs)
        server.close()
        if scratch:
            drop_scratch_database(args.pg_admin_url, scratch)
            forget_wake_queue(args.redis_url, args.database_url)


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


async def measure(args: argparse.Namespace, report: benchkit.Report, receiver: Receiver,
                  procs: list[subprocess.Popen[bytes]], token: str, port: int,
                  workdir: Path) -> None:
    limits = httpx.Limits(max_connections=args.concurrency)
    distributed = args.mode == "distributed"
    database = args.database_url.rsplit("/", 1)[1].split("?")[0] if distributed else ""
    backends = (benchkit.postgres_backends(args.pg_admin_url, database)
                if distributed else None)
    ours = benchkit.TreeCPU([p.pid for p in procs])  # API processes (+ workers)
    db = benchkit.TreeCPU(extra=backends)  # PostgreSQL backends of the scratch database
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=limits,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as client:
        await wait_ready(client)
        hook = {"type": "webhook", "config": {"url": f"http://127.0.0.1:{receiver.port}/"}}
        (await client.post("/v1/channels", json=hook)).raise_for_status()
        setup = (f"{args.api_processes} API process(es)"
                 + (f", {args.workers} worker(s), PostgreSQL + Redis" if distributed
                    else ", SQLite, in-process worker"))
        print(f"== {args.mode}: {setup}")
        base_url = f"http://127.0.0.1:{port}"
        ours.snapshot()
        db.snapshot()
        if args.generator == "wrk":
            rate, sent = await asyncio.to_thread(
                throughput_wrk, base_url, token, args.wrk_seconds, workdir,
                args.wrk_connections,
            )
            how = f"wrk, {args.wrk_connections} connections, {args.wrk_seconds:.0f} s"
        else:
            rate, sent = await asyncio.to_thread(
                throughput_processes, base_url, token, args.events, args.generators
            )
            how = f"{args.generators} httpx generator processes"
        drained = await drain(receiver, sent)
        # wrk counts the answers it read; posts in flight when it stopped were accepted too.
        delivered = len(receiver.arrivals)
        events = max(sent, delivered)
        # CPU per event: API (+ worker) + database, from the first post to the last webhook.
        app_ms = ours.seconds() * 1000 / max(1, events)
        db_ms = db.seconds() * 1000 / max(1, events) if distributed else 0.0
        print(f"  {delivered} webhooks delivered for {sent} answered posts, {drained:.1f} s "
              "after the last post")
        if distributed:
            report.add(f"events accepted, worker delivering ({setup}; {how})", rate, "events/s",
                       app_ms + db_ms, "event", "≥ 1,000/s, ≤ 2 ms CPU/event",
                       rate >= 1000 and app_ms + db_ms <= 2,
                       f"API + worker {app_ms:.2f} + PostgreSQL {db_ms:.2f} ms/event")
        else:
            report.add(f"events accepted ({setup}; {how})", rate, "events/s", app_ms, "event",
                       "≥ 200/s", rate >= 200)
        if delivered < sent:
            report.add("webhooks not delivered within 300 s", sent - delivered, "events")
        receiver.arrivals.clear()
        ours.snapshot()
        db.snapshot()
        samples, failed = await latency(client, receiver, args.rate, args.seconds)
        n = max(1, len(samples))
        cpu_ms = (ours.seconds() + (db.seconds() if distributed else 0.0)) * 1000 / n
        if samples:
            p50 = statistics.median(samples) * 1000
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
            report.add(f"event → webhook p50 at {args.rate:.0f} events/s (p99 {p99:.0f} ms, "
                       f"{len(samples)} events)", p50, "ms", cpu_ms, "event",
                       "p50 ≤ 100 ms, p99 ≤ 1 s", p50 <= 100 and p99 <= 1000)
        if failed:
            report.add("latency phase: posts that failed", failed, "events")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "distributed"], default="embedded")
    parser.add_argument("--database-url", help="default: a scratch database, dropped afterwards")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--generators", type=int, default=4, help="load-generator processes")
    parser.add_argument("--generator", choices=["wrk", "httpx"],
                        default="wrk" if shutil.which("wrk") else "httpx",
                        help="wrk (Debian's wrk package) or Python httpx processes")
    parser.add_argument("--wrk-seconds", type=float, default=15.0)
    parser.add_argument("--wrk-connections", type=int, default=8,
                        help="clients posting at once (each waits for its answer)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = parse_args()
    with benchkit.reporting(f"server-{ARGS.mode}", ARGS.json) as REPORT:
        asyncio.run(main(ARGS, REPORT))
