"""Benchmark the hosted server on this machine: ingest throughput and event-to-webhook latency.

Two set-ups, everything on loopback:

* ``--mode embedded``: the one-machine default, a SQLite file and the in-process worker;
* ``--mode distributed``: PostgreSQL, API processes and ``server worker`` processes woken
  through Redis (needs ``--database-url`` and ``--redis-url``).

Phase 1 sends ``--events`` finished events as fast as ``--concurrency`` connections allow and
reports accepted events/s. Phase 2 sends at a steady ``--rate`` for ``--seconds`` and reports
p50/p99 from posting a finished event to the webhook arriving at a local receiver.

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
) -> None:
    started = time.monotonic()
    await client.post("/v1/events", json=body)
    accepted.append(time.monotonic() - started)


async def latency(
    client: httpx.AsyncClient, receiver: Receiver, rate: float, seconds: float
) -> list[float]:
    sent: dict[str, float] = {}
    accepted: list[float] = []
    tasks = []
    interval = 1 / rate
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        body = event(f"lat-{i}")
        sent[str(body["event_id"])] = time.monotonic()
        tasks.append(asyncio.create_task(_timed_post(client, body, accepted)))
    await asyncio.gather(*tasks)
    accepted.sort()
    print(f"  POST /v1/events answered in p50 {statistics.median(accepted) * 1000:.0f} ms")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(sent) <= set(receiver.arrivals):
        await asyncio.sleep(0.05)
    missing = set(sent) - set(receiver.arrivals)
    if missing:
        print(f"  {len(missing)} webhooks never arrived within 30 s")
    return sorted(receiver.arrivals[e] - t for e, t in sent.items() if e in receiver.arrivals)


async def main(args: argparse.Namespace) -> None:
    receiver = Receiver()
    server = await receiver.start()
    scratch = None
    if args.mode == "distributed" and not args.database_url:
        scratch, args.database_url = create_scratch_database(args.pg_admin_url)
    with tempfile.TemporaryDirectory() as tmp:
        env = make_env(args, Path(tmp))
        token = prepare_database(env)
        port = free_port()
        procs = start_processes(args, env, port)
        limits = httpx.Limits(max_connections=args.concurrency)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                limits=limits,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as client:
                await wait_ready(client)
                hook = {"type": "webhook", "config": {"url": f"http://127.0.0.1:{receiver.port}/"}}
                (await client.post("/v1/channels", json=hook)).raise_for_status()
                print(
                    f"== {args.mode}: {args.api_processes} API process(es)"
                    + (f", {args.workers} worker(s)" if args.mode == "distributed" else "")
                )
                base_url = f"http://127.0.0.1:{port}"
                if args.generator == "wrk":
                    rate, sent = await asyncio.to_thread(
                        throughput_wrk, base_url, token, args.wrk_seconds, Path(tmp),
                        args.wrk_connections,
                    )
                    print(f"  accepted {rate:.0f} events/s over {args.wrk_seconds:.0f} s "
                          f"(wrk, {args.wrk_connections} connections)")
                else:
                    rate, sent = await asyncio.to_thread(
                        throughput_processes, base_url, token, args.events, args.generators
                    )
                    print(
                        f"  accepted {args.events} events at {rate:.0f} events/s "
                        f"({args.generators} generator processes)"
                    )
                drained = await drain(receiver, sent)
                print(f"  all {sent} webhooks delivered {drained:.1f} s after the last post")
                receiver.arrivals.clear()
                samples = await latency(client, receiver, args.rate, args.seconds)
                if samples:
                    p50 = statistics.median(samples) * 1000
                    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
                    print(
                        f"  at {args.rate:.0f} events/s: event → webhook p50 {p50:.0f} ms, "
                        f"p99 {p99:.0f} ms over {len(samples)} events"
                    )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
            server.close()
            if scratch:
                drop_scratch_database(args.pg_admin_url, scratch)
                forget_wake_queue(args.redis_url, args.database_url)


if __name__ == "__main__":
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
    asyncio.run(main(parser.parse_args()))
