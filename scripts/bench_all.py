"""Run every benchmark, one after another, and write the table the README's Performance section is
copied from: ``bench-results.md`` and ``bench-results.json`` in ``--out``.

Each benchmark runs as its own subprocess with ``--json FILE``; a benchmark that fails or times
out gets a "failed" row with its one-line error and the others still run. Every row carries the
wall figure, the CPU per unit of work beside it, the target, and whether the 1-minute load average
was above the core count during that benchmark (then its wall figures are not comparable; its
CPU figures mostly are). See docs/benchmarks.md.

    .venv/bin/python scripts/bench_all.py --quick            # 11 min at load 19 on 2 cores
    .venv/bin/python scripts/bench_all.py                    # full profile: 8 min, idle 2 cores
    .venv/bin/python scripts/bench_all.py --only server-distributed,relay --out /tmp/results
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

SCRIPTS = Path(__file__).resolve().parent
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"

# name -> (script, arguments per profile). "tiny" only exists for the cheap ones (the test).
BENCHMARKS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "run": ("bench_run.py", {"quick": ["--quick", "--no-ntfy"], "full": []}),
    "hook": ("bench_hook.py", {"quick": ["--runs", "5"], "full": ["--runs", "40"]}),
    "shell": ("bench_shell.py", {
        "tiny": ["--shells", "bash", "--loops", "200", "--prompts", "0"],
        "quick": ["--loops", "500", "--prompts", "10"],
        "full": ["--loops", "2000", "--prompts", "200"]}),
    "match": ("bench_match.py", {"tiny": ["--size", "2", "--runs", "1"],
                                 "quick": ["--size", "64", "--runs", "3"],
                                 "full": ["--size", "256", "--runs", "5"]}),
    "cloud": ("bench_cloud.py", {"quick": ["--runs", "3", "--stream-seconds", "0"],
                                 "full": ["--runs", "30"]}),
    "server-embedded": ("bench_server.py", {
        "quick": ["--mode", "embedded", "--wrk-seconds", "4", "--rate", "50", "--seconds", "3"],
        "full": ["--mode", "embedded"]}),
    "server-distributed": ("bench_server.py", {
        "quick": ["--mode", "distributed", "--pg-admin-url", PG, "--redis-url", REDIS,
                  "--wrk-seconds", "4", "--rate", "50", "--seconds", "3"],
        "full": ["--mode", "distributed", "--pg-admin-url", PG, "--redis-url", REDIS]}),
    "web": ("bench_web.py", {
        "quick": ["--db", "sqlite", "--tasks", "2000", "--requests", "30", "--trials", "5",
                  "--rounds", "1", "--wrk-seconds", "3"],
        "full": ["--pg-admin-url", PG]}),
    "telegram": ("bench_telegram.py", {
        "quick": ["--chats", "50", "--burst", "400", "--rate", "50", "--seconds", "3"],
        "full": ["--pg", PG]}),
    "relay": ("bench_relay.py", {
        "quick": ["--commands", "10", "--idle", "200", "--step", "100"],
        "full": ["--commands", "200", "--idle", "10000", "--step", "1000"]}),
    "relay-replicas": ("bench_relay.py", {
        "full": ["--commands", "200", "--pg", PG, "--redis", REDIS]}),
    "approvals": ("bench_approvals.py", {"quick": ["--rounds", "20"],
                                         "full": ["--rounds", "200"]}),
}
TIMEOUT_S = {"tiny": 120.0, "quick": 300.0, "full": 3600.0}


def run_one(name: str, argv: list[str], json_path: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark; its report, or a failed one made here from its last words."""
    print(f"\n=== {name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True, cwd=SCRIPTS.parent)
    assert proc.stderr is not None  # noqa: S101 - for the type checker
    last: deque[str] = deque(maxlen=3)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        stop(proc)

    watchdog = threading.Timer(timeout, expire)  # a silent hang ends too
    watchdog.start()
    try:
        for line in proc.stderr:  # echoed as it comes, the last lines kept for the report
            sys.stderr.write(line)
            if line.strip():
                last.append(line.strip())
        proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        raise
    finally:
        watchdog.cancel()
    elapsed = time.monotonic() - started
    report: dict[str, Any] | None = None
    if json_path.exists():
        try:
            report = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError:
            report = None
    if report is None or not isinstance(report.get("results"), list):
        said = last[-1] if last else "no output"
        report = {"bench": name, "load": None, "results": [],
                  "error": f"exit {proc.returncode}, no results: {said}"}
    if timed_out.is_set():
        report["error"] = f"timed out after {timeout:.0f} s"
    report["bench"] = name
    report["elapsed_s"] = round(elapsed, 1)
    report["command"] = [Path(argv[1]).name, *argv[2:]]
    for row in report["results"]:
        row["bench"] = name
    print(f"=== {name}: {'FAILED: ' + report['error'] if report.get('error') else 'done'} "
          f"in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return report


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT first, so the benchmark's own clean-up runs (servers, scratch databases)."""
    for sig, grace in ((signal.SIGINT, 60.0), (signal.SIGTERM, 20.0), (signal.SIGKILL, 20.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true",
                       help="small sizes (11 minutes at load 19 on 2 cores; less when idle)")
    group.add_argument("--tiny", action="store_true",
                       help="a few seconds, only the benchmarks that have such a size (tests)")
    parser.add_argument("--only", help="comma-separated benchmark names: "
                                       + ", ".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=Path.cwd(),
                        help="directory for bench-results.md and .json (default: here)")
    args = parser.parse_args()
    profile = "tiny" if args.tiny else "quick" if args.quick else "full"
    names = [n for n in (args.only.split(",") if args.only else BENCHMARKS) if n]
    if unknown := [n for n in names if n not in BENCHMARKS]:
        print(f"bench_all: unknown benchmark(s): {', '.join(unknown)} "
              f"(known: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    chosen = [n for n in names if profile in BENCHMARKS[n][1]]
    if not chosen:
        print(f"bench_all: none of {', '.join(names)} has a {profile} profile", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"bench_all: cannot create {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    load = benchkit.Load.start("bench_all")
    started = time.monotonic()
    reports = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
            for name in chosen:
                script, profiles = BENCHMARKS[name]
                json_path = Path(tmp) / f"{name}.json"
                argv = [sys.executable, str(SCRIPTS / script), *profiles[profile],
                        "--json", str(json_path)]
                reports.append(run_one(name, argv, json_path, TIMEOUT_S[profile]))
    except KeyboardInterrupt:
        print("bench_all: interrupted; writing what was measured", file=sys.stderr)
    load.finish("bench_all")
    elapsed = time.monotonic() - started
    data = {"profile": profile, "elapsed_s": round(elapsed, 1), "load": load.as_dict(),
            "fields": list(benchkit.RESULT_FIELDS), "benchmarks": reports}
    benchkit.write_json(args.out / "bench-results.json", data)
    header = (f"Profile {profile}, {elapsed / 60:.1f} min, {load.cores} cores, 1-minute load "
              f"average {load.before:.1f} before and {load.after or 0:.1f} after. CPU per unit "
              "is user + system time of every process of ours per unit of work.\n\n")
    (args.out / "bench-results.md").write_text(header + benchkit.markdown(reports),
                                               encoding="utf-8")
    failed = [r["bench"] for r in reports if r.get("error")]
    print(f"\nwrote {args.out / 'bench-results.md'} and .json in {elapsed:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
