"""Actions on the freedesktop notification, invoked through a real dunst on a real D-Bus.

``run`` hands its bus connection to a detached listener and exits; dunst then sends the action
to that listener. ``dunstctl action 0`` clicks the topmost notification (its default action);
``dunstctl context`` hands the menu of every action to the ``dmenu`` program, here a stand-in
that records the menu and picks the line we ask for. The openers are real (tmux) or stand-ins
first on ``PATH`` that record the argv we hand them (``xdg-open``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import desktop as harness
import pytest
from desktop import APT_PACKAGES, REQUIRED_TOOLS, DesktopSession, require_tools
from helpers import CLI, cli_env, run_cli

pytestmark = pytest.mark.desktop

LISTENER = "claude_notify.notifiers.actions"


class Actions:
    """One dunst whose context menu is answered by a recording stand-in for dmenu."""

    def __init__(self, session: DesktopSession, workdir: Path) -> None:
        self.session = session
        self.menu = workdir / "menu.txt"
        self.want = workdir / "want"
        self.opened = workdir / "opened"
        self.bin = workdir / "bin"

    def dunstctl(self, *args: str) -> str:
        return subprocess.run(["dunstctl", *args], env=self.session.env, capture_output=True,
                              text=True, timeout=5, check=True).stdout

    def context_menu(self, pick: str) -> str:
        """Open dunst's context menu, pick the first line containing ``pick``; the menu shown."""
        self.menu.unlink(missing_ok=True)
        self.want.write_text(pick, encoding="utf-8")
        self.dunstctl("context")
        wait_for(self.menu.exists, "dunst to run the menu program")
        return self.menu.read_text(encoding="utf-8")

    def listeners(self) -> list[int]:
        """Pids of action listeners on this desktop's bus (other sessions' are not ours)."""
        bus = f"DBUS_SESSION_BUS_ADDRESS={self.session.env['DBUS_SESSION_BUS_ADDRESS']}"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
                if any(LISTENER.encode() in a for a in argv) and bus.encode() in environ:
                    found.append(int(entry.name))
        return found


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def actions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Actions]:
    require_tools(REQUIRED_TOOLS, packages=APT_PACKAGES, purpose="the desktop harness")
    workdir = tmp_path_factory.mktemp("actions")
    picker = workdir / "dmenu.sh"
    picker.write_text(f"#!/bin/sh\ncat > '{workdir}/menu.tmp'\n"
                      f"grep -m1 -F \"$(cat '{workdir}/want')\" '{workdir}/menu.tmp'\n"
                      f"mv '{workdir}/menu.tmp' '{workdir}/menu.txt'\n", encoding="utf-8")
    picker.chmod(0o755)
    (workdir / "bin").mkdir()
    opener = workdir / "bin" / "xdg-open"
    opener.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{workdir}/opened.tmp'\n"
                      f"mv '{workdir}/opened.tmp' '{workdir}/opened'\n", encoding="utf-8")
    opener.chmod(0o755)
    (workdir / "desktop").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "_DUNSTRC", harness._DUNSTRC.replace(
            "[global]\n", f"[global]\n    dmenu = {picker}\n", 1))
        session = DesktopSession(workdir / "desktop").start()
    found = Actions(session, workdir)
    try:
        yield found
    finally:
        for pid in found.listeners():  # a failed test's leftovers; a passing one leaves none
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        session.close()
        wait_for(lambda: not found.listeners(), "the listeners to go with the bus")


@pytest.fixture
def env(actions: Actions, tmp_path: Path) -> dict[str, str]:
    actions.opened.unlink(missing_ok=True)
    actions.session.marker()  # closes everything: position 0 is the next notification
    return cli_env(tmp_path, actions.session.env,
                   PATH=f"{actions.bin}{os.pathsep}{actions.session.env['PATH']}")


def closes_and_listener_exits(actions: Actions) -> None:
    assert actions.listeners()
    actions.dunstctl("close-all")
    wait_for(lambda: not actions.listeners(), "the listener to exit once the notification closed")


def test_show_log_opens_the_task_log(actions: Actions, env: dict[str, str],
                                     tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    result = run_cli(["run", "--log", str(log), "--", "sh", "-c", "echo out; exit 3"], env=env)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"")
    # run is gone while its notification is still on screen, and someone listens for it.
    assert actions.dunstctl("count", "displayed").strip() == "1"
    wait_for(actions.listeners, "the action listener")
    menu = actions.context_menu("Show log")
    assert "#Show log (✗ sh -c 'echo out; exit 3'" in menu
    assert "Go to terminal" not in menu  # no tmux, no $WINDOWID: a click has nothing to focus
    wait_for(actions.opened.exists, "xdg-open to be run")
    assert actions.opened.read_text(encoding="utf-8") == f"{log}\n"
    closes_and_listener_exits(actions)


