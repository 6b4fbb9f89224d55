"""The desktop harness itself: if these fail, no real-desktop test result means anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from desktop import DesktopSession, clean_env

pytestmark = pytest.mark.desktop


def notify_send(desktop: DesktopSession, *args: str) -> None:
    subprocess.run(["notify-send", *args], env=desktop.env, check=True, timeout=5)


def test_env_points_at_private_session_only(desktop: DesktopSession) -> None:
    env = desktop.env
    assert env["DISPLAY"] == desktop.display
    assert env["DISPLAY"] != os.environ.get("DISPLAY")
    assert env["DBUS_SESSION_BUS_ADDRESS"].startswith(f"unix:path={env['XDG_RUNTIME_DIR']}/")
    assert not [key for key in env if key.startswith(("SSH_", "TMUX", "KITTY_"))]
    assert Path(f"/tmp/.X11-unix/X{desktop.display[1:]}").exists()


def test_clean_env_drops_terminal_and_session_ties() -> None:
    base = {
        "PATH": "/bin",
        "SSH_CONNECTION": "x",
        "TMUX": "s",
        "TMUX_PANE": "%1",
        "DISPLAY": ":0",
        "KITTY_WINDOW_ID": "1",
        "LC_TERMINAL": "iTerm2",
        "HOME": "/h",
    }
    assert clean_env(base) == {"PATH": "/bin", "HOME": "/h"}


def test_reads_back_summary_body_urgency_and_app(desktop: DesktopSession) -> None:
    mark = desktop.marker()
    notify_send(desktop, "-u", "critical", "-a", "harness", "Build done", "exit 0 after 3s")
    notify_send(desktop, "-u", "low", "Second", "other")

    first = desktop.wait_for(lambda n: n["summary"] == "Build done", since=mark)
    assert first["body"] == "exit 0 after 3s"
    assert first["appname"] == "harness"
    assert first["urgency"] == "critical"
    second = desktop.wait_for(lambda n: n["summary"] == "Second", since=mark)
    assert second["urgency"] == "low"
    assert second["id"] > first["id"] > mark


def test_marker_hides_earlier_notifications(desktop: DesktopSession) -> None:
    notify_send(desktop, "Earlier", "before the marker")
    desktop.wait_for(lambda n: n["summary"] == "Earlier", since=0)
    mark = desktop.marker()
    notify_send(desktop, "Later", "after the marker")
    desktop.wait_for(lambda n: n["summary"] == "Later", since=mark)
    assert [n["summary"] for n in desktop.notifications_since(mark)] == ["Later"]


def test_identical_notifications_are_not_stacked(desktop: DesktopSession) -> None:
    mark = desktop.marker()
    for _ in range(2):
        notify_send(desktop, "Same", "same")
    deadline = time.monotonic() + 5
    while len(desktop.notifications_since(mark)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(desktop.notifications_since(mark)) == 2


def test_body_markup_is_rendered_unless_escaped(desktop: DesktopSession) -> None:
    """dunst advertises body-markup: a backend must escape ``<`` or the user sees bold text."""
    mark = desktop.marker()
    notify_send(desktop, "Markup", "<b>bold</b> &amp; &lt;i&gt;")
    got = desktop.wait_for(lambda n: n["summary"] == "Markup", since=mark)
    assert got["body"] == "<b>bold</b> &amp; &lt;i&gt;"
    assert got["message"] == "<b>Markup</b>\n<b>bold</b> &amp; &lt;i&gt;"


def test_wait_for_times_out_listing_what_arrived(desktop: DesktopSession) -> None:
    mark = desktop.marker()
    notify_send(desktop, "Near miss", "")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="Near miss"):
        desktop.wait_for(lambda n: n["summary"] == "Never sent", since=mark, timeout=0.5)
    assert time.monotonic() - started < 3


def test_frozen_daemon_hangs_notify_until_thawed(desktop: DesktopSession) -> None:
    mark = desktop.marker()
    with desktop.frozen():
        proc = subprocess.Popen(["notify-send", "Thawed", "late"], env=desktop.env)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    assert proc.wait(timeout=5) == 0
    desktop.wait_for(lambda n: n["summary"] == "Thawed", since=mark)


def test_close_stops_every_process(tmp_path: Path) -> None:
    session = DesktopSession(tmp_path).start()
    child = session.spawn(["sleep", "60"])
    pids = [child.pid, *(p.pid for p in (session._xvfb, session._bus, session._dunst) if p)]
    display = session.display
    session.close()
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert not Path(f"/tmp/.X11-unix/X{display[1:]}").exists()


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_missing_tools_skip_locally_but_fail_under_ci(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    """CI must never go green by silently skipping the real-desktop tests."""
    env = clean_env(os.environ) | {"PATH": str(tmp_path), "CI": ci}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path}/t",
            f"{Path(__file__)}::test_env_points_at_private_session_only",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome in result.stdout, result.stdout
    assert "the desktop harness needs Xvfb" in result.stdout
