"""What ``run --match`` costs on top of plain ``run`` (targets: ≤ 20 % of passthrough throughput
for a pattern that never matches, ≤ 2× for one that matches every line).

The command is ``cat FILE`` (text lines, ``--size`` MiB) into a pipe read by ``cat > /dev/null``,
run bare, wrapped, and wrapped with each pattern. Reported per case, median of ``--runs``:

* wall seconds and MiB/s;
* CPU seconds of the wrapper alone: user+sys of the wrapped process tree from ``wait4`` minus
  the same for bare ``cat FILE``. CPU per unit of work barely moves when other work shares the
  machine; wall time does.

Targets, on the wrapper's CPU per MiB against plain ``run``: a pattern that never matches costs
≤ 20 % more, one matching every line ≤ 2×.

Usage: ``python scripts/bench_match.py [--size 256] [--runs 5] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

LINE = b"INFO 2026-12-05 14:00:00 step 12345 of 99999: loss=0.12345 lr=3e-4 ok\n"
CASES = {
    "bare cat": None,
    "run": [],
    "run --match never": ["--match", "^ERROR"],
    # "F" is on every line ("INFO"): the byte prefilter passes, the literal search does not.
    "run --match never (F)": ["--match", "^FATAL"],
    "run --match every line": ["--match", "loss="],
}


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of argv's tree)`` with stdout piped to ``cat``."""
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    consumer = subprocess.Popen(["cat"], stdin=read_fd, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_fd,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(read_fd)
    os.close(write_fd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    consumer.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of output")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args()
    with benchkit.reporting("match", args.json) as report:
        bench(args, report)


def bench(args: argparse.Namespace, report: benchkit.Report) -> None:
    cli = shutil.which("claude-notify", path=str(Path(sys.executable).parent)) or "claude-notify"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        data = Path(tmp) / "output.txt"
        block = LINE * ((1 << 20) // len(LINE) + 1)
        with data.open("wb") as out:
            written = 0
            while written < args.size << 20:
                written += out.write(block)
        mib = data.stat().st_size / (1 << 20)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLAUDE_NOTIFY_", "DBUS_", "DISPLAY", "WAYLAND"))}
        env |= {"CLAUDE_NOTIFY_STATE_DIR": f"{tmp}/state", "CLAUDE_NOTIFY_DATA_DIR": f"{tmp}/d",
                "CLAUDE_NOTIFY_CONFIG": f"{tmp}/config.toml"}
        print(f"{mib:.0f} MiB of {len(LINE)}-byte lines")
        results: dict[str, tuple[float, float]] = {}
        for label, extra in CASES.items():
            argv = (["cat", str(data)] if extra is None else
                    [cli, "run", "-q", "--on", "never", *extra, "--", "cat", str(data)])
            runs = [measure(argv, env) for _ in range(args.runs)]
            results[label] = (statistics.median(w for w, _ in runs),
                              statistics.median(c for _, c in runs))
        bare_cpu = results["bare cat"][1]
        print(f"{'case':<24} {'wall s':>7} {'MiB/s':>7} {'wrapper CPU s':>14} "
              f"{'CPU ms/MiB':>11}")
        for label, (wall, cpu) in results.items():
            own = cpu - bare_cpu if label != "bare cat" else cpu
            print(f"{label:<24} {wall:>7.3f} {mib / wall:>7.0f} {own:>14.3f} "
                  f"{own * 1e3 / mib:>11.2f}")
        base = max(1e-9, results["run"][1] - bare_cpu)
        wall, _ = results["run"]
        report.add(f"run, {mib:.0f} MiB of lines into a pipe", mib / wall, "MiB/s",
                   base * 1e3 / mib, "MiB", note=f"bare cat {mib / results['bare cat'][0]:.0f} "
                   "MiB/s; CPU is the wrapper's own (minus bare cat's)")
        for label, limit in (("run --match never", 1.2), ("run --match never (F)", 1.2),
                             ("run --match every line", 2.0)):
            own = results[label][1] - bare_cpu
            wall, _ = results[label]
            ratio = own / base
            report.add(f"{label}: wrapper CPU {ratio:.2f}× plain run, throughput "
                       f"{results['run'][0] / wall:.0%} of plain run", mib / wall, "MiB/s",
                       own * 1e3 / mib, "MiB",
                       "≤ 1.2× (≤ 20 % cost)" if limit < 2 else "≤ 2×", ratio <= limit)


if __name__ == "__main__":
    main()