def test_click_selects_the_tmux_pane_the_command_ran_in(actions: Actions, env: dict[str, str],
                                                        tmp_path: Path) -> None:
    require_tools(["tmux"], packages="tmux", purpose="the tmux focus test")
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]

    def ask(*args: str) -> str:
        return subprocess.run([*tmux, *args], env=env, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    def run_in_a_window(name: str) -> str:
        done = tmp_path / name
        command = (f"{shlex.join([*CLI, 'run', '--', 'true'])}; "
                   f"echo $? > {shlex.quote(str(done))}; exec sleep 600")
        pane = ask("new-window", "-P", "-F", "#{pane_id}", "-c", str(Path.cwd()), command)
        wait_for(done.exists, "run to finish in tmux", timeout=60)
        assert done.read_text(encoding="utf-8") == "0\n"
        wait_for(actions.listeners, "the action listener")
        return pane

    ask("new-session", "-d", "-x", "80", "-y", "24", "-c", str(Path.cwd()), "sleep 600")
    try:
        pane = run_in_a_window("done")
        ask("split-window", "-t", pane, "sleep 600")  # another pane of its window is active
        ask("select-window", "-t", ":0")  # and another window
        assert ask("display", "-p", "-t", pane, "#{window_active}#{pane_active}") == "00"
        actions.dunstctl("action", "0")  # the click
        wait_for(lambda: ask("display", "-p", "-t", pane,
                             "#{window_active}#{pane_active}") == "11",
                 "the click to select the pane", timeout=60)
        actions.dunstctl("close-all")  # dunst may have closed it after the click already
        wait_for(lambda: not actions.listeners(), "the listener to exit")

        # What the menu offers, on a notification of its own: a click that comes right after
        # dunst's menu may reach dunst before it has finished with the menu (seen in CI).
        run_in_a_window("done-again")
        menu = actions.context_menu("nothing to pick")
        assert "#Go to terminal (✓ true" in menu
        assert "Show log" not in menu  # run without --log
        closes_and_listener_exits(actions)
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True, timeout=10)


def test_no_actions_when_turned_off(actions: Actions, env: dict[str, str],
                                    tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    Path(env["CLAUDE_NOTIFY_CONFIG"]).write_text("actions = false\n", encoding="utf-8")
    assert run_cli(["run", "--log", str(log), "--", "false"], env=env).returncode == 1
    assert not actions.listeners()  # spawned before run returns, if at all
    Path(env["CLAUDE_NOTIFY_CONFIG"]).write_text("", encoding="utf-8")
    assert run_cli(["run", "--log", str(log), "--", "echo", "on"], env=env).returncode == 0
    menu = actions.context_menu("nothing to pick")
    assert [line.split(" (")[0] for line in menu.splitlines()] == ["#Show log"]
    assert "(✓ echo on" in menu
    assert not actions.opened.exists()
    closes_and_listener_exits(actions)


def test_progress_notices_have_no_actions(actions: Actions, env: dict[str, str],
                                          tmp_path: Path) -> None:
    """A match notice is replaced by the final one: only the final one gets a listener."""
    script = "echo READY; read line"
    with subprocess.Popen([*CLI, "run", "--log", str(tmp_path / "l.log"), "--match", "READY",
                           "--", "sh", "-c", script], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            wait_for(lambda: actions.dunstctl("count", "displayed").strip() == "1",
                     "the match notice")
            assert not actions.listeners()
            out, err = proc.communicate(b"go\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert (proc.returncode, out, err) == (0, b"READY\n", b"")
    wait_for(actions.listeners, "the final notification's listener")
    # The match notice, replaced rather than closed, would have left a listener of its own.
    assert len(actions.listeners()) == 1
    closes_and_listener_exits(actions)


def test_listener_refuses_malformed_arguments() -> None:
    """Whatever reaches the listener's argv is checked before anything runs."""
    from claude_notify.notifiers import actions as listener

    assert listener._parse(["--fd", "5", "--id", "7", "--tmux-pane", "%12"]) == {
        "fd": "5", "id": "7", "tmux-pane": "%12"}
    for bad in (["--fd", "5", "--id", "7", "--tmux-pane", "%1; rm -rf ~"],
                ["--fd", "5", "--id", "7", "--window-id", "0x1a"],
                ["--fd", "5", "--id", "7", "--log", "relative.log"],
                ["--fd", "5", "--id", "7", "--shell", "sh"], ["--fd", "5"], ["--fd"]):
        assert listener._parse(bad) is None, bad
