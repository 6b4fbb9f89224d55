"""Benchmark approvals from the phone: a press on the card → Claude Code's hook prints the answer.

Real processes on loopback: ``claude-notify server`` (SQLite file, or ``--pg URL``), the Telegram
Bot API stand-in (``tests/cloud/standins/telegram.py``) as the phone, one ``claude-notify agent``
with ``claude.approvals = "phone"``, and ``claude-notify hook`` fed a ``PermissionRequest`` as
Claude Code would. Each round starts the hook, waits for its card, then posts the owner's press
to the server's Telegram webhook and times until the hook's decision line arrives on its
stdout (press → webhook → decision → wake → tunnel → agent → socket → hook). Reports p50/p99/max
over ``--rounds`` (targets: p50 ≤ 150 ms, p99 ≤ 500 ms), plus the hook's own wall time for a
``PermissionRequest`` with no agent (target < 100 ms: the dialog decides as before), and what
the withdrawal check adds to every other hook when no agent listens (one ``stat``; the Stop
hook's own latency is ``bench_hook.py``'s).

    .venv/bin/python scripts/bench_approvals.py
    .venv/bin/python scripts/bench_approvals.py --rounds 200 --json approvals.json
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cloud"))
sys.path.insert(0, str(ROOT / "scripts"))
import benchkit  # noqa: E402
from bench_relay import admin, cli, free_port, user_env, wait  # noqa: E402

CLI = [sys.executable, "-m", "claude_notify"]
HOOK = [str(Path(sys.executable).with_name("claude-notify")), "hook"]
"""The entry script, as ``claude-notify claude install`` writes it into Claude Code's settings."""
SECRET = "bench-approvals-secret_1"  # noqa: S105 - the stand-in bot's webhook secret
OWNER, CHAT = 777, 4242


def start(tmp: Path, pg: str | None, telegram_url: str, token: str) -> tuple[Any, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.update({"DATABASE_URL": pg or f"sqlite:///{tmp / 'server.db'}",
                "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                "CLAUDE_NOTIFY_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN": token,
                "CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE": telegram_url,
                "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET": SECRET,
                "CLAUDE_NOTIFY_SERVER_RELAY_PER_MINUTE": "1000000"})
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
    proc.env = env  # type: ignore[attr-defined]
    return proc, url


def hook(env: dict[str, str], payload: dict[str, Any]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(HOOK, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None  # noqa: S101 - piped
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()
    return proc


def asking(command: str) -> dict[str, Any]:
    return {"session_id": "0b8e4a52-3c1d-4f7e-9a61-2f4d5e6c7b80", "cwd": "/srv/bench",
            "transcript_path": "/dev/null", "hook_event_name": "PermissionRequest",
            "tool_name": "Bash", "tool_input": {"command": command}}


def one_round(n: int, env: dict[str, str], url: str, telegram: Any) -> float:
    before = len(telegram.sent_to(CHAT))
    proc = hook(env, asking(f"make bench-{n}"))
    cards = wait(lambda: [m for m in telegram.sent_to(CHAT)[before:]
                          if f"make bench-{n}" in m["text"]], 30, "the card")
    data = cards[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    press = telegram.callback_query(cards[0]["message_id"], data, sender=OWNER)
    assert proc.stdout is not None  # noqa: S101 - piped
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    began = time.perf_counter()
    answered = httpx.post(f"{url}/v1/telegram/webhook", json=press, timeout=10,
                          headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    if answered.status_code != 200:
        raise SystemExit(f"the webhook answered {answered.status_code}")
    if not selector.select(timeout=30):
        raise SystemExit("the hook printed nothing within 30 s")
    line = proc.stdout.readline()
    elapsed = (time.perf_counter() - began) * 1000
    proc.wait(timeout=10)
    proc.stdout.close()
    if b'"allow"' not in line:
        raise SystemExit(f"unexpected hook output: {line[:200]!r}")
    return elapsed


def hook_wall(env: dict[str, str], payload: dict[str, Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        began = time.perf_counter()
        subprocess.run(HOOK, env=env, input=json.dumps(payload).encode(),
                       capture_output=True, check=True, timeout=30)
        out.append((time.perf_counter() - began) * 1000)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--pg", help="a PostgreSQL URL to use instead of a SQLite file")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args()
    with benchkit.reporting("approvals", args.json) as report:
        run(args, report)


def run(args: argparse.Namespace, report: benchkit.Report) -> None:
    from standins.telegram import TOKEN, TelegramStandIn
    from tg_kit import update

    telegram = TelegramStandIn(per_chat_interval_s=0)
    telegram.start()
    with tempfile.TemporaryDirectory(prefix="bench-approvals-") as scratch:
        tmp = Path(scratch)
        server, url = start(tmp, args.pg, telegram.base_url, TOKEN)
        agent = None
        try:
            token = admin(server.env, "create-user", "bench@example.com", "--plan", "pro")
            env = user_env(tmp / "home")
            (tmp / "home").mkdir()
            (tmp / "home" / "config.toml").write_text(
                '[claude]\napprovals = "phone"\napproval_timeout = "60s"\n')
            cli(["login", "--server", url, "--token"], env, stdin=token.encode() + b"\n")
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
            made = http.post("/v1/channels", json={"type": "telegram", "config": {}}).json()
            code = http.post(f"/v1/channels/{made['id']}/link").json()
            httpx.post(f"{url}/v1/telegram/webhook", json=update(code["command"], chat=CHAT),
                       headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}, timeout=10)
            wait(lambda: telegram.sent_to(CHAT), 30, "the chat to be linked")
            no_agent = hook_wall(env, asking("true"), 20)
            cli(["agent", "--register"], env)
            log = (tmp / "agent.log").open("wb")
            agent = subprocess.Popen([*CLI, "agent"], env=env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            wait((tmp / "home" / "state" / "agent.sock").exists, 30, "the agent's socket")
            wait(lambda: b"agent: connected" in (tmp / "agent.log").read_bytes(), 30,
                 "the agent to connect")
            one_round(-1, env, url, telegram)  # warm-up
            times = [one_round(n, env, url, telegram) for n in range(args.rounds)]
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(timeout=15)
            server.terminate()
            server.wait(timeout=30)
            telegram.stop()
    p50, p99 = statistics.median(times), quantile(times, 0.99)
    report.add("press → hook prints the decision, p50", p50, "ms", target="≤ 150 ms",
               met=p50 <= 150, note=f"{len(times)} presses, SQLite" if not args.pg else "PG")
    report.add("press → hook prints the decision, p99", p99, "ms", target="≤ 500 ms",
               met=p99 <= 500)
    report.add("press → hook prints the decision, max", max(times), "ms")
    wall = statistics.median(no_agent)
    report.add("PermissionRequest hook with no agent, median (whole process)", wall, "ms",
               target="< 100 ms", met=wall < 100)
    report.add("what approvals add to every other hook (Stop, PostToolUse…; no agent)",
               withdraw_cost(), "ms", note="in-process; the Stop hook itself: bench_hook.py")


def withdraw_cost() -> float:
    """In-process: the withdrawal check every Stop, PostToolUse… hook now makes."""
    import timeit

    from claude_notify.claude import approval

    payload = {"hook_event_name": "Stop", "session_id": "s"}
    env = {"CLAUDE_NOTIFY_AGENT_SOCKET": "/nonexistent/agent.sock"}
    runs = 2000
    return timeit.timeit(lambda: approval.withdraw(payload, env), number=runs) * 1000 / runs


if __name__ == "__main__":
    main()
