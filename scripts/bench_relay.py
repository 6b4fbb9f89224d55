"""Benchmark the command relay: a command posted → started on the agent, and idle agents held.

Real processes on loopback: ``claude-notify server`` (SQLite file, or ``--pg URL``), one
``claude-notify agent`` (a scratch user, allow-list ``true``), and this script.

Phase 1 posts ``--commands`` commands one after another, each to its own session (so none waits
for the previous one to finish), and reads back from the server when the agent reported each
one started: ``started_at - created_at`` (both stamped by the server: the post committed → the
agent's "started" arrived, which the agent sends just before it spawns ``claude-notify run``).
Reports p50/p99/max.

Phase 2 (``--idle N``) opens N more agent connections (N machines, each with its own relay
token, hello sent) from this process and reports the server process's RSS before, after every
``--step`` connections, and at the end, with the cost of one connection. ``--commands 0`` skips
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
                "CLAUDE_NOTIFY_SERVER_RELAY_PER_MINUTE": "1000000"})
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
    args = parser.parse_args()
    database = f"cn_bench_relay_{uuid.uuid4().hex[:8]}" if args.pg else None
    if args.pg:
        import psycopg

        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _bench(args, None if not args.pg else args.pg.rsplit("/", 1)[0] + f"/{database}")
    finally:
        if args.pg:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _bench(args: argparse.Namespace, pg: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
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
            if args.commands:
                times = sorted(latency(url, token, machine, args.commands))
                print(f"posted → started on the agent, {len(times)} commands: "
                      f"p50 {statistics.median(times):.1f} ms, "
                      f"p99 {times[min(len(times) - 1, int(len(times) * 0.99))]:.1f} ms, "
                      f"max {times[-1]:.1f} ms")
            if args.idle:
                before, after = asyncio.run(idle(url, token, args.idle, server.pid,
                                                 max(1, args.step)))
                print(f"{args.idle} idle agent connections: server RSS "
                      f"{before:.0f} MiB → {after:.0f} MiB "
                      f"({(after - before) * 1024 / args.idle:.1f} KiB each)")
        finally:
            for proc in (agent, server, other):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)


if __name__ == "__main__":
    main()
