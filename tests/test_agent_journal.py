"""The agent's journal stays small and still remembers every command the server has not
acknowledged, even when the agent is killed in the middle of a rewrite."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from claude_notify.agent.store import AgentSettings, Journal
from claude_notify.agent.tunnel import Agent


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_acknowledged_commands_are_compacted_away_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent-journal.jsonl"
    journal = Journal.open(path, compact_lines=60, keep_acked=10)
    pending, acked, longest = [], [], 0
    for i in range(1000):
        cid = f"cmd-{i}"
        journal.record(cid, command=f"make part{i}", started=1.0)
        journal.record(cid, state="done", exit_code=0, detail=None)
        if i % 7:
            journal.record(cid, acked=True)
            acked.append(cid)
        else:
            pending.append(cid)
        longest = max(longest, _lines(path))
    assert longest <= max(60, 2 * (len(pending) + 10))  # bounded by what must be kept
    assert _lines(path) < 3 * 1000 / 4
    reopened = Journal.open(path)
    assert [e["id"] for e in reopened.unacknowledged()] == pending
    assert all(reopened.get(c) == {"id": c, "command": f"make part{c[4:]}", "started": 1.0,
                                   "state": "done", "exit_code": 0, "detail": None}
               for c in pending)
    kept_acked = [c for c in acked if reopened.get(c) is not None]
    assert acked[-10:] == kept_acked[-10:]
    assert len(kept_acked) < len(acked) / 2


def test_a_journal_that_only_grows_with_unacknowledged_commands_is_not_rewritten_each_time(
    tmp_path: Path
) -> None:
    path = tmp_path / "agent-journal.jsonl"
    journal = Journal.open(path, compact_lines=20, keep_acked=0)
    rewrites = 0
    for i in range(300):
        before = path.stat().st_ino if path.exists() else None
        journal.record(f"c{i}", command="true", started=1.0)
        rewrites += before is not None and path.stat().st_ino != before
    assert _lines(path) == 300 and rewrites == 0  # nothing to drop: appended, never rewritten
    assert len(Journal.open(path).entries) == 300


CHILD = """
import sys
from pathlib import Path
from claude_notify.agent.store import Journal

journal = Journal.open(Path(sys.argv[1]), compact_lines=10**9)
i = len(journal.entries)
while True:
    cid = f"live-{i}"
    journal.record(cid, command="make", started=1.0)
    print("started", cid, flush=True)
    journal.record(cid, state="done", exit_code=0)
    print("done", cid, flush=True)
    if i % 2:
        journal.record(cid, acked=True)
        print("acked", cid, flush=True)
    journal.compact()
    i += 1
"""


def test_a_kill_during_compaction_loses_no_unacknowledged_command(tmp_path: Path) -> None:
    path = tmp_path / "agent-journal.jsonl"
    seeded = Journal.open(path, compact_lines=10**9)
    for i in range(3000):  # a long journal: each rewrite takes a while
        seeded.record(f"old-{i}", command="make", started=1.0, state="failed", exit_code=2)
    facts: dict[str, set[str]] = {f"old-{i}": {"done"} for i in range(3000)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(7)
    interrupted = 0
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for _ in range(rng.randint(3, 40)):  # each line: a fact already on disk
            what, cid = child.stdout.readline().split()
            facts.setdefault(cid, set()).add(what)
        time.sleep(rng.uniform(0, 0.03))  # a kill at any point of the loop, rewrites included
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        for line in rest.splitlines():
            what, cid = line.split()
            facts.setdefault(cid, set()).add(what)
        interrupted += path.with_name(path.name + ".compacting").exists()
        reopened = Journal.open(path, compact_lines=10**9)
        for cid, seen in facts.items():
            entry = reopened.get(cid)
            if "acked" in seen:
                continue  # may be compacted away: the server will not send it again
            assert entry is not None, f"{cid} forgotten"
            assert "started" in entry
            if "done" in seen:
                assert "state" in entry
    assert interrupted >= 1, "no kill landed inside a rewrite"
    assert not path.with_name(path.name + ".compacting").exists()  # cleared on open

    # exactly once: each remembered command sent again is answered, never run
    journal = Journal.open(path)
    agent = Agent(server="http://127.0.0.1:9", token="unused", journal=journal,  # noqa: S106
                  log=lambda _: None,
                  settings=AgentSettings(enabled=True, allow=("make",), dirs=(str(tmp_path),)))
    for cid, seen in facts.items():
        if "acked" not in seen:
            agent._on_command({"type": "command", "id": cid, "command": "make",
                               "cwd": str(tmp_path), "kind": "shell"})
    assert agent.running == {}  # no worker was started for any of them
