"""Benchmark the command relay: a command posted → started on the agent, and idle agents held.

Real processes on loopback: ``claude-notify server`` (SQLite file, or ``--pg URL``), one
``claude-notify agent`` (a scratch user, allow-list ``true``), and this script.

Phase 1 posts ``--commands`` commands one after another, each to its own session (so none waits
for the previous one to finish), and reads back from the server when the agent reported each
one started: ``started_at - created_at`` (both stamped by the server: the post committed → the
agent's "started" arrived, which the agent sends just before it spawns ``claude-notify run``).
Reports p50/p99/max, and the CPU per command of every process of ours: the server (API
processes) and the agent with the ``claude-notify run`` children it reaps, from /proc.

Phase 2 (``--idle N``) opens N more agent connections (N machines, each with its own relay
token, hello sent) from this process and reports the server process's RSS before, after every
``--step`` connections, and at the end, with the cost of one connection and what 10,000 would
come to (MiB). ``--commands 0`` skips
phase 1 (the agent still runs, connected).

With ``--pg`` and ``--redis``, two API replicas run: commands are posted to one while the agent
is connected to the other.

    .venv/bin/python scripts/bench_relay.py
    .venv/bin/python scripts/bench_relay.py --idle 2000
    .venv/bin/python scripts/bench_relay.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/bench_relay.py --pg postgresql://postgres@127.0.0.1:5432/postgres \
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

CLI = [sys.executable, "-m", "claude_notify"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def start_server(tmp: Path, pg: str | None,
                 redis: str | None = None) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.update({"DATABASE_URL": pg or f"sqlite:///{tmp / 'server.db'}",
                "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                "CLAUDE_NOTIFY_SERVER_RELAY_PER_MINUTE": "1000000",
                # thousands of idle agents of one account, and events as fast as they go
                "CLAUDE_NOTIFY_SERVER_MAX_AGENTS_PER_USER": "1000000",
                "CLAUDE_NOTIFY_SERVER_MAX_SOCKETS_PER_USER": "1000000",
                "CLAUDE_NOTIFY_SERVER_EVENTS_PER_MINUTE": "0"})
    if redis:
        env["REDIS_URL"] = redis
    proc = subprocess.Popen([*CLI, "server", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait(up, 90, "the server")
    return proc, url, env


def admin(env: dict[str, str], *args: str) -> str:
    return subprocess.run([*CLI, "server", *args], env=env, capture_output=True, check=True,
                          timeout=60).stdout.decode().strip()


def user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.update({"CLAUDE_NOTIFY_CONFIG": str(home / "config.toml"),
                "CLAUDE_NOTIFY_STATE_DIR": str(home / "state"),
                "CLAUDE_NOTIFY_DATA_DIR": str(home / "data"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                "XDG_DATA_HOME": str(home / "xdg"), "CLAUDE_NOTIFY_BACKEND": "terminal",
                "CLAUDE_NOTIFY_QUIET": "1", "CLAUDE_NOTIFY_CLOUD_ENABLED": "0"})
    return env


def cli(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> None:
    subprocess.run([*CLI, *args], env=env, input=stdin, capture_output=True, check=True,
                   timeout=60)


def latency(url: str, token: str, machine: str, n: int) -> list[float]:
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    sessions = [f"bench-{i}" for i in range(n)]
    for i, session in enumerate(sessions):  # the sessions this machine's tasks ran in
        event = {"schema_version": 1, "type": "finished", "source": "run",
                 "task_id": f"seed-{i}", "event_id": f"seed-{i}", "machine_id": machine,
                 "session_id": session, "status": "success", "exit_code": 0,
                 "command": "true", "cwd": str(Path.cwd())}
        http.post("/v1/events", json=event).raise_for_status()
    out = []
    for session in sessions:
        made = http.post("/v1/commands", json={"session_id": session, "command": "true"})
        made.raise_for_status()
        path = f"/v1/commands/{made.json()['id']}"
        row = wait(lambda p=path: (r := http.get(p).json())["started_at"] and r, 30,
                   "a command to start")
        started = datetime.fromisoformat(row["started_at"])
        created = datetime.fromisoformat(row["created_at"])
        out.append((started - created).total_seconds() * 1000)
    http.close()
    return out


async def idle(url: str, token: str, n: int, server_pid: int,
               step: int) -> tuple[float, float]:
    from websockets.asyncio.client import connect

    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
    tokens = []
    for _ in range(n):
        made = await http.post("/v1/agents", json={"machine_id": f"idle-{uuid.uuid4().hex}"})
        tokens.append(made.json()["token"])
    await http.aclose()
    rss = psutil.Process(server_pid)
    before = rss.memory_info().rss / 2**20
    ws_url = url.replace("http://", "ws://") + "/v1/agent"
    conns: list[Any] = []
    for secret in tokens:
        ws = await connect(ws_url, additional_headers={"Authorization": f"Bearer {secret}"},
                           ping_interval=None, proxy=None, compression=None)
        await ws.send(json.dumps({"type": "hello", "sessions": [], "running": []}))
        conns.append(ws)
        if len(conns) % step == 0 or len(conns) == n:
            await _answered(conns[-step:])
            now = rss.memory_info().rss / 2**20
            print(f"  {len(conns)} connections: server RSS {now:.0f} MiB "
                  f"({(now - before) * 1024 / len(conns):.1f} KiB each)", flush=True)
    await _answered(conns)
    after = rss.memory_info().rss / 2**20
    for ws in conns:
        await ws.close()
    return before, after


async def _answered(conns: list[Any]) -> None:
    """Every connection answers a ping: all are registered and idle."""
    for ws in conns:
        await ws.send(json.dumps({"type": "ping"}))
    for ws in conns:
        if json.loads(await ws.recv())["type"] != "pong":
            raise SystemExit("an idle connection did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--step", type=int, default=500,
                        help="report the server's RSS every STEP idle connections")
    parser.add_argument("--pg", help="PostgreSQL admin URL: a scratch database is made there")
    parser.add_argument("--redis", help="with --pg: two API replicas woken through this Redis; "
                                        "commands go to one, the agent is on the other")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args()
    with benchkit.reporting("relay", args.json) as report:
        scratch_db(args, report)


def scratch_db(args: argparse.Namespace, report: benchkit.Report) -> None:
    database = f"cn_bench_relay_{uuid.uuid4().hex[:8]}" if args.pg else None
    if args.pg:
        import psycopg

        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _bench(args, None if not args.pg else args.pg.rsplit("/", 1)[0] + f"/{database}", report)
    finally:
        if args.pg:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """End a process group started here, however it is doing."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _bench(args: argparse.Namespace, pg: str | None, report: benchkit.Report) -> None:
    # The agent's `run` children and the servers may still be writing in the scratch directory
    # as they exit; a failing rmtree used to end the benchmark with a traceback.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as scratch:
        tmp = Path(scratch)
        server, url, server_env = start_server(tmp, pg, args.redis)
        other, agent_url = None, url
        if args.redis:
            other, agent_url, _ = start_server(tmp, pg, args.redis)
        agent = None
        try:
            token = admin(server_env, "create-user", f"bench-{uuid.uuid4().hex[:8]}@example.com",
                          "--plan", "pro")
            env = user_env(tmp / "user")
            cli(["login", "--server", agent_url, "--token"], env, stdin=token.encode() + b"\n")
            cli(["agent", "--register"], env)
            cli(["agent", "--allow", "true", "--dir", str(Path.cwd())], env)
            machine = (tmp / "user" / "state" / "machine_id").read_text().strip()
            agent = subprocess.Popen([*CLI, "agent"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
            setup = ("two replicas, PostgreSQL + Redis" if args.redis else
                     "one replica, " + ("PostgreSQL" if pg else "SQLite"))
            if args.commands:
                cpu = benchkit.TreeCPU([p.pid for p in (server, other, agent) if p is not None])
                cpu.snapshot()
                times = sorted(latency(url, token, machine, args.commands))
                cpu_ms = cpu.seconds() * 1000 / len(times)
                p50 = statistics.median(times)
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                report.add(f"command posted → started on the agent, p50 ({setup}; "
                           f"{len(times)} commands, p99 {p99:.1f} ms, max {times[-1]:.1f} ms)",
                           p50, "ms", cpu_ms, "command", "p50 ≤ 30 ms", p50 <= 30,
                           "CPU: server + agent + the `run` it starts")
            if args.idle:
                before, after = asyncio.run(idle(url, token, args.idle, server.pid,
                                                 max(1, args.step)))
                each_kib = (after - before) * 1024 / args.idle
                at_10k = before + each_kib * 10_000 / 1024
                report.add(f"{args.idle} idle agent connections on one API process: server RSS "
                           f"({before:.0f} MiB before, {each_kib:.1f} KiB each)", after, "MiB",
                           target="10,000 in ≤ 400 MiB")
                report.add("… projected to 10,000 idle agents", at_10k, "MiB",
                           target="≤ 400 MiB", met=at_10k <= 400,
                           note="measured" if args.idle >= 10_000 else
                           f"extrapolated from {args.idle}")
        finally:
            for proc in (agent, server, other):
                stop(proc)


if __name__ == "__main__":
    main()
