"""``watch`` on real processes, and the history under many concurrent writers."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from desktop import DesktopSession
from helpers import CLI, cli_env, run_cli

from claude_notify import history
from claude_notify.events import TaskEvent, new_id, utcnow


@pytest.mark.desktop
def test_watch_notifies_when_a_process_ends(desktop: DesktopSession, tmp_path: Path) -> None:
    env = cli_env(tmp_path, desktop.env)
    gate = tmp_path / "gate"
    target = subprocess.Popen([sys.executable, "-c",
                               "import os, time\n"
                               f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n"],
                              start_new_session=True)
    mark = desktop.marker()
    with subprocess.Popen([*CLI, "watch", str(target.pid)], env=env,
                          stderr=subprocess.PIPE) as watcher:
        assert watcher.stderr is not None
        line = watcher.stderr.readline().decode()
        assert line.startswith(f"watching {target.pid}: {sys.executable} -c ")
        gate.touch()
        target.wait(timeout=10)
        assert watcher.wait(timeout=10) == 0
    got = desktop.wait_for(since=mark)
    assert got["summary"].startswith(f"■ {Path(sys.executable).name}") or "ended" in got[
        "summary"]
    assert " · ended · " in got["summary"]
    recorded = json.loads(run_cli(["history", "--json"], env=env).stdout.splitlines()[0])
    assert (recorded["source"], recorded["status"], recorded["exit_code"]) == (
        "watch", "ended", None)


def test_watch_by_name_and_errors(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never")
    marker = f"cn-watch-{new_id()}"
    # The target ends when told to, once the watcher says it found it: a fixed sleep lost the
    # race to a slow interpreter start on a loaded machine.
    release = tmp_path / "release"
    target = subprocess.Popen([sys.executable, "-c", "import os, sys, time\n"
                               "deadline = time.monotonic() + 60\n"
                               "while not os.path.exists(sys.argv[1]) and "
                               "time.monotonic() < deadline: time.sleep(0.02)",
                               str(release), marker])
    watcher = subprocess.Popen([*CLI, "watch", "--name", marker], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert watcher.stderr is not None
    said = watcher.stderr.readline()
    assert said.startswith(f"watching {target.pid}: ".encode()), said
    release.touch()
    target.wait(timeout=30)
    _, rest = watcher.communicate(timeout=30)
    assert watcher.returncode == 0
    assert rest.startswith(b"ended after "), rest
    for args, needle in ((["watch", "999999999"], b"no process with PID 999999999"),
                         (["watch", "--name", f"nothing-{new_id()}"], b"no running process"),
                         (["watch"], b"give PIDs or --name"),
                         (["watch", "--name", "("], b"bad regular expression")):
        result = run_cli(args, env=env)
        assert result.returncode == 2, args
        assert needle in result.stderr
        assert result.stderr.count(b"\n") == 1


def _event(i: int) -> TaskEvent:
    return TaskEvent(type="finished", source="run", task_id=new_id(), machine_id="m",
                     status="success", command=f"cmd {i}", ended_at=utcnow(), duration_s=1.0,
                     exit_code=0)


def test_history_keeps_every_record_from_concurrent_writers(tmp_path: Path) -> None:
    """Eight processes write 40 records each at once: all 320 are there, none twice."""
    code = ("import sys\nfrom claude_notify import history\n"
            "from claude_notify.events import TaskEvent, new_id, utcnow\n"
            "for i in range(40):\n"
            "    history.record(TaskEvent(type='finished', source='run', task_id=new_id(),"
            " machine_id='m', status='success', command=f'{sys.argv[1]}-{i}',"
            " ended_at=utcnow()), notified=True)\n")
    env = cli_env(tmp_path, CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{n}"], env=env)
             for n in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    entries = history.query(limit=1000, path=tmp_path / "data" / "history.sqlite3")
    commands = sorted(e.event.command for e in entries)
    assert commands == sorted(f"w{n}-{i}" for n in range(8) for i in range(40))


def test_history_is_idempotent_bounded_and_filtered(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    first = _event(0)
    history.record(first, notified=True, path=path)
    history.record(first, notified=True, path=path)  # the same event twice is one entry
    assert [e.event.event_id for e in history.query(path=path)] == [first.event_id]
    for i in range(1, 130):
        event = _event(i)
        if i % 10 == 0:
            from dataclasses import replace

            event = replace(event, status="failure", exit_code=2)
        history.record(event, notified=False, keep=60, path=path)
    entries = history.query(limit=1000, path=path)
    assert len(entries) == 60
    assert entries[0].event.command == "cmd 129"
    failed = history.query(limit=1000, failed=True, path=path)
    assert failed and all(e.event.status == "failure" for e in failed)


def test_history_and_show_commands(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never",
                  CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"))
    assert run_cli(["run", "--log", str(tmp_path / "l.log"), "--", "sh", "-c",
                    "echo out; exit 3"], env=env).returncode == 3
    listed = run_cli(["history"], env=env).stdout.decode()
    assert "exit 3" in listed and "sh -c 'echo out; exit 3'" in listed
    entry_id = listed.split()[0]
    shown = run_cli(["show", entry_id], env=env).stdout.decode()
    assert "exit code  3" in shown and f"log        {tmp_path / 'l.log'}" in shown
    assert shown.rstrip().endswith("out")
    assert run_cli(["history", "--failed", "--json"], env=env).stdout.count(b"\n") == 1
    bad = run_cli(["show", "nope"], env=env)
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1
    assert run_cli(["show", "424242"], env=env).returncode == 2


def test_history_and_show_tell_a_notification_that_did_not_show(tmp_path: Path) -> None:
    """A popup that failed is "not delivered" with why, a muted one is marked, not "notified"."""
    import re

    env = cli_env(tmp_path, CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    ran = run_cli(["run", "--backend", "dbus", "--log", "out.log", "--", "sh", "-c", "echo hi"],
                  env=env, cwd=work)
    assert ran.returncode == 0
    assert b"notification not shown (dbus: " in ran.stderr
    assert run_cli(["mute", "1h"], env=env).returncode == 0
    assert run_cli(["run", "--", "true", "x"], env=env).returncode == 0
    listed = run_cli(["history"], env=env).stdout.decode().splitlines()
    assert re.search(r"true x  \[muted until \d\d:\d\d\]$", listed[0]), listed
    assert listed[1].endswith("sh -c 'echo hi'  [not delivered]"), listed
    listed_json = run_cli(["history", "--json"], env=env).stdout
    rows = [json.loads(line) for line in listed_json.splitlines()]
    assert [row["notified"] for row in rows] == [False, False]
    shown = run_cli(["show", str(rows[1]["id"])], env=env).stdout.decode()
    assert re.search(r"^notified   no \(not delivered: dbus: .+\)$", shown, re.M), shown
    assert f"log        {work / 'out.log'}\n" in shown


def test_history_files_are_the_users_alone(tmp_path: Path) -> None:
    """Output tails are in there: the data dir is 0700 and every file 0600, whatever the umask."""
    data = tmp_path / "data"
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never", CLAUDE_NOTIFY_DATA_DIR=str(data))
    assert run_cli(["run", "--", "sh", "-c", "echo secret-ish"], env=env).returncode == 0
    assert "secret-ish" in run_cli(["history", "--json"], env=env).stdout.decode()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = sorted(data.iterdir())
    assert data / "history.sqlite3" in files
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
        f.name: 0o600 for f in files}


def test_an_existing_history_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never", CLAUDE_NOTIFY_DATA_DIR=str(data))
    assert run_cli(["run", "--", "true"], env=env).returncode == 0
    run_cli(["history"], env=env)
    data.chmod(0o755)
    for f in data.iterdir():
        f.chmod(0o644)
    assert run_cli(["run", "--", "true"], env=env).returncode == 0
    run_cli(["history"], env=env)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in data.iterdir()} == {0o600}
