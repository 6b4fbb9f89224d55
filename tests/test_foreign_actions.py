"""Actions where the platform has them, beyond freedesktop: terminal-notifier's click (``-open``
the log, ``-execute`` a tmux pane selection) and a toast's "Show log" button. We cannot run
macOS or Windows here, so the argv and XML handed to their tools are checked — and the one
string that goes through a shell is run through a real ``/bin/sh``."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from claude_notify.notifiers.base import Focus, Notification
from claude_notify.notifiers.macos import build_terminal_notifier_argv
from claude_notify.notifiers.windows import build_toast_xml, image_uri

HOSTILE = "/tmp/a b/$(touch pwned)'\";&<x>.log"


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1].removeprefix("\\") if name in argv else None


def test_a_click_opens_the_log_on_macos() -> None:
    argv = build_terminal_notifier_argv(
        Notification(title="t", log_path=HOSTILE), exe="terminal-notifier", env={})
    assert _option(argv, "-open") == Path(HOSTILE).as_uri()
    assert "'" not in _option(argv, "-open") and " " not in _option(argv, "-open")


def test_the_tmux_selection_survives_a_real_shell(tmp_path: Path) -> None:
    """``-execute`` is run by ``/bin/sh``: the pane is a validated id, the paths are quoted."""
    bin_dir = tmp_path / "b in'$(x)"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    tmux = bin_dir / "tmux"
    tmux.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{record}'\n")
    tmux.chmod(0o755)
    socket = str(tmp_path / "sock $(touch pwned);'")
    env = {"TMUX": f"{socket},123,0", "PATH": str(bin_dir)}
    argv = build_terminal_notifier_argv(
        Notification(title="t", focus=Focus(tmux_pane="%7")), exe="tn", env=env)
    command = _option(argv, "-execute")
    assert command is not None
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, check=True, timeout=30,
                   env={"PATH": os.environ["PATH"]})
    assert record.read_text().splitlines() == [
        "-S", socket, "select-window", "-t", "%7", ";", "select-pane", "-t", "%7"]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("pane", ["%7;reboot", "7", "%", "%1 %2", "$(x)"])
def test_anything_but_a_pane_id_never_reaches_the_shell(pane: str) -> None:
    argv = build_terminal_notifier_argv(
        Notification(title="t", focus=Focus(tmux_pane=pane)), exe="tn",
        env={"TMUX": "/tmp/tmux-0/default,1,0", "PATH": "/usr/bin:/bin"})
    assert "-execute" not in argv


def test_a_toast_offers_show_log_opening_the_file() -> None:
    uri = image_uri("C:\\Users\\me\\logs\\a&b'<x>\".log", wsl=False)
    assert uri is not None
    toast = ET.fromstring(build_toast_xml(  # noqa: S314 - our own XML
        Notification(title="t", urgency="critical"), log_uri=uri))
    actions = toast.findall("./actions/action")
    assert [(a.get("content"), a.get("activationType")) for a in actions] == [
        ("Show log", "protocol"), ("", "system")]  # and a critical toast keeps its Dismiss
    assert actions[0].get("arguments") == uri


def test_a_toast_from_wsl_opens_only_what_windows_can_read() -> None:
    assert image_uri("/mnt/c/work/train.log", wsl=True) == "file:///C:/work/train.log"
    assert image_uri("/home/me/train.log", wsl=True) is None
    toast = ET.fromstring(  # noqa: S314 - our own XML
        build_toast_xml(Notification(title="t"), log_uri=None))
    assert toast.find("./actions") is None
