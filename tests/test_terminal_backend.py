"""The terminal backend: exact bytes per sequence, hostile text, and writes to a real pty.

Expected bytes are spelled out by hand here, not rebuilt with the module's own helpers, so a
change in escaping shows up as a failing test rather than a silently agreeing one.
"""

from __future__ import annotations

import base64
import os
import re
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_notify.errors import ConfigError
from claude_notify.notifiers import load
from claude_notify.notifiers.base import Host, Notification
from claude_notify.notifiers.terminal import (
    KINDS,
    MAX_PAYLOAD,
    TerminalNotifier,
    build_sequence,
    detect_kind,
    wrap_tmux,
)

ESC = b"\x1b"
FW = "\uff1b"  # fullwidth semicolon: stands in for ";" in OSC 777 titles
N = Notification(title="Build done", body="exit 0", urgency="critical")


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def osc99_payloads(seq: bytes) -> list[tuple[str, str]]:
    """(metadata, decoded payload) of every OSC 99 in ``seq``; fails on anything else in it."""
    chunks = re.findall(rb"\x1b\]99;([^;\x1b]*);([A-Za-z0-9+/=]*)\x1b\\", seq)
    assert b"".join(b"\x1b]99;%s;%s\x1b\\" % c for c in chunks) == seq
    return [(meta.decode(), base64.b64decode(data).decode()) for meta, data in chunks]


# -- exact bytes ------------------------------------------------------------------------------


def test_osc99_sends_title_then_body_with_urgency_base64() -> None:
    assert build_sequence(N, "99", tmux=False, ident="t1") == (
        b"\x1b]99;i=t1:d=0:u=2:e=1:p=title;" + b64("Build done") + b"\x1b\\"
        b"\x1b]99;i=t1:d=1:u=2:e=1:p=body;" + b64("exit 0") + b"\x1b\\"
    )


@pytest.mark.parametrize(("urgency", "code"), [("low", b"u=0"), ("normal", b"u=1")])
def test_osc99_urgency_codes(urgency: str, code: bytes) -> None:
    n = Notification(title="t", urgency=urgency)  # type: ignore[arg-type]
    assert build_sequence(n, "99", tmux=False).count(code) == 2


def test_osc99_keeps_newlines_in_the_body_only() -> None:
    seq = build_sequence(Notification(title="a\nb", body="one\ntwo"), "99", tmux=False, ident="x")
    assert osc99_payloads(seq) == [
        ("i=x:d=0:u=1:e=1:p=title", "a ⏎ b"),
        ("i=x:d=1:u=1:e=1:p=body", "one\ntwo"),
    ]


def test_osc99_identifier_cannot_break_the_metadata() -> None:
    seq = build_sequence(N, "99", tmux=False, ident="a;b:c=d\x1b]x")
    assert osc99_payloads(seq)[0][0] == "i=abcdx:d=0:u=2:e=1:p=title"


def test_osc777() -> None:
    assert build_sequence(N, "777", tmux=False) == b"\x1b]777;notify;Build done;exit 0\x07"


def test_osc9_joins_title_and_body() -> None:
    assert build_sequence(N, "9", tmux=False) == b"\x1b]9;Build done: exit 0\x07"


def test_bell_only() -> None:
    assert build_sequence(N, "bell", tmux=True, bell=True) == b"\x07"


def test_bell_follows_the_sequence_outside_the_tmux_wrapper() -> None:
    """tmux handles a BEL itself (and forwards it); inside the passthrough it would be data."""
    assert build_sequence(N, "777", tmux=True, bell=True) == (
        b"\x1bPtmux;\x1b\x1b]777;notify;Build done;exit 0\x07\x1b\\\x07"
    )


def test_tmux_wrap_doubles_every_esc() -> None:
    seq = build_sequence(N, "99", tmux=False, ident="t")
    wrapped = build_sequence(N, "99", tmux=True, ident="t")
    assert wrapped == b"\x1bPtmux;" + seq.replace(ESC, ESC + ESC) + b"\x1b\\"
    assert wrapped.count(ESC) == 2 * seq.count(ESC) + 2
    assert wrap_tmux(b"\x1b]9;x\x07") == b"\x1bPtmux;\x1b\x1b]9;x\x07\x1b\\"


def test_empty_notification_falls_back_to_the_app_name() -> None:
    n = Notification(title="", body="", app_name="claude-notify")
    assert build_sequence(n, "777", tmux=False) == b"\x1b]777;notify;claude-notify;\x07"


# -- hostile text -----------------------------------------------------------------------------

HOSTILE = "a\x1b]777;notify;pwned;x\x07b\x9cc\x1b\\d\x00e\x7ff\x85g\x90h\x1b[31m"


def test_control_characters_are_stripped() -> None:
    n = Notification(title=HOSTILE)
    assert build_sequence(n, "777", tmux=False) == (
        f"\x1b]777;notify;a]777{FW}notify{FW}pwned{FW}xbc\\def ⏎ gh[31m;\x07".encode()
    )
    assert build_sequence(n, "9", tmux=False) == (
        "\x1b]9;a]777;notify;pwned;xbc\\def ⏎ gh[31m\x07".encode()
    )


