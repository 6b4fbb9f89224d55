"""What the opt-in cloud costs a wrapped command: `claude-notify run -- true` with the cloud on,
the server on loopback, against `--no-cloud`; and with the server down.

Starts a real `claude-notify server` (SQLite) on a free port, logs a scratch user in with an
operator token, then times the three cases interleaved. Targets: ≤ 30 ms more with the server up,
≤ 50 ms more with it down (median).

    .venv/bin/python scripts/bench_cloud.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("claude-notify"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("bench_cloud: the server did not start")


def wait_for_syncs(timeout: float = 20.0) -> None:
    """Until no detached `claude_notify.cloud.sync` process is left."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any("claude_notify.cloud.sync" in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"])):
            return
        time.sleep(0.01)


def timed(args: list[str], env: dict[str, str], *, settle: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([EXE, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - start) * 1000
    if settle is not None:  # let the detached sync finish, so it cannot slow the next run
        deadline = time.monotonic() + 20
        while any(settle.glob("*.json*")) and time.monotonic() < deadline:
            time.sleep(0.01)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--stream-seconds", type=float, default=60.0,
                        help="how long the --stream case writes its 100 MB (0 skips it)")
    opts = parser.parse_args()
    runs = opts.runs
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/server.db",
                      "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                      "CLAUDE_NOTIFY_SERVER_LOG_KEYS":
                          "k1:YmVuY2gtbG9nLWtleS0zMi1ieXRlcy1sb25nLW9rISE="}
        server = subprocess.Popen([EXE, "server", "--port", str(port)], env=server_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            wait_up(url)
            token = subprocess.run([EXE, "server", "create-user", "bench@example.com"],
                                   env=server_env, capture_output=True, check=True,
                                   text=True).stdout.strip()
            env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")
                   and k != "PYTHONDONTWRITEBYTECODE"}  # an install has its bytecode built
            env.update({"CLAUDE_NOTIFY_STATE_DIR": f"{tmp}/state",
                        "CLAUDE_NOTIFY_DATA_DIR": f"{tmp}/data",
                        "CLAUDE_NOTIFY_CONFIG": f"{tmp}/config.toml",
                        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
                        "CLAUDE_NOTIFY_QUIET": "1", "CLAUDE_NOTIFY_BACKEND": "terminal"})
            subprocess.run([EXE, "login", "--server", url, "--token"], input=token, text=True,
                           env=env, check=True, capture_output=True)
            cases = {"cloud off (--no-cloud)": ["run", "-q", "--no-cloud", "--", "true", "x"],
                     "cloud on, server up": ["run", "-q", "--", "true", "x"]}
            times: dict[str, list[float]] = {name: [] for name in cases}
            spool = Path(tmp) / "state" / "spool"
            for _ in range(3):
                timed(cases["cloud on, server up"], env, settle=spool)
            for i in range(runs):
                order = list(cases.items())
                for name, args in order[i % 2:] + order[: i % 2]:  # alternate who goes first
                    times[name].append(timed(args, env, settle=spool))
            stream_rows = (bench_stream(env, tmp, opts.stream_seconds)
                           if opts.stream_seconds else [])
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        down: list[float] = []
        off_again: list[float] = []
        for _ in range(runs):
            down.append(timed(["run", "-q", "--", "true", "x"], env))
            wait_for_syncs()  # the detached sync fails (server down); let it exit first
            off_again.append(timed(cases["cloud off (--no-cloud)"], env))
    base = statistics.median(times["cloud off (--no-cloud)"])
    up = statistics.median(times["cloud on, server up"])
    print("| case | median ms | more than cloud off |\n|---|---|---|")
    print(f"| cloud off (--no-cloud) | {base:.1f} | — |")
    print(f"| cloud on, server up | {up:.1f} | +{up - base:.1f} ms (target ≤ 30) |")
    base2 = statistics.median(off_again)
    print(f"| cloud on, server down | {statistics.median(down):.1f} | "
          f"+{statistics.median(down) - base2:.1f} ms (target ≤ 50) |")
    for row in stream_rows:
        print(row)
    return 0


WRITER = """
import os, sys, time
total, seconds = 100 * 1024 * 1024, float(sys.argv[1])
line = (b"x" * 1023) + b"\\n"
start = time.monotonic()
for i in range(total // len(line)):
    os.write(1, line)
    if i % 1024 == 0:  # pace the output over the whole duration
        ahead = start + seconds * i * len(line) / total - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
open(sys.argv[2], "w").write(f"{time.monotonic() - start:.3f}")
sys.stdout.flush()
open(sys.argv[3], "w").write(f"{time.time():.6f}")
"""


def bench_stream(env: dict[str, str], tmp: str, seconds: float) -> list[str]:
    """100 MB over `seconds`: the command's own wall time with and without --stream, and how long
    after its exit the wrapper finished uploading."""
    rows = ["", f"| --stream, 100 MB over {seconds:.0f} s | child wall s | wrapper exit after "
            "child exit |", "|---|---|---|"]
    for label, extra in (("without --stream", []), ("with --stream", ["--stream"])):
        wall, ended = Path(tmp, "wall"), Path(tmp, "ended")
        subprocess.run([EXE, "run", "-q", *extra, "--", sys.executable, "-c", WRITER,
                        str(seconds), str(wall), str(ended)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        after = time.time() - float(ended.read_text())
        rows.append(f"| {label} | {float(wall.read_text()):.2f} | {after:.2f} s |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
