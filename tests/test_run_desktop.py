"""``claude-notify run`` end to end against a real notification daemon on a real D-Bus.

Each test runs the real CLI as a subprocess and reads back what dunst received.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from desktop import DesktopSession
from helpers import CLI, cli_env, run_cli

pytestmark = pytest.mark.desktop


@pytest.fixture
def env(desktop: DesktopSession, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, desktop.env)


def test_success_names_command_outcome_duration_and_tail(desktop: DesktopSession,
                                                         env: dict[str, str]) -> None:
    mark = desktop.marker()
    result = run_cli(["run", "--", "sh", "-c", "echo first; echo last line"], env=env)
    assert result.returncode == 0
    assert result.stdout == b"first\nlast line\n"
    assert result.stderr == b""
    got = desktop.wait_for(since=mark)
    assert got["summary"].startswith("✓ sh -c 'echo first; echo last line' · ")
    assert got["summary"].endswith("ms")
    assert got["body"] == "first\nlast line"
    assert got["urgency"] == "normal"
    assert got["appname"] == "claude-notify"


def test_failure_is_critical_and_keeps_exit_code(desktop: DesktopSession,
                                                 env: dict[str, str]) -> None:
    mark = desktop.marker()
    result = run_cli(["run", "sh -c 'echo boom >&2; exit 42'"], env=env)
    assert result.returncode == 42
    assert result.stderr == b"boom\n"
    got = desktop.wait_for(since=mark)
    assert " · exit 42 · " in got["summary"]
    assert got["summary"].startswith("✗ ")
    assert got["body"] == "boom"
    assert got["urgency"] == "critical"


def test_hostile_output_is_shown_literally(desktop: DesktopSession, env: dict[str, str]) -> None:
    """dunst renders body markup, so markup in the output must arrive escaped."""
    hostile = "<b>bold</b> & <a href='x'>link</a> <script>alert(1)</script>"
    mark = desktop.marker()
    result = run_cli(["run", "--", "printf", "%s\\n", hostile], env=env)
    assert result.returncode == 0
    got = desktop.wait_for(since=mark)
    assert got["body"] == (hostile.replace("&", "&amp;").replace("<", "&lt;")
                           .replace(">", "&gt;"))


def test_templates_fill_placeholders(desktop: DesktopSession, env: dict[str, str],
                                     tmp_path: Path) -> None:
    mark = desktop.marker()
    result = run_cli(["run", "--title", "{status}: {cmd} on {host}",
                      "--message", "code={exit_code} in {project}", "--", "false", "x"],
                     env=env, cwd=tmp_path)
    assert result.returncode == 1
    got = desktop.wait_for(since=mark)
    import socket

    assert got["summary"] == f"failed: false x on {socket.gethostname()}"
    assert got["body"] == f"code=1 in {tmp_path.name}"


def test_on_failure_skips_success(desktop: DesktopSession, env: dict[str, str]) -> None:
    mark = desktop.marker()
    assert run_cli(["run", "--on", "failure", "--", "echo", "quiet"], env=env).returncode == 0
    assert run_cli(["run", "--on", "failure", "--", "sh", "-c", "exit 3"],
                   env=env).returncode == 3
    got = desktop.wait_for(since=mark)
    assert "exit 3" in got["summary"]
    assert [n["summary"] for n in desktop.notifications_since(mark)] == [got["summary"]]


def test_min_duration_skips_short_tasks(desktop: DesktopSession, env: dict[str, str]) -> None:
    mark = desktop.marker()
    assert run_cli(["run", "--min-duration", "1m", "--", "echo", "short"], env=env).returncode == 0
    assert run_cli(["run", "--min-duration", "100ms", "--", "sleep", "0.2"],
                   env=env).returncode == 0
    got = desktop.wait_for(since=mark)
    assert got["summary"].startswith("✓ sleep 0.2")
    assert len(desktop.notifications_since(mark)) == 1


def test_config_file_and_env_choose_urgency(desktop: DesktopSession, env: dict[str, str],
                                            tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('urgency = "low"\ntitle = "from file"\n')
    mark = desktop.marker()
    assert run_cli(["run", "--", "true", "x"], env=env).returncode == 0
    got = desktop.wait_for(since=mark)
    assert (got["summary"], got["urgency"]) == ("from file", "low")
    mark = desktop.marker()
    env2 = {**env, "CLAUDE_NOTIFY_URGENCY": "critical"}
    assert run_cli(["run", "--title", "from flag", "--", "true", "x"], env=env2).returncode == 0
    got = desktop.wait_for(since=mark)
    assert (got["summary"], got["urgency"]) == ("from flag", "critical")


def test_match_notifies_while_running(desktop: DesktopSession, env: dict[str, str],
                                      tmp_path: Path) -> None:
    """The matching line is notified while the command runs (the command waits until the test
    has seen it: the final notification replaces it), and a second match in the cooldown is not."""
    release = tmp_path / "release"
    script = ("import os, sys, time\n"
              "print('compiling', flush=True)\n"
              "print('ERROR: disk <full>', flush=True)\n"
              "deadline = time.monotonic() + 30\n"
              "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\n"
              "    time.sleep(0.05)\n"
              "print('ERROR: second, rate-limited', flush=True)\n")
    mark = desktop.marker()
    proc = subprocess.Popen([*CLI, "run", "--match", "^ERROR", "--", sys.executable, "-c",
                             script, str(release)], env=env, stdout=subprocess.DEVNULL)
    try:
        matched = desktop.wait_for(lambda n: "matched" in n["summary"], since=mark, timeout=20)
        assert matched["body"] == "ERROR: disk &lt;full&gt;"
    finally:
        release.touch()
        assert proc.wait(timeout=30) == 0
    desktop.wait_for(lambda n: n["summary"].startswith("✓"), since=mark)
    summaries = [summary for _, _, summary in desktop.arrivals_since(mark)]
    assert sum("matched" in s for s in summaries) == 1  # the second match fell in the cooldown


def test_every_sends_progress(desktop: DesktopSession, env: dict[str, str],
                              tmp_path: Path) -> None:
    """A "still running" notice with the latest output; the command ends once it was seen."""
    release = tmp_path / "release"
    script = ("import os, sys, time\n"
              "deadline = time.monotonic() + 30\n"
              "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\n"
              "    print('step', round(time.monotonic(), 1), flush=True); time.sleep(0.1)\n")
    mark = desktop.marker()
    proc = subprocess.Popen([*CLI, "run", "--every", "200ms", "--", sys.executable, "-c",
                             script, str(release)], env=env, stdout=subprocess.DEVNULL)
    try:
        progress = desktop.wait_for(lambda n: "still running" in n["summary"]
                                    and n["body"].startswith("step"), since=mark, timeout=20)
        assert progress["urgency"] == "low"
    finally:
        release.touch()
        assert proc.wait(timeout=30) == 0


def test_progress_gives_way_to_the_final_notification(desktop: DesktopSession,
                                                      env: dict[str, str]) -> None:
    """One visible notification per task: each "still running" notice replaces the last, and
    the final one replaces them (same id at the server), so the history holds only the end."""
    script = ("import time\n"
              "for i in range(12):\n"
              "    print(f'step {i}', flush=True); time.sleep(0.1)\n")
    mark = desktop.marker()
    result = run_cli(["run", "--every", "250ms", "--", sys.executable, "-c", script], env=env)
    assert result.returncode == 0
    final = desktop.wait_for(lambda n: n["summary"].startswith("✓"), since=mark, timeout=10)
    arrivals = desktop.arrivals_since(mark)
    assert sum("still running" in summary for _, _, summary in arrivals) >= 2, arrivals
    assert {ident for ident, _, _ in arrivals} == {final["id"]}, arrivals
    assert [n["summary"] for n in desktop.notifications_since(mark)] == [final["summary"]]


def test_hung_daemon_holds_terminal_about_two_seconds(desktop: DesktopSession,
                                                      env: dict[str, str]) -> None:
    started = time.monotonic()
    with desktop.frozen():
        result = run_cli(["run", "--", "sh", "-c", "echo out; exit 5"], env=env, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode == 5
    assert result.stdout == b"out\n"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("claude-notify: notification not shown (dbus: ")
    assert elapsed < 4.5


def test_no_session_bus_is_one_line_and_exit_code_kept(tmp_path: Path) -> None:
    env = cli_env(tmp_path)  # no DBUS_SESSION_BUS_ADDRESS, no XDG_RUNTIME_DIR
    result = run_cli(["run", "--", "sh", "-c", "echo data; exit 9"], env=env)
    assert result.returncode == 9
    assert result.stdout == b"data\n"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "no session D-Bus" in lines[0]


def test_sound_file_is_played_when_server_cannot(desktop: DesktopSession, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """dunst has no ``sound`` capability, so the file goes to the first player on PATH.

    A recording ``pw-play`` proves the argv; it does not prove audio came out.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "played"
    player = bindir / "pw-play"
    player.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}.tmp && mv {record}.tmp {record}\n")
    player.chmod(0o755)
    sound = tmp_path / "ding sound.wav"
    sound.write_bytes(b"RIFF")
    mark = desktop.marker()
    result = run_cli(["run", "--sound", str(sound), "--", "true", "x"],
                     env={**env, "PATH": f"{bindir}:{env['PATH']}"})
    assert result.returncode == 0
    desktop.wait_for(since=mark)
    deadline = time.monotonic() + 5
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.read_text() == f"{sound}\n"


def test_test_command_reports_backend(desktop: DesktopSession, env: dict[str, str]) -> None:
    mark = desktop.marker()
    result = run_cli(["test"], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("delivered by dbus (notification id ")
    got = desktop.wait_for(since=mark)
    assert got["summary"] == "✓ claude-notify test · 0.1s"


def test_doctor_json_reports_dbus_server(env: dict[str, str]) -> None:
    import json

    result = run_cli(["doctor", "--json"], env=env)
    report = json.loads(result.stdout)
    assert result.returncode == 0
    assert report["chosen"] == "dbus"
    dbus = next(b for b in report["backends"] if b["name"] == "dbus")
    assert "server dunst" in dbus["reason"]
    assert report["ssh"] is False
