"""deploy/compose.yaml's server services as real processes, without Docker: the commands compose
declares (read from the file, after the Dockerfile's ENTRYPOINT) run on loopback against the
local PostgreSQL and Redis, with the environment compose gives them (its ``environment`` keys
pointed at the local servers, and the values an operator's ``.env`` starts from).

What it proves: ``migrate`` migrates a fresh database and exits 0 (compose's
``service_completed_successfully``); two ``api`` replicas and one ``worker`` run together; an
event posted to replica 1 is delivered by the worker (the replicas embed no worker when
REDIS_URL is set — its metrics count the send); a relay command posted to replica 2 reaches an
agent connected to replica 1 through Redis, not the agents' poll. What it does not: images,
compose's networking, restarts (the opt-in test_deploy_docker.py runs the image).

Isolation: a database of its own, and Redis DB 11, which no other test uses (Celery's queue is
named after the database too; relay wake-ups are pub/sub, which Redis shares across DB numbers,
but they only make a replica re-read its own database).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cloud_kit import Receiver, free_port, wait_for
from conftest import empty_pg, require_redis
from deploy_kit import DEPLOY, image_entrypoint
from relay_kit import AgentProc, cli, user_env

from claude_notify.events import TaskEvent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REDIS_URL = "redis://127.0.0.1:6379/11"
SESSION = "tty:/dev/pts/7:77"
LOOPBACK = "127.0.0.1"


def services() -> dict[str, dict[str, object]]:
    parsed: dict[str, dict[str, dict[str, object]]] = yaml.safe_load(
        (DEPLOY / "compose.yaml").read_text())
    return parsed["services"]


def command(service: str, **ports: int) -> list[str]:
    """The service's argv as compose runs it in the image, with its listening options moved to
    loopback and the given ports (``port=``, ``metrics_port=``); an option named here that the
    service does not have fails, so a changed compose file changes this test."""
    entry = image_entrypoint()
    program = shutil.which(entry[0], path=str(Path(sys.executable).parent))
    assert program, f"{entry[0]} is not installed beside {sys.executable}"
    args = [str(a) for a in services()[service]["command"]]  # type: ignore[attr-defined]
    for option, value in [("--host", LOOPBACK), ("--metrics-host", LOOPBACK),
                          *((f"--{k.replace('_', '-')}", str(v)) for k, v in ports.items())]:
        if option in args:
            args[args.index(option) + 1] = value
        else:
            assert option in ("--host", "--metrics-host"), f"{service} has no {option}: {args}"
    return [program, *entry[1:], *args]


def compose_env(database_url: str, public_url: str) -> dict[str, str]:
    """What the container sees: the .env an operator copies from deploy/.env.example (its set
    lines), then compose's ``environment`` (each key must be one this test points at loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if (m := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)) is not None:
            env[m[1]] = m[2]
    local = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
    declared = services()["api"]["environment"]
    assert set(declared) == set(local), declared  # type: ignore[arg-type]
    env.update(local)
    env.update({"CLAUDE_NOTIFY_SERVER_PUBLIC_URL": public_url,
                # Test knobs: the receiver is on loopback; the agents' own poll is too slow to
                # be what delivers a command, so only the Redis wake-up can.
                "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE": "1",
                "CLAUDE_NOTIFY_SERVER_RELAY_POLL_S": "120"})
    return env


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.text()[-3000:]}"


