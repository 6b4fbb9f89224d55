"""The terminal backend against a real kitty (and tmux inside it) that hands OSC to dunst.

What this proves: the bytes we write, through a real pty, a real terminal parser and tmux's real
passthrough, become the notification the user sees, with hostile text arriving as plain text and
nothing injected. What it does not: urgency (kitty 0.26 drops ``u=``; see the unit tests),
terminals other than kitty, and tmux without ``allow-passthrough``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from desktop import DesktopSession, Received, require_tools

pytestmark = pytest.mark.desktop

# Runs inside kitty: the same construction the CLI does over SSH, then lives as long as its
# terminal so kitty cannot close the window before it has parsed what we wrote.
SENDER = """\
import json, os, sys, time
from claude_notify.notifiers.base import Host, Notification
from claude_notify.notifiers.terminal import TerminalNotifier

case = json.loads(sys.argv[1])
env = {"TERM": "xterm-kitty", "SSH_CONNECTION": "1 2 3 4", **case["env"]}
if "TMUX" in os.environ:
    env["TMUX"] = os.environ["TMUX"]
notifier = TerminalNotifier(Host(platform="linux", env=env, tty_path="/dev/tty"))
results = [notifier.send(Notification(**n), timeout=5) for n in case["notifications"]]
with open(case["out"] + ".tmp", "w") as f:
    json.dump([[r.ok, r.detail] for r in results], f)
os.rename(case["out"] + ".tmp", case["out"])
parent = os.getppid()
while os.getppid() == parent:  # until kitty (or the tmux server) is gone, even if HUP is ignored
    time.sleep(0.1)
"""

TMUX_CONF = "set -g allow-passthrough on\nset -g status off\n"

Run = Callable[..., tuple[list[Received], list[list[Any]]]]


@pytest.fixture
def run_in_kitty(desktop: DesktopSession, tmp_path: Path) -> Iterator[Run]:
    """Send notifications from a program in kitty (optionally in tmux); return what dunst got.

    The last notification is a sentinel: kitty handles its output in order, so once the sentinel
    is in, anything the earlier ones could have injected would be in too.
    """
    require_tools(("kitty", "tmux"), packages="kitty tmux", purpose="the terminal end-to-end test")
    sender = tmp_path / "sender.py"
    sender.write_text(SENDER, encoding="utf-8")
    (tmp_path / "tmux.conf").write_text(TMUX_CONF, encoding="utf-8")
    sockets: list[str] = []

    def run(
        notifications: list[dict[str, str]], *, env: dict[str, str], tmux: bool
    ) -> tuple[list[Received], list[list[Any]]]:
        out = tmp_path / f"result-{len(sockets)}.json"
        sentinel = {"title": f"sentinel {uuid.uuid4().hex}"}
        case = {"notifications": [*notifications, sentinel], "env": env, "out": str(out)}
        argv = [sys.executable, str(sender), json.dumps(case)]
        if tmux:
            # -S in tmp_path rather than -L: a private server whose socket cannot outlive the test.
            sockets.append(str(tmp_path / f"tmux-{len(sockets)}.sock"))
            argv = ["tmux", "-f", str(tmp_path / "tmux.conf"), "-S", sockets[-1], "new", *argv]
        else:
            sockets.append("")
        mark = desktop.marker()
        with (tmp_path / "kitty.log").open("ab") as log:
            kitty = desktop.spawn(
                ["kitty", "--config", "NONE", "-o", "enable_audio_bell=no", *argv],
                env={"LIBGL_ALWAYS_SOFTWARE": "1"},
                stdout=log,
            )
        try:
            desktop.wait_for(lambda n: n["summary"] == sentinel["title"], since=mark, timeout=15)
            results = json.loads(out.read_text(encoding="utf-8"))
        finally:
            desktop.reap(kitty)
        return desktop.notifications_since(mark), results

    yield run
    for socket in filter(None, sockets):  # the tmux server daemonizes out of kitty's group
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, timeout=5)


HOSTILE_TITLE = "4;50 Build\x1b]777;notify;pwned;x\x07 done\x9c;\x1b\\ok"
HOSTILE_BODY = "line 1\nline 2\t<b>&amp;</b>; 9;/etc\x1b[31m\x85end \ud800"

FW = "\uff1b"  # fullwidth semicolon: what an OSC 777 title carries instead of ";"

# Spelled out per kind: control characters gone; what each sequence can carry of the rest.
EXPECTED = {
    "99": (
        "4;50 Build]777;notify;pwned;x done;\\ok",
        "line 1\nline 2 <b>&amp;</b>; 9;/etc[31m\nend \ufffd",
    ),
    "777": (
        f"4{FW}50 Build]777{FW}notify{FW}pwned{FW}x done{FW}\\ok",
        "line 1 ⏎ line 2 <b>&amp;</b>; 9;/etc[31m ⏎ end \ufffd",
    ),
    "9": (
        "\u200b4;50 Build]777;notify;pwned;x done;\\ok: "
        "line 1 ⏎ line 2 <b>&amp;</b>; 9;/etc[31m ⏎ end \ufffd",
        "",
    ),
}


@pytest.mark.parametrize("tmux", [False, True], ids=["direct", "tmux"])
@pytest.mark.parametrize(
    ("kind", "env"),
    [
        ("99", {}),  # chosen from TERM=xterm-kitty, as over SSH
        ("777", {"CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "777"}),
        ("9", {"CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "9"}),
    ],
)
def test_kitty_shows_hostile_text_literally_and_nothing_else(
    run_in_kitty: Run, kind: str, env: dict[str, str], tmux: bool
) -> None:
    hostile = {"title": HOSTILE_TITLE, "body": HOSTILE_BODY, "urgency": "critical"}
    received, results = run_in_kitty([hostile], env=env, tmux=tmux)

    assert results[0][0], results
    assert results[0][1].startswith(f"OSC {kind} ")
    assert ("tmux passthrough" in results[0][1]) is tmux
    assert [n["appname"] for n in received] == ["kitty", "kitty"]  # no injected third one
    summary, body = EXPECTED[kind]
    assert (received[0]["summary"], received[0]["body"]) == (summary, body)
