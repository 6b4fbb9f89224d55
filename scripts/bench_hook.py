"""How long `claude-notify hook` keeps Claude Code waiting: stdin to exit, whole process.

Runs the real hook against a real notification daemon (Xvfb + private D-Bus + dunst from the test
harness) with a Stop payload, `UserPromptSubmit` and `Notification` payloads interleaved, and
prints the median and p95 per event. Target: median <= 150 ms.

    .venv/bin/python scripts/bench_hook.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from desktop import DesktopSession

EXE = str(Path(sys.executable).with_name("claude-notify"))


def payload(event: str, **extra: object) -> bytes:
    return json.dumps({"session_id": "bench", "transcript_path": "/nonexistent.jsonl",
                       "cwd": "/tmp/bench-project", "hook_event_name": event, **extra}).encode()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    cases = {
        "UserPromptSubmit": payload("UserPromptSubmit", prompt="go"),
        "Stop": payload("Stop", stop_hook_active=False, last_assistant_message="done"),
        "Notification": payload("Notification", message="waiting",
                                notification_type="idle_prompt"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp, DesktopSession(Path(tmp)) as desktop:
        env = {**desktop.env, "CLAUDE_NOTIFY_STATE_DIR": f"{tmp}/state",
               "CLAUDE_NOTIFY_DATA_DIR": f"{tmp}/data", "CLAUDE_NOTIFY_CONFIG": f"{tmp}/c.toml",
               "CLAUDE_NOTIFY_CLAUDE_DEBOUNCE": "0.05"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure an install, whose bytecode is built
        for _ in range(3):  # warm the page cache
            subprocess.run([EXE, "hook"], input=cases["Stop"], env=env, check=True)
        for _ in range(args.runs):
            for name, data in cases.items():  # interleaved
                start = time.perf_counter()
                subprocess.run([EXE, "hook"], input=data, env=env, check=True,
                               stdout=subprocess.DEVNULL)
                times[name].append((time.perf_counter() - start) * 1000)
    print("| hook event | median ms | p95 ms |\n|---|---|---|")
    for name, values in times.items():
        values.sort()
        p95 = values[int(len(values) * 0.95) - 1]
        print(f"| {name} | {statistics.median(values):.1f} | {p95:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