@contextlib.contextmanager
def started(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Iterator[Proc]:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=logs,
                                start_new_session=True)
    try:
        yield Proc(name, proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A new database nothing has migrated: compose's migrate service does it."""
    require_redis(REDIS_URL)
    with empty_pg("cn_compose") as url:
        yield url


def answers(url: str, path: str) -> bool:
    try:
        return httpx.get(url + path, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def sent_by(metrics: str) -> float:
    """Webhook deliveries the worker's own /metrics counts as sent."""
    return sum(float(m[1]) for m in re.finditer(
        r'^claude_notify_notifications_total\{channel="webhook",outcome="sent"\} (\S+)$',
        metrics, re.MULTILINE))


@pytest.mark.timeout(420)
def test_compose_services_as_processes(fresh_db: str, receiver: Receiver,
                                       tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    ports = [free_port(), free_port()]
    urls = [f"http://{LOOPBACK}:{port}" for port in ports]
    metrics_port = free_port()
    env = compose_env(fresh_db, urls[0])

    migrate = subprocess.run(command("migrate"), env=env, capture_output=True, text=True,
                             timeout=180, check=False, cwd=logs)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]

    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(started(
            f"api{i + 1}", command("api", port=port),
            compose_env(fresh_db, urls[i]), logs)) for i, port in enumerate(ports)]
        worker = stack.enter_context(started(
            "worker", command("worker", metrics_port=metrics_port), env, logs))
        metrics_url = f"http://{LOOPBACK}:{metrics_port}"

        def up() -> bool:
            for proc in [*replicas, worker]:
                proc.alive()
            return all(answers(url, "/readyz") for url in urls) and answers(metrics_url,
                                                                             "/metrics")

        wait_for(up, timeout=120, what="both replicas ready and the worker's metrics")

        admin = subprocess.run([*command("migrate")[:-1], "create-user", "ops@example.com",
                                "--plan", "pro"], env=env, capture_output=True, text=True,
                               timeout=120, check=False, cwd=logs)
        assert admin.returncode == 0, admin.stderr
        token = admin.stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}

        # An event posted to replica 1 is delivered by the worker.
        channel = httpx.post(f"{urls[0]}/v1/channels", headers=auth, timeout=10,
                             json={"type": "webhook", "config": {"url": receiver.url}})
        assert channel.status_code == 201, channel.text
        event = TaskEvent(type="finished", source="run", task_id="compose-1", machine_id="m",
                          status="success", exit_code=0, command="make deploy").to_dict()
        posted = httpx.post(f"{urls[0]}/v1/events", headers=auth, json=event, timeout=10)
        assert posted.status_code in (200, 201, 202), posted.text
        (call,) = receiver.wait(1, timeout=60)
        assert b"make deploy" in call.body
        wait_for(lambda: sent_by(httpx.get(f"{metrics_url}/metrics", timeout=5).text) == 1,
                 timeout=30, what="the worker's metrics to count the send")

        # A relay command posted to replica 2 reaches the agent connected to replica 1.
        user = user_env(tmp_path / "user")
        cli(["login", "--server", urls[0], "--token"], user, stdin=token.encode() + b"\n")
        project = tmp_path / "project"
        project.mkdir()
        cli(["run", "--exec", "--", "true"], {**user, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
            cwd=project)
        cli(["sync"], user)
        wait_for(lambda: len(httpx.get(f"{urls[1]}/v1/tasks", headers=auth, timeout=10)
                             .json()["items"]) == 2, timeout=30, what="the session's task")
        cli(["agent", "--register"], user)
        cli(["agent", "--allow", "touch *", "--dir", str(project)], user)
        agent = AgentProc(user, project, tmp_path / "agent.log")
        agent.start()
        stack.callback(agent.stop)
        sent_at = time.monotonic()
        made = httpx.post(f"{urls[1]}/v1/commands", headers=auth, timeout=10,
                          json={"session_id": SESSION, "command": "touch from-replica-2"})
        assert made.status_code == 202, made.text
        wait_for(lambda: (project / "from-replica-2").exists(), timeout=60,
                 what="the command to run on the agent")
        took = time.monotonic() - sent_at
        assert took < 60, took  # the agents' own poll is 120 s here
        done = wait_for(lambda: (c := httpx.get(f"{urls[1]}/v1/commands/{made.json()['id']}",
                                                headers=auth, timeout=10).json())
                        ["state"] == "done" and c, timeout=30, what="the command's result")
        assert done["exit_code"] == 0
        assert "agent: connected" in agent.text()
        for proc in [*replicas, worker]:
            proc.alive()
    # SIGTERM drains: each exits 0 (compose's stop).
    for proc in [*replicas, worker]:
        assert proc.proc.returncode == 0, f"{proc.name}: {proc.proc.returncode}\n" \
                                          f"{proc.text()[-2000:]}"
