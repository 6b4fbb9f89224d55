"""Benchmark Telegram delivery: one delivery worker process against the Telegram stand-in.

Three processes on loopback: the Bot API stand-in (``tests/cloud/standins/telegram.py``, its
per-chat rate limit switched off), one delivery worker (the same ``Worker`` the server runs),
and this script, which writes outbox rows the way ingest does (a notification per linked chat,
spread over ``--chats`` chats) and reads back when each message reached the stand-in.

Phase 1 writes ``--burst`` rows at once and reports how fast the worker drains them
(notifications/s). Phase 2 writes at a steady ``--rate`` for ``--seconds`` and reports the added
latency of each notification: from its outbox row being written to the stand-in receiving its
``sendMessage`` (claim, render, HTTP); p50/p99/max. Beside each, the worker process's CPU per
notification (its /proc), plus with ``--pg`` the CPU of the PostgreSQL backends serving the
scratch database. ``--json FILE`` writes the results.

    .venv/bin/python scripts/bench_telegram.py                       # SQLite file
    .venv/bin/python scripts/bench_telegram.py --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cloud"))
sys.path.insert(0, str(ROOT / "scripts"))
import benchkit  # noqa: E402

TOKEN = "123456:BENCH-token"  # noqa: S105 - the stand-in's test bot
_ID = re.compile(r"bench-(\d+)")


def run_standin(port_out: Any, stop: Any, received: Any, results: Any) -> None:
    from standins.telegram import TelegramStandIn

    arrivals: list[tuple[int, float]] = []

    class Timed(TelegramStandIn):
        def handle(self, request: Any) -> Any:
            answer = super().handle(request)
            if answer[0] == 200 and (m := _ID.search(request.displayed["text"])):
                arrivals.append((int(m.group(1)), time.time()))
                with received.get_lock():
                    received.value += 1
            return answer

    standin = Timed(token=TOKEN, per_chat_interval_s=0)
    standin.record = False
    standin.start()
    port_out.put(standin.base_url)
    stop.wait()
    standin.stop()
    results.put(arrivals)


def run_worker(settings_values: dict[str, Any], stop: Any) -> None:
    from claude_notify.cloud.server.delivery.worker import Worker
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings

    runtime = Runtime.build(Settings(**settings_values))

    async def go() -> None:
        async with Worker(runtime).running():
            while not stop.is_set():
                await asyncio.sleep(0.05)

    if profile := os.environ.get("BENCH_PROFILE"):  # where the worker spends its time
        import cProfile

        cProfile.runctx("asyncio.run(go())", globals(), locals(), profile)
    else:
        asyncio.run(go())
    runtime.close()


def prepare(url: str, chats: int, events: int) -> tuple[Any, uuid.UUID, list[uuid.UUID], list[Any]]:
    """Migrate, then one pro user with ``chats`` linked Telegram chats and ``events`` events."""
    from sqlalchemy import insert

    from claude_notify.cloud.server.auth import create_user
    from claude_notify.cloud.server.db.engine import make_engine, make_sessionmaker
    from claude_notify.cloud.server.db.migrate import migrate
    from claude_notify.cloud.server.db.models import Channel, Event, Task
    from claude_notify.events import TaskEvent, utcnow

    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        user, _ = create_user(session, f"bench-{uuid.uuid4().hex[:6]}@example.com", plan="pro")
        user_id = user.id
        task = Task(id=uuid.uuid4(), user_id=user_id, key="bench", cmd="bench", status="success")
        session.add(task)
        session.flush()
        channel_rows = [
            {"id": uuid.uuid4(), "user_id": user_id, "type": "telegram", "name": f"chat {i}",
             "config": {"chat_id": 10_000 + i}, "rules": {"on": ["finished"], "regex": None},
             "enabled": True, "verified_at": utcnow()}
            for i in range(chats)
        ]  # fmt: skip
        session.execute(insert(Channel), channel_rows)
        event_rows = []
        for i in range(events):
            payload = TaskEvent(
                type="finished", source="run", task_id="bench", machine_id="m",
                status="success", command=f"bench-{i:06d}", host="bench-host", exit_code=0,
                duration_s=1.5, tail="ok\n" * 20,
            ).to_dict()  # fmt: skip
            event_rows.append(
                {
                    "id": uuid.uuid4(),
                    "user_id": user_id,
                    "task_id": task.id,
                    "event_id": payload["event_id"],
                    "type": "finished",
                    "status": "success",
                    "payload": payload,
                }
            )
        session.execute(insert(Event), event_rows)
        task_id = task.id
    outbox_events = [(task_id, e["id"]) for e in event_rows]
    return sessions, user_id, [c["id"] for c in channel_rows], outbox_events


def enqueue(sessions: Any, user_id: uuid.UUID, items: list[tuple[uuid.UUID, Any]]) -> float:
    """Write outbox rows (channel, (task, event)) in one transaction; returns the wall time."""
    from sqlalchemy import insert

    from claude_notify.cloud.server.db.models import Delivery
    from claude_notify.events import utcnow

    now = utcnow()
    rows = [
        {"id": uuid.uuid4(), "user_id": user_id, "task_id": task_id, "event_row_id": event_id,
         "channel_id": channel_id, "channel_type": "telegram", "kind": "event",
         "status": "pending", "next_attempt_at": now, "created_at": now}
        for channel_id, (task_id, event_id) in items
    ]  # fmt: skip
    with sessions.begin() as session:
        session.execute(insert(Delivery), rows)
    return now.timestamp()


def wait_count(received: Any, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while received.value < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {received.value}/{n} delivered")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", help="PostgreSQL admin URL: a scratch database is made there")
    parser.add_argument("--chats", type=int, default=250)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=220.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args()
    with benchkit.reporting("telegram", args.json) as report:
        scratch_db(args, report)


def scratch_db(args: argparse.Namespace, report: benchkit.Report) -> None:

    scratch = None
    if args.pg:
        import psycopg

        scratch = f"bench_tg_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{scratch}"')
        url = args.pg.rsplit("/", 1)[0] + "/" + scratch
        sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    else:
        tmp = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
        sa_url = url
    steady_n = int(args.rate * args.seconds)
    try:
        run(args, url, sa_url, steady_n, report, scratch)
    finally:
        if not args.pg:
            tmp.cleanup()
        if scratch and args.pg:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def run(args: argparse.Namespace, url: str, sa_url: str, steady_n: int,
        report: benchkit.Report, scratch: str | None) -> None:
    sessions, user_id, channels, events = prepare(sa_url, args.chats, args.burst + steady_n)
    ctx = mp.get_context("spawn")
    stop, received, results, port_q = ctx.Event(), ctx.Value("i", 0), ctx.Queue(), ctx.Queue()
    standin = ctx.Process(target=run_standin, args=(port_q, stop, received, results))
    standin.start()
    base = port_q.get(timeout=20)
    worker_settings = {
        "database_url": url, "auto_migrate": False, "embedded_worker": False,
        "telegram_api_base": base, "telegram_bot_token": TOKEN, "app_url": "https://app.example",
        "worker_poll_s": 0.005, "worker_concurrency": args.concurrency, "lease_s": 60.0,
    }  # fmt: skip
    worker = ctx.Process(target=run_worker, args=(worker_settings, stop))
    worker.start()
    cpu = benchkit.TreeCPU([worker.pid or 0], extra=(
        benchkit.postgres_backends(args.pg, scratch) if args.pg and scratch else None))
    try:
        # Warm-up: the worker imports, connects and opens its HTTP connections.
        items = [(channels[i % len(channels)], events[i]) for i in range(args.burst + steady_n)]
        warm = 50
        enqueue(sessions, user_id, items[:warm])
        wait_count(received, warm, 60)

        cpu.snapshot()
        start = enqueue(sessions, user_id, items[warm : args.burst])
        wait_count(received, args.burst, 120)
        burst_s = time.time() - start
        burst_rate = (args.burst - warm) / burst_s
        burst_cpu_ms = cpu.seconds() * 1000 / (args.burst - warm)
        cpu.snapshot()

        written: dict[int, float] = {}
        t0 = time.monotonic()
        sent = args.burst
        total = args.burst + steady_n
        while sent < total:
            due = args.burst + int((time.monotonic() - t0) * args.rate)
            if due > sent:
                batch = items[sent : min(due, total)]
                stamp = enqueue(sessions, user_id, batch)
                for k in range(sent, sent + len(batch)):
                    written[k] = stamp
                sent += len(batch)
            time.sleep(0.002)
        steady_s = time.monotonic() - t0
        wait_count(received, total, 120)
        steady_cpu_ms = cpu.seconds() * 1000 / max(1, steady_n)
    finally:
        stop.set()
        arrivals = dict(results.get(timeout=30))
        standin.join(timeout=10)
        worker.join(timeout=30)
        for proc in (standin, worker):
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
    lat = sorted((arrivals[k] - written[k]) * 1000 for k in written)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"database: {'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}, "
          f"{len(channels)} chats, worker concurrency {args.concurrency}")  # fmt: skip
    print(f"burst: {args.burst - warm} notifications in {burst_s:.2f}s = {burst_rate:.0f}/s")
    print(f"steady: {steady_n} at {steady_n / steady_s:.0f}/s offered over {steady_s:.1f}s")
    print(f"  added latency ms: p50 {statistics.median(lat):.1f}  p99 {p(0.99):.1f}  "
          f"max {lat[-1]:.1f}")  # fmt: skip
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    setup = f"{database}, {len(channels)} chats, {args.concurrency} in flight"
    cpu_what = "worker" + (" + PostgreSQL backends" if args.pg else "")
    report.add(f"burst drained by one worker ({setup})", burst_rate, "notifications/s",
               burst_cpu_ms, "notification", "≥ 200/s", burst_rate >= 200, f"CPU: {cpu_what}")
    report.add(f"added latency p50 at {steady_n / steady_s:.0f}/s (p99 {p(0.99):.1f} ms, "
               f"max {lat[-1]:.1f} ms)", statistics.median(lat), "ms", steady_cpu_ms,
               "notification", "p99 ≤ 50 ms", p(0.99) <= 50, f"CPU: {cpu_what}")


if __name__ == "__main__":
    main()
