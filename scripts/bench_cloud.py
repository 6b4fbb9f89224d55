"""What the opt-in cloud costs a wrapped command: `claude-notify run -- true` with the cloud on,
the server on loopback, against `--no-cloud`; and with the server down.

Starts a real `claude-notify server` (SQLite) on a free port, logs a scratch user in with an
operator token, then times the three cases interleaved. Targets: ≤ 30 ms more with the server up,
≤ 50 ms more with it down (median). Beside each, the CPU per run of every process of ours: the
wrapper and the sync it detaches (adopted and reaped here as subreaper), and with the server up
the server's own CPU (its /proc) over the runs that reached it.

    .venv/bin/python scripts/bench_cloud.py [--runs N] [--stream-seconds S] [--json FILE]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

EXE = str(Path(sys.executable).with_name("claude-notify"))
KEEP: set[int] = set()
"""Children of ours that are not strays: the server."""


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


def timed(args: list[str], env: dict[str, str], *,
          settle: Path | None = None) -> tuple[float, float]:
    """Wall ms of one run, and CPU ms of it and of the sync it detached."""
    used = benchkit.ChildCPU()
    start = time.perf_counter()
    subprocess.run([EXE, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - start) * 1000
    if settle is not None:  # let the detached sync finish, so it cannot slow the next run
        deadline = time.monotonic() + 20
        while any(settle.glob("*.json*")) and time.monotonic() < deadline:
            time.sleep(0.01)
    benchkit.reap_strays(KEEP)
    return elapsed, used.seconds() * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--stream-seconds", type=float, default=60.0,
                        help="how long the --stream case writes its 100 MB (0 skips it)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    opts = parser.parse_args()
    with benchkit.reporting("cloud", opts.json) as report:
        bench(opts, report)
    return 0


def bench(opts: argparse.Namespace, report: benchkit.Report) -> None:
    runs = opts.runs
    benchkit.become_subreaper()
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
        KEEP.add(server.pid)
        server_cpu = benchkit.TreeCPU([server.pid])
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
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            spool = Path(tmp) / "state" / "spool"
            for _ in range(3):
                timed(cases["cloud on, server up"], env, settle=spool)
            server_cpu.snapshot()
            for i in range(runs):
                order = list(cases.items())
                for name, args in order[i % 2:] + order[: i % 2]:  # alternate who goes first
                    times[name].append(timed(args, env, settle=spool))
            # Only the cloud-on runs reach the server.
            server_ms = server_cpu.seconds() * 1000 / runs
            stream_rows, stream = (bench_stream(env, tmp, opts.stream_seconds)
                                   if opts.stream_seconds else ([], {}))
        finally:
            try:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=15)
            KEEP.discard(server.pid)
        down: list[tuple[float, float]] = []
        off_again: list[tuple[float, float]] = []
        for _ in range(runs):
            down.append(timed(["run", "-q", "--", "true", "x"], env))
            wait_for_syncs()  # the detached sync fails (server down); let it exit first
            off_again.append(timed(cases["cloud off (--no-cloud)"], env))
        benchkit.reap_strays()

    def med(samples: list[tuple[float, float]]) -> tuple[float, float]:
        return (statistics.median(w for w, _ in samples),
                statistics.median(c for _, c in samples))

    base, base_cpu = med(times["cloud off (--no-cloud)"])
    up, up_cpu = med(times["cloud on, server up"])
    report.add("run -- true, cloud off (--no-cloud)", base, "ms", base_cpu, "run")
    report.add(f"run -- true, cloud on, server up: +{up - base:.1f} ms", up, "ms",
               up_cpu + server_ms, "run", "≤ 30 ms more", up - base <= 30,
               f"CPU: wrapper + sync {up_cpu:.1f}, server {server_ms:.1f} ms/run")
    base2, _ = med(off_again)
    dn, dn_cpu = med(down)
    report.add(f"run -- true, cloud on, server down: +{dn - base2:.1f} ms", dn, "ms", dn_cpu,
               "run", "≤ 50 ms more", dn - base2 <= 50, "CPU: wrapper + the sync that fails")
    for row in stream_rows:
        print(row)
    if stream:
        (plain, _), (wall, after) = stream["without --stream"], stream["with --stream"]
        report.add(f"run --stream, 100 MB over {opts.stream_seconds:.0f} s: the command's own "
                   f"wall time (without --stream {plain:.2f} s); upload done {after:.2f} s after "
                   "it exited", wall, "s", target="within 5 %; upload ≤ 5 s",
                   met=wall <= plain * 1.05 and after <= 5)


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


def bench_stream(env: dict[str, str], tmp: str,
                 seconds: float) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """100 MB over `seconds`: the command's own wall time with and without --stream, and how long
    after its exit the wrapper finished uploading (rows to print, and by case: both figures)."""
    rows = ["", f"| --stream, 100 MB over {seconds:.0f} s | child wall s | wrapper exit after "
            "child exit |", "|---|---|---|"]
    figures: dict[str, tuple[float, float]] = {}
    for label, extra in (("without --stream", []), ("with --stream", ["--stream"])):
        wall, ended = Path(tmp, "wall"), Path(tmp, "ended")
        subprocess.run([EXE, "run", "-q", *extra, "--", sys.executable, "-c", WRITER,
                        str(seconds), str(wall), str(ended)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        benchkit.reap_strays(KEEP)
        after = time.time() - float(ended.read_text())
        rows.append(f"| {label} | {float(wall.read_text()):.2f} | {after:.2f} s |")
        figures[label] = (float(wall.read_text()), after)
    return rows, figures


if __name__ == "__main__":
    sys.exit(main())