def test_osc99_strips_control_characters_inside_base64() -> None:
    seq = build_sequence(Notification(title="t", body=HOSTILE), "99", tmux=False)
    assert osc99_payloads(seq)[1][1] == "a]777;notify;pwned;xbc\\def\ngh[31m"


def test_osc777_title_semicolons_cannot_split_fields() -> None:
    seq = build_sequence(Notification(title="a;b;c", body="x;y"), "777", tmux=False)
    assert seq == f"\x1b]777;notify;a{FW}b{FW}c;x;y\x07".encode()
    assert seq.decode()[len("\x1b]777;notify;") :].split(";", 1) == [f"a{FW}b{FW}c", "x;y\x07"]


@pytest.mark.parametrize("text", ["4;1;50", "9;/etc", "7;calc.exe", "  4;x", "12"])
def test_osc9_text_cannot_read_as_a_conemu_command(text: str) -> None:
    seq = build_sequence(Notification(title=text), "9", tmux=False)
    assert seq == ("\x1b]9;\u200b" + text.lstrip() + "\x07").encode()


def test_osc9_text_not_starting_with_a_digit_is_unchanged() -> None:
    assert build_sequence(Notification(title="v4;x"), "9", tmux=False) == b"\x1b]9;v4;x\x07"


def test_surrogates_pairs_are_joined_and_lone_ones_replaced() -> None:
    seq = build_sequence(Notification(title="\ud83d\ude00 \ud800 \udfff"), "777", tmux=False)
    assert seq == "\x1b]777;notify;😀 \ufffd \ufffd;\x07".encode()


@pytest.mark.parametrize("kind", ["99", "777", "9"])
def test_ten_kilobytes_of_emoji_are_cut_on_a_character_boundary(kind: str) -> None:
    emoji = "👩‍👩‍👧‍👦🎉" * 400  # > 10 KB: 4-byte characters joined by 3-byte ZWJs
    assert len(emoji.encode()) > 10_000
    n = Notification(title=emoji, body=emoji)
    seq = build_sequence(n, kind, tmux=False)  # type: ignore[arg-type]
    if kind == "99":
        fields = [text for _, text in osc99_payloads(seq)]
    elif kind == "777":
        fields = seq[len(b"\x1b]777;notify;") : -1].decode().split(";")
    else:
        fields = [seq[len(b"\x1b]9;") : -1].decode()]
    assert len(fields) == (1 if kind == "9" else 2)
    for text in fields:
        assert len(text.encode()) <= MAX_PAYLOAD
        assert text.endswith("…")
        assert not text.endswith("\u200d…")  # no joiner left to glue onto the ellipsis
        assert emoji.startswith(text[:-1])


def test_payload_limit_is_exactly_2048_bytes() -> None:
    fits = "x" * MAX_PAYLOAD
    seq = build_sequence(Notification(title=fits), "99", tmux=False)
    assert osc99_payloads(seq)[0][1] == fits
    over = build_sequence(Notification(title=fits + "y"), "99", tmux=False)
    title = osc99_payloads(over)[0][1]
    assert title == "x" * (MAX_PAYLOAD - 3) + "…"
    assert len(title.encode()) == MAX_PAYLOAD


@settings(max_examples=300, deadline=None)
@given(title=st.text(), body=st.text(), kind=st.sampled_from(KINDS), tmux=st.booleans())
def test_any_text_yields_only_framing_controls(
    title: str, body: str, kind: str, tmux: bool
) -> None:
    """Whatever the text, the only control bytes are the ones the framing put there."""
    seq = build_sequence(Notification(title=title, body=body), kind, tmux=tmux)  # type: ignore[arg-type]
    text = seq.decode("utf-8")  # valid UTF-8 even from lone surrogates
    assert "\n" not in text  # a cooked tty (ONLCR) would rewrite it
    if tmux and kind != "bell":
        assert text.startswith("\x1bPtmux;") and text.endswith("\x1b\\")
        text = text[len("\x1bPtmux;") : -2].replace("\x1b\x1b", "\x1b")
    framing = {
        "99": r"(\x1b\]99;i=[\w.+-]+:d=[01]:u=1:e=1:p=(title|body);[A-Za-z0-9+/=]*\x1b\\){2}",
        "777": r"\x1b\]777;notify;[^;\x00-\x1f\x7f-\x9f]*;[^\x00-\x1f\x7f-\x9f]*\x07",
        "9": r"\x1b\]9;[^\x00-\x1f\x7f-\x9f]*\x07",
        "bell": r"\x07",
    }[kind]
    assert re.fullmatch(framing, text), text


# -- choosing the sequence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"TERM": "xterm-kitty"}, "99"),
        ({"TERM": "tmux-256color", "KITTY_WINDOW_ID": "3"}, "99"),
        ({"TERM_PROGRAM": "iTerm.app"}, "9"),
        ({"LC_TERMINAL": "iTerm2", "SSH_CONNECTION": "1 2 3 4"}, "9"),
        ({"TERM": "foot"}, "777"),
        ({}, "777"),
        ({"TERM": "xterm-kitty", "CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "777"}, "777"),
        ({"TERM_PROGRAM": "iTerm.app", "CLAUDE_NOTIFY_TERMINAL_SEQUENCE": " Bell "}, "bell"),
        ({"TERM": "xterm-kitty", "CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "auto"}, "99"),
    ],
)
def test_detect_kind(env: dict[str, str], kind: str) -> None:
    assert detect_kind(env)[0] == kind


def test_bad_override_is_a_config_error_that_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CLAUDE_NOTIFY_TERMINAL_SEQUENCE='osc'"):
        detect_kind({"CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "osc"})
    host = Host(platform="linux", env={"CLAUDE_NOTIFY_TERMINAL_SEQUENCE": "osc"})
    notifier = TerminalNotifier(host)
    assert not notifier.available().ok
    result = notifier.send(N, timeout=1)
    assert (result.ok, result.retryable) == (False, False)
    assert "CLAUDE_NOTIFY_TERMINAL_SEQUENCE" in result.detail


def test_registry_loads_it_by_name() -> None:
    assert isinstance(load("terminal", Host(platform="linux")), TerminalNotifier)


# -- writing to a real pseudo-terminal ----------------------------------------------------------


@dataclass
class Pty:
    master: int
    slave: int
    path: str

    def read(self, timeout: float = 2.0) -> bytes:
        """Everything written so far, waiting up to ``timeout`` for the first byte."""
        data = b""
        wait = timeout
        while select.select([self.master], [], [], wait)[0]:
            chunk = os.read(self.master, 65536)
            if not chunk:
                break
            data += chunk
            wait = 0.05
        return data


@pytest.fixture
def pty() -> Iterator[Pty]:
    master, slave = os.openpty()
    try:
        yield Pty(master, slave, os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


def notifier(pty: Pty, **env: str) -> TerminalNotifier:
    return TerminalNotifier(Host(platform="linux", env=env, tty_path=pty.path))


def test_send_writes_the_sequence_and_bell_to_the_terminal(pty: Pty) -> None:
    result = notifier(pty, TERM="foot").send(N, timeout=2)
    assert result.ok, result.detail
    assert result.detail == f"OSC 777 written to {pty.path}"
    assert pty.read() == b"\x1b]777;notify;Build done;exit 0\x07\x07"


def test_send_wraps_for_tmux_and_can_skip_the_bell(pty: Pty) -> None:
    result = notifier(pty, TMUX="/tmp/t,1,0", CLAUDE_NOTIFY_TERMINAL_BELL="off").send(N, timeout=2)
    assert "tmux passthrough" in result.detail
    assert pty.read() == b"\x1bPtmux;\x1b\x1b]777;notify;Build done;exit 0\x07\x1b\\"


def test_send_osc99_uses_a_fresh_identifier_each_time(pty: Pty) -> None:
    send = notifier(pty, TERM="xterm-kitty", CLAUDE_NOTIFY_TERMINAL_BELL="0").send
    assert send(N, timeout=2).ok
    assert send(N, timeout=2).ok
    payloads = osc99_payloads(pty.read())
    assert [text for _, text in payloads] == ["Build done", "exit 0"] * 2
    idents = [meta.split(":")[0] for meta, _ in payloads]
    assert idents[0] == idents[1] != idents[2] == idents[3]


def test_available_names_the_sequence_and_the_terminal(pty: Pty) -> None:
    availability = notifier(pty, TERM="xterm-kitty").available()
    assert availability.ok
    assert availability.reason == f"OSC 99 to {pty.path} (TERM=xterm-kitty)"
    assert pty.read(timeout=0.1) == b""  # checking wrote nothing


def test_stopped_terminal_fails_retryably_within_the_timeout(pty: Pty) -> None:
    """Ctrl-S (output suspended) must not hold the user's shell past the deadline."""
    termios.tcflow(pty.slave, termios.TCOOFF)
    started = time.monotonic()
    result = notifier(pty).send(N, timeout=0.3)
    elapsed = time.monotonic() - started
    termios.tcflow(pty.slave, termios.TCOON)
    assert (result.ok, result.retryable) == (False, True)
    assert "took no output for 0.3s" in result.detail
    assert 0.3 <= elapsed < 1.5


def test_missing_terminal_is_reported_not_raised(tmp_path: object) -> None:
    host = Host(platform="linux", tty_path="/nonexistent/tty")
    for outcome in (TerminalNotifier(host).available(), TerminalNotifier(host).send(N, timeout=1)):
        assert not outcome.ok
    none = TerminalNotifier(Host(platform="linux", tty_path=None))
    assert none.available().reason == "no controlling terminal"
    assert none.send(N, timeout=1).detail == "no controlling terminal"


def test_unavailable_without_a_controlling_terminal() -> None:
    """A detached process (cron, a daemon) cannot open /dev/tty: unavailable, with why."""
    code = (
        "from claude_notify.notifiers.base import Host;"
        "from claude_notify.notifiers.terminal import TerminalNotifier as T;"
        "a = T(Host(platform='linux')).available(); print(a.ok, a.reason)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        start_new_session=True,  # setsid: no controlling terminal
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.startswith("False cannot open /dev/tty: ")
