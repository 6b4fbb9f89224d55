"""The macOS, Windows, WSL and plyer backends, run on Linux against fake tools.

Each fake (``terminal-notifier``, ``osascript``, ``afplay``, ``snoretoast``, ``powershell.exe``,
``notify-send``) is a small Python script first on the ``PATH`` given in ``Host.env``; it records
the argv and stdin it received. These tests prove what the real tool would be handed and how
its failures are reported. They do not prove that macOS or Windows shows anything: that needs the
real tools on the real systems.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from claude_notify.notifiers.base import Host, Notification
from claude_notify.notifiers.macos import OsaScriptNotifier, TerminalNotifierApp
from claude_notify.notifiers.plyer_backend import (
    PlyerNotifier,
    build_plyer_kwargs,
    plyer_takes_for_flatpak,
)
from claude_notify.notifiers.windows import (
    POWERSHELL_AUMID,
    WSL_POWERSHELL,
    PowerShellToastNotifier,
    SnoreToastNotifier,
    WslToastNotifier,
    build_powershell_argv,
    ps_quote,
)

# (what the user's text was, what a notification should show of it as a body)
HOSTILE: list[tuple[str, str]] = [
    ('"; rm -rf ~; echo "', '"; rm -rf ~; echo "'),
    ("$(reboot)", "$(reboot)"),
    ("`reboot`", "`reboot`"),
    ("it's", "it's"),
    ('say "hi"', 'say "hi"'),
    ("C:\\back\\slash\\", "C:\\back\\slash\\"),
    ("line one\nline two", "line one\nline two"),
    ("-message", "-message"),
    ("--help", "--help"),
    ("[bracket] first", "[bracket] first"),
    ("(paren) {brace} <angle>", "(paren) {brace} <angle>"),
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("]]><!-- &amp; &lt;", "]]><!-- &amp; &lt;"),
    ("\x1b[31mred\x1b[0m\x07\x00", "[31mred[0m"),
    ("\x9b2J C1 CSI", "2J C1 CSI"),
    ("emoji 🎉 ✅ 中文", "emoji 🎉 ✅ 中文"),
    ("\u2018smart\u2019 quotes", "\u2018smart\u2019 quotes"),
    ("tab\there", "tab here"),
    ("cr\r\nlf\rend", "cr\nlf\nend"),
    ("lone \ud800 surrogate", "lone \ufffd surrogate"),
]
HOSTILE_IDS = [f"hostile{i}" for i in range(len(HOSTILE))]
MARGIN = 1.5
"""Seconds a timed-out send may overrun its deadline on a slow CI machine (kill and reap)."""


def as_title(shown: str) -> str:
    """Titles are one line: the backends join lines with a space."""
    return shown.replace("\n", " ")


@dataclass
class FakeBin:
    """A directory of fake tools that record each call as one JSON line."""

    dir: Path

    def add(self, name: str, *, exit_code: int = 0, stderr: str = "", sleep: float = 0) -> Path:
        record = self.dir / f"{name}.calls"
        script = self.dir / name
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys, time\n"
            "call = {'argv': sys.argv[1:], 'stdin': sys.stdin.read(), 'pid': os.getpid()}\n"
            f"with open({str(record)!r}, 'a', encoding='utf-8') as f:\n"
            "    f.write(json.dumps(call) + '\\n')\n"
            f"sys.stderr.write({stderr!r})\n"
            "sys.stderr.flush()\n"
            f"time.sleep({sleep})\n"
            f"sys.exit({exit_code})\n",
            encoding="utf-8",
        )
        script.chmod(0o755)
        return script

    def calls(self, name: str) -> list[dict[str, object]]:
        record = self.dir / f"{name}.calls"
        if not record.exists():
            return []
        return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]

    def only_argv(self, name: str) -> list[str]:
        calls = self.calls(name)
        assert len(calls) == 1, calls
        assert calls[0]["stdin"] == "", "the tool must get an empty stdin, not the terminal"
        argv = calls[0]["argv"]
        assert isinstance(argv, list)
        return argv

    def wait_for_call(self, name: str, within: float = 30.0) -> list[str]:
        deadline = time.monotonic() + within
        while not self.calls(name):
            assert time.monotonic() < deadline, f"{name} was never run"
            time.sleep(0.02)
        argv = self.calls(name)[0]["argv"]
        assert isinstance(argv, list)
        return argv


@pytest.fixture(autouse=True)
def stdin_with_data() -> Iterator[None]:
    """Our fd 0 holds text while each test runs, so a tool that inherited it would read it."""
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.write(write_end, b"our stdin, not the tool's\n")
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


@pytest.fixture
def fakebin(tmp_path: Path) -> FakeBin:
    (tmp_path / "bin").mkdir()
    return FakeBin(tmp_path / "bin")


def mac(fakebin: FakeBin, **env: str) -> Host:
    return Host(platform="darwin", env={"PATH": str(fakebin.dir), **env})


def windows(fakebin: FakeBin, **env: str) -> Host:
    return Host(platform="win32", env={"PATH": str(fakebin.dir), **env})


# --- macOS: terminal-notifier -------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), HOSTILE, ids=HOSTILE_IDS)
def test_terminal_notifier_gets_every_value_backslash_escaped(
        fakebin: FakeBin, raw: str, shown: str) -> None:
    """Proves: title and message reach terminal-notifier as single argv items, control bytes
    removed, each behind the backslash it strips, so "-message" or "[x]" stay text; stdin is
    empty. Does not prove: how NSUserDefaults on a real Mac parses them (issue #34/#134/#263)."""
    fakebin.add("terminal-notifier")
    host = mac(fakebin, TERM_PROGRAM="iTerm.app")

    result = TerminalNotifierApp(host).send(Notification(title=raw, body=raw), timeout=10)

    assert result.ok, result
    assert fakebin.only_argv("terminal-notifier") == [
        "-title", "\\" + as_title(shown), "-message", "\\" + shown,
        "-activate", "com.googlecode.iterm2",
    ]


def test_terminal_notifier_options(fakebin: FakeBin) -> None:
    """Proves: sound name, content image and the terminal to activate are passed, with no
    ``-sender`` (it breaks ``-activate``), ``-group`` or ``-timeout`` (which waits for a click).
    Does not prove: that clicking the banner on a Mac brings Terminal forward."""
    fakebin.add("terminal-notifier")
    host = mac(fakebin, TERM_PROGRAM="Apple_Terminal")
    n = Notification(title="t", body="", sound="Glass", icon="/Users/u/icon.png")

    assert TerminalNotifierApp(host).send(n, timeout=10).ok

    assert fakebin.only_argv("terminal-notifier") == [
        "-title", "\\t", "-message", "\\", "-sound", "\\Glass",
        "-contentImage", "\\/Users/u/icon.png", "-activate", "com.apple.Terminal",
    ]


@pytest.mark.parametrize(("env", "bundle"), [
    ({"TERM_PROGRAM": "vscode", "__CFBundleIdentifier": "com.todesktop.cursor"},
     "com.todesktop.cursor"),
    ({"TERM_PROGRAM": "WezTerm"}, "com.github.wez.wezterm"),
    ({"TERM_PROGRAM": "ghostty", "__CFBundleIdentifier": "x; open -a Calculator"},
     "com.mitchellh.ghostty"),
    ({"TERM_PROGRAM": "tmux"}, None),
    ({}, None),
])
def test_terminal_notifier_activates_the_hosting_terminal(
        fakebin: FakeBin, env: dict[str, str], bundle: str | None) -> None:
    """Proves: the app to activate comes from ``__CFBundleIdentifier`` when it is a bundle id,
    else from ``TERM_PROGRAM``, else nothing; junk is never passed. Does not prove: that each
    bundle id is the one installed on a given Mac."""
    fakebin.add("terminal-notifier")

    assert TerminalNotifierApp(mac(fakebin, **env)).send(Notification(title="t"), timeout=10).ok

    argv = fakebin.only_argv("terminal-notifier")
    assert argv[4:] == ([] if bundle is None else ["-activate", bundle])


@pytest.mark.parametrize(("sound", "played"), [
    ("/Users/u/done.aiff", "/Users/u/done.aiff"),
    ("~/Sounds/done.wav", "/Users/u/Sounds/done.wav"),
    ("-rf.aiff", "./-rf.aiff"),
])
def test_a_sound_file_goes_to_afplay_not_to_the_notifier(
        fakebin: FakeBin, sound: str, played: str) -> None:
    """Proves: a sound file is not given to terminal-notifier (names only) but to a detached
    afplay, which cannot read it as an option. Does not prove: that afplay plays it."""
    fakebin.add("terminal-notifier")
    fakebin.add("afplay")
    host = mac(fakebin, HOME="/Users/u")

    assert TerminalNotifierApp(host).send(Notification(title="t", sound=sound), timeout=10).ok

    assert "-sound" not in fakebin.only_argv("terminal-notifier")
    assert fakebin.wait_for_call("afplay") == [played]


def test_missing_afplay_is_reported_but_not_a_failure(fakebin: FakeBin) -> None:
    """Proves: the notification still counts as delivered and the detail says the sound was
    not played. Does not prove: anything about sound on a Mac."""
    fakebin.add("terminal-notifier")
    n = Notification(title="t", sound="/x/done.aiff")

    result = TerminalNotifierApp(mac(fakebin)).send(n, timeout=10)

    assert result.ok
    assert "afplay not found" in result.detail


def test_a_long_body_is_cut(fakebin: FakeBin) -> None:
    """Proves: a 10 KB body reaches the tool cut to 1,000 characters with an ellipsis.
    Does not prove: how many lines Notification Center shows."""
    fakebin.add("terminal-notifier")

    n = Notification(title="t", body="x" * 10_240)
    assert TerminalNotifierApp(mac(fakebin)).send(n, timeout=10).ok

    message = fakebin.only_argv("terminal-notifier")[3]
    assert message == "\\" + "x" * 999 + "…"


# --- macOS: osascript ---------------------------------------------------------------------

OSA_CODE = ["-e", "on run argv",
            "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e", "end run", "--"]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE, ids=HOSTILE_IDS)
def test_osascript_passes_text_as_run_arguments(fakebin: FakeBin, raw: str, shown: str) -> None:
    """Proves: the AppleScript is the same fixed code whatever the text, and title and body
    come after ``--`` as ``on run argv`` data, never as a string literal to escape.
    Does not prove: that osascript on a Mac displays it (or that its getopt honours ``--``)."""
    fakebin.add("osascript")

    assert OsaScriptNotifier(mac(fakebin)).send(Notification(title=raw, body=raw), timeout=10).ok

    assert fakebin.only_argv("osascript") == [*OSA_CODE, as_title(shown), shown]


@pytest.mark.parametrize(("sound", "name"), [("Ping", "Ping"), ("default", "Glass")])
def test_osascript_sound_name_is_data_too(fakebin: FakeBin, sound: str, name: str) -> None:
    """Proves: a sound name is a third run argument, "default" mapped to a real sound.
    Does not prove: that the sound exists on the Mac."""
    fakebin.add("osascript")

    n = Notification(title="t", body="b", sound=sound)
    assert OsaScriptNotifier(mac(fakebin)).send(n, timeout=10).ok

    argv = fakebin.only_argv("osascript")
    assert argv[3].endswith(" sound name (item 3 of argv)")
    assert argv[-3:] == ["t", "b", name]


# --- failures, shared by every command-line backend ---------------------------------------

SENDERS = [
    pytest.param(TerminalNotifierApp, "darwin", "terminal-notifier", id="terminal-notifier"),
    pytest.param(OsaScriptNotifier, "darwin", "osascript", id="osascript"),
    pytest.param(SnoreToastNotifier, "win32", "snoretoast", id="snoretoast"),
    pytest.param(PowerShellToastNotifier, "win32", "powershell.exe", id="toast"),
]


@pytest.mark.parametrize(("cls", "platform", "tool"), SENDERS)
def test_missing_tool_fails_cleanly(fakebin: FakeBin, cls: type[TerminalNotifierApp],
                                    platform: str, tool: str) -> None:
    """Proves: no tool on PATH gives ok=False with a one-line reason, not an exception.
    Does not prove: the message a user finds most helpful."""
    host = Host(platform=platform, env={"PATH": str(fakebin.dir)})

    result = cls(host).send(Notification(title="t"), timeout=5)

    assert not result.ok
    assert "not found" in result.detail
    assert "\n" not in result.detail


@pytest.mark.parametrize(("cls", "platform", "tool"), SENDERS)
def test_tool_error_carries_its_first_stderr_line(fakebin: FakeBin, cls: type[TerminalNotifierApp],
                                                  platform: str, tool: str) -> None:
    """Proves: a non-zero exit is a failure whose detail is the tool's first stderr line,
    control bytes removed. Does not prove: what the real tools print."""
    # SnoreToast's exit codes 1-5 are user actions on a shown toast; -1 (255 here) is failure.
    code = 255 if tool == "snoretoast" else 1
    fakebin.add(tool, exit_code=code, stderr="\n\x1b[31mboom: it broke\x1b[0m\nsecond line\n")
    host = Host(platform=platform, env={"PATH": str(fakebin.dir)})

    result = cls(host).send(Notification(title="t"), timeout=10)

    assert not result.ok
    assert not result.retryable
    assert "boom: it broke" in result.detail
    assert "second line" not in result.detail
    assert "\x1b" not in result.detail


@pytest.mark.parametrize(("cls", "platform", "tool"), SENDERS)
def test_hung_tool_is_abandoned_at_the_deadline(fakebin: FakeBin, cls: type[TerminalNotifierApp],
                                                platform: str, tool: str) -> None:
    """Proves: a tool that hangs (terminal-notifier in old tmux, a stuck PowerShell) is killed
    at the deadline and reported as retryable. Does not prove: that a retry then succeeds."""
    fakebin.add(tool, sleep=60)
    host = Host(platform=platform, env={"PATH": str(fakebin.dir)})

    start = time.monotonic()
    result = cls(host).send(Notification(title="t"), timeout=1.0)

    assert time.monotonic() - start < 1.0 + MARGIN
    assert not result.ok
    assert result.retryable
    assert "1s" in result.detail


def test_no_time_left_runs_nothing(fakebin: FakeBin) -> None:
    """Proves: a spent deadline fails at once, retryable, without starting the tool."""
    fakebin.add("osascript")

    result = OsaScriptNotifier(mac(fakebin)).send(Notification(title="t"), timeout=0)

    assert (result.ok, result.retryable) == (False, True)
    assert fakebin.calls("osascript") == []


def test_tools_in_relative_path_entries_are_ignored(
        fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: a tool reachable only through a relative PATH entry (".", "") is not run, so a
    fake ``osascript`` in a cloned repository cannot hijack the notification."""
    fakebin.add("osascript")
    monkeypatch.chdir(fakebin.dir)
    host = Host(platform="darwin", env={"PATH": ".:bin:"})

    assert not OsaScriptNotifier(host).available().ok
    assert not OsaScriptNotifier(host).send(Notification(title="t"), timeout=5).ok
    assert fakebin.calls("osascript") == []


@pytest.mark.parametrize(("cls", "tool"), [(TerminalNotifierApp, "terminal-notifier"),
                                           (OsaScriptNotifier, "osascript")])
def test_macos_availability(fakebin: FakeBin, cls: type[TerminalNotifierApp], tool: str) -> None:
    """Proves: available only on darwin and only with the tool on PATH, and says why not."""
    without = cls(mac(fakebin)).available()
    fakebin.add(tool)
    with_tool = cls(mac(fakebin)).available()
    on_linux = cls(Host(platform="linux", env={"PATH": str(fakebin.dir)})).available()

    assert (without.ok, with_tool.ok, on_linux.ok) == (False, True, False)
    assert "not found" in without.reason
    assert str(fakebin.dir) in with_tool.reason
    assert "macOS only" in on_linux.reason


# --- Windows: SnoreToast ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), HOSTILE, ids=HOSTILE_IDS)
def test_snoretoast_argv(fakebin: FakeBin, raw: str, shown: str) -> None:
    """Proves: SnoreToast gets title and message as the items after -t and -m (it takes the
    next item whatever it looks like), PowerShell's registered AUMID, and -silent for no sound.
    Does not prove: Windows' command-line round trip (list2cmdline) or that a toast shows."""
    fakebin.add("snoretoast")

    result = SnoreToastNotifier(windows(fakebin)).send(Notification(title=raw, body=raw),
                                                         timeout=10)

    assert result.ok, result
    assert fakebin.only_argv("snoretoast") == [
        "-t", as_title(shown), "-m", shown, "-appID", POWERSHELL_AUMID, "-silent"]


@pytest.mark.parametrize(("n", "env", "tail"), [
    (Notification(title="t", body="", sound="Notification.Mail"), {},
     ["-m", " ", "-appID", POWERSHELL_AUMID, "-s", "Notification.Mail"]),
    (Notification(title="t", body="b", sound="ms-winsoundevent:Notification.Looping.Alarm2",
                  icon="C:\\icons\\done.png"), {"CLAUDE_NOTIFY_APP_ID": "Acme.ClaudeNotify"},
     ["-m", "b", "-appID", "Acme.ClaudeNotify", "-p", "C:\\icons\\done.png",
      "-s", "Notification.Looping.Alarm2"]),
    (Notification(title="t", body="b", sound="C:\\done.wav", icon="icon.png"),
     {"CLAUDE_NOTIFY_APP_ID": "x' -install evil"},
     ["-m", "b", "-appID", POWERSHELL_AUMID]),
])
def test_snoretoast_options(fakebin: FakeBin, n: Notification, env: dict[str, str],
                            tail: list[str]) -> None:
    """Proves: an empty body becomes " " (SnoreToast shows its help and exits 0 otherwise),
    sound events pass, sound files fall back to the default sound, only absolute PNG icons
    pass, and a malformed app id is replaced. Does not prove: the toast's look."""
    fakebin.add("snoretoast")

    assert SnoreToastNotifier(windows(fakebin, **env)).send(n, timeout=10).ok

    assert fakebin.only_argv("snoretoast")[2:] == tail


@pytest.mark.parametrize(("code", "ok", "words"), [
    (0, True, "shown"), (2, True, "dismissed"), (255, False, "failed (exit 255): no shortcut"),
])
def test_snoretoast_exit_codes(fakebin: FakeBin, code: int, ok: bool, words: str) -> None:
    """Proves: SnoreToast's documented exit codes map to delivered / failed.
    Does not prove: the -1 that Windows reports as 4294967295 (a POSIX fake cannot exit so)."""
    fakebin.add("snoretoast", exit_code=code, stderr="no shortcut\n")

    result = SnoreToastNotifier(windows(fakebin)).send(Notification(title="t"), timeout=10)

    assert result.ok is ok
    assert words in result.detail


def test_snoretoast_availability(fakebin: FakeBin) -> None:
    """Proves: available only on win32 with SnoreToast on PATH."""
    assert not SnoreToastNotifier(windows(fakebin)).available().ok
    fakebin.add("snoretoast")
    assert SnoreToastNotifier(windows(fakebin)).available().ok
    linux = Host(platform="linux", env={"PATH": str(fakebin.dir)})
    assert "Windows only" in SnoreToastNotifier(linux).available().reason


# --- Windows: PowerShell toast, native and from WSL ---------------------------------------

_XML_LITERAL = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)")


def decode_powershell(argv: list[str]) -> tuple[str, str]:
    """The script behind -EncodedCommand, and the toast XML inside its base64 literal."""
    assert argv[:-1] == ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                         "-EncodedCommand"]
    script = base64.b64decode(argv[-1], validate=True).decode("utf-16-le")
    literals = _XML_LITERAL.findall(script)
    assert len(literals) == 1, script
    return script, base64.b64decode(literals[0], validate=True).decode("utf-8")


def parse_toast(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 - our own XML, parsed to check it is well formed


def code_of(script: str) -> str:
    """The script with its one data literal blanked: what PowerShell parses as code."""
    return _XML_LITERAL.sub("FromBase64String('')", script)


@pytest.mark.parametrize(("raw", "shown"), HOSTILE, ids=HOSTILE_IDS)
def test_powershell_toast_keeps_user_text_out_of_the_code(
        fakebin: FakeBin, raw: str, shown: str) -> None:
    """Proves: the decoded PowerShell is the same code for hostile and plain text, the text is
    only inside a base64 literal of well-formed XML whose two <text> nodes read back exactly.
    Does not prove: that Windows PowerShell runs the script or that a toast appears."""
    fakebin.add("powershell.exe")
    n = Notification(title=raw, body=raw)

    assert PowerShellToastNotifier(windows(fakebin)).send(n, timeout=10).ok

    script, xml = decode_powershell(fakebin.only_argv("powershell.exe"))
    plain_argv = build_powershell_argv(Notification(title="a", body="b"), exe="x",
                                       aumid=POWERSHELL_AUMID)
    assert code_of(script) == code_of(decode_powershell(plain_argv[1:])[0])
    assert raw not in script
    toast = parse_toast(xml)
    assert [t.text for t in toast.iter("text")] == [as_title(shown), shown]
    binding = toast.find("visual/binding")
    assert binding is not None
    assert binding.get("template") == "ToastGeneric"
    assert f"CreateToastNotifier({ps_quote(POWERSHELL_AUMID)})" in script


@pytest.mark.parametrize(("n", "audio", "reminder"), [
    (Notification(title="t", urgency="critical", sound="default"), None, True),
    (Notification(title="t", sound=None), {"silent": "true"}, False),
    (Notification(title="t", sound="Notification.Looping.Call3"),
     {"src": "ms-winsoundevent:Notification.Looping.Call3"}, False),
])
def test_toast_xml_urgency_and_sound(n: Notification, audio: dict[str, str] | None,
                                     reminder: bool) -> None:
    """Proves: critical becomes a reminder with a Dismiss button (kept on screen), no sound
    becomes a silent toast, a sound event is its ``src``. Does not prove: Windows honours them."""
    argv = build_powershell_argv(n, exe="powershell.exe", aumid=POWERSHELL_AUMID)
    toast = parse_toast(decode_powershell(argv[1:])[1])

    assert (toast.get("scenario") == "reminder") is reminder
    assert (toast.find("actions/action") is not None) is reminder
    found = toast.find("audio")
    assert (None if found is None else dict(found.attrib)) == audio


def test_worst_case_text_fits_the_windows_command_line() -> None:
    """Proves: even text where every character needs an XML entity or four UTF-8 bytes keeps
    the command line under Windows' 32,767 characters. Does not prove: anything at runtime."""
    n = Notification(title='"' * 10_000, body="&" * 5_000 + "🎉" * 5_000)
    argv = build_powershell_argv(n, exe=WSL_POWERSHELL, aumid=POWERSHELL_AUMID)

    assert len(subprocess.list2cmdline(argv)) < 32_767


def test_ps_quote_doubles_every_single_quote() -> None:
    """Proves: all four characters PowerShell takes for a single quote are doubled."""
    assert ps_quote("it's \u2018a\u2019 \u201ab\u201b") == (
        "'it''s \u2018\u2018a\u2019\u2019 \u201a\u201ab\u201b\u201b'")


@pytest.mark.parametrize(("icon", "src"), [
    ("/mnt/c/Users/u/done.png", "file:///C:/Users/u/done.png"),
    ("/home/u/done.png", None),
    (None, None),
])
def test_wsl_toast(fakebin: FakeBin, icon: str | None, src: str | None) -> None:
    """Proves: from WSL the same script goes to the powershell.exe on PATH, and an icon is used
    only where Windows can read it (``/mnt/X/``). Does not prove: WSL interop runs it."""
    fakebin.add("powershell.exe")
    host = Host(platform="linux", env={"PATH": str(fakebin.dir)}, is_wsl=True)

    assert WslToastNotifier(host).send(Notification(title="t", icon=icon), timeout=10).ok

    toast = parse_toast(decode_powershell(fakebin.only_argv("powershell.exe"))[1])
    image = toast.find("visual/binding/image")
    assert (None if image is None else image.get("src")) == src


def test_powershell_clixml_error_is_unwrapped(fakebin: FakeBin) -> None:
    """Proves: an error PowerShell wraps in CLIXML is reported as its plain first line.
    Does not prove: the exact CLIXML every PowerShell version writes."""
    fakebin.add("powershell.exe", exit_code=1, stderr=(
        "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/"
        "powershell/2004/04\"><S S=\"Error\">Access &lt;denied&gt;_x000D__x000A_</S>"
        "<S S=\"Error\">more_x000D__x000A_</S></Objs>"))

    result = PowerShellToastNotifier(windows(fakebin)).send(Notification(title="t"), timeout=10)

    assert not result.ok
    assert result.detail.endswith("Access <denied>")


def test_toast_and_wsl_availability(fakebin: FakeBin) -> None:
    """Proves: the native toast needs win32, the WSL one needs WSL, both need powershell.exe."""
    linux = Host(platform="linux", env={"PATH": str(fakebin.dir)})
    wsl = Host(platform="linux", env={"PATH": str(fakebin.dir)}, is_wsl=True)
    if not Path(WSL_POWERSHELL).exists():
        assert not WslToastNotifier(wsl).available().ok
    fakebin.add("powershell.exe")

    assert PowerShellToastNotifier(windows(fakebin)).available().ok
    assert WslToastNotifier(wsl).available().ok
    assert not PowerShellToastNotifier(linux).available().ok
    assert "not running inside WSL" in WslToastNotifier(linux).available().reason


# --- plyer --------------------------------------------------------------------------------


def linux_with_bus(fakebin: FakeBin) -> Host:
    return Host(platform="linux", env={"PATH": str(fakebin.dir),
                                       "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"})


@pytest.mark.parametrize(("raw", "shown"), HOSTILE, ids=HOSTILE_IDS)
def test_plyer_hands_text_to_notify_send(fakebin: FakeBin, raw: str, shown: str) -> None:
    """Proves: the real plyer, in a child Python, runs notify-send with title and message as
    its first two items, a leading "-" kept from reading as an option. Does not prove: plyer's
    Windows balloon (it needs Windows) or that notify-send reached a daemon."""
    fakebin.add("notify-send")

    result = PlyerNotifier(linux_with_bus(fakebin)).send(Notification(title=raw, body=raw),
                                                         timeout=20)

    assert result.ok, result
    argv = fakebin.only_argv("notify-send")
    guard = "\u200b" if shown.startswith("-") else ""
    assert argv[:2] == [guard + as_title(shown), guard + shown]
    assert argv[argv.index("-a") + 1] == "claude-notify"


def test_plyer_without_notify_send_fails_cleanly(fakebin: FakeBin) -> None:
    """Proves: plyer finding nothing to use is ok=False with its one-line reason, and none of
    its warnings or tracebacks reach our stderr. Does not prove: other plyer failure modes."""
    proc = subprocess.run(
        [sys.executable, "-c",
         "from claude_notify.notifiers.base import Host, Notification\n"
         "from claude_notify.notifiers.plyer_backend import PlyerNotifier\n"
         f"h = Host(platform='linux', env={{'PATH': {str(fakebin.dir)!r}}})\n"
         "r = PlyerNotifier(h).send(Notification(title='t'), timeout=20)\n"
         "print(r.ok, r.detail)\n"],
        capture_output=True, text=True, timeout=60, check=True, cwd=Path(__file__).parents[1])

    assert proc.stdout.startswith("False plyer: NotImplementedError")
    assert proc.stderr == ""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def test_plyer_hang_is_killed_with_what_it_started(fakebin: FakeBin) -> None:
    """Proves: a notify-send that hangs inside plyer is killed with plyer's child at the
    deadline and the result is retryable. Does not prove: the same on Windows."""
    fakebin.add("notify-send", sleep=60)

    start = time.monotonic()
    result = PlyerNotifier(linux_with_bus(fakebin)).send(Notification(title="t"), timeout=3.0)

    assert time.monotonic() - start < 3.0 + MARGIN
    assert (result.ok, result.retryable) == (False, True)
    pid = fakebin.calls("notify-send")[0]["pid"]
    assert isinstance(pid, int)
    deadline = time.monotonic() + 5
    while not _gone(pid):
        assert time.monotonic() < deadline, "the hung notify-send was left running"
        time.sleep(0.05)


def test_plyer_kwargs_for_windows() -> None:
    """Proves: plyer's balloon gets an icon only if it is an .ico (it raises otherwise) and a
    display time from ``timeout_ms``. Does not prove: the balloon shows."""
    ico = build_plyer_kwargs(Notification(title="t", icon="C:\\a.ico", timeout_ms=2500),
                             platform="win32")
    png = build_plyer_kwargs(Notification(title="t", icon="C:\\a.png"), platform="win32")

    assert (ico["app_icon"], ico["timeout"]) == ("C:\\a.ico", 2)
    assert (png["app_icon"], png["timeout"]) == ("", 10)


def test_plyer_flatpak_misdetection(tmp_path: Path) -> None:
    """Proves: a host with an /app directory is recognised as one plyer mistakes for Flatpak."""
    assert not plyer_takes_for_flatpak(tmp_path)
    (tmp_path / "app").mkdir()
    assert plyer_takes_for_flatpak(tmp_path)


@pytest.mark.parametrize(("host", "ok"), [
    (Host(platform="linux", env={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/bus"}), True),
    (Host(platform="linux", env={}), False),
    (Host(platform="win32", env={}), True),
    (Host(platform="darwin", env={}), False),
])
def test_plyer_availability(host: Host, ok: bool) -> None:
    """Proves: plyer is offered on Linux with a session bus (never autolaunching one) and on
    Windows, not on macOS where its API no longer shows anything."""
    if Path("/app").is_dir():
        pytest.skip("this machine has /app, which plyer takes for Flatpak")

    assert PlyerNotifier(host).available().ok is ok


def test_terminal_notifier_groups_a_tasks_notifications() -> None:
    """One task's "still running" notices give way to its final one: ``-group`` is the task."""
    from claude_notify.notifiers.base import Notification
    from claude_notify.notifiers.macos import build_terminal_notifier_argv

    argv = build_terminal_notifier_argv(Notification(title="t", group="task-1"), exe="tn",
                                        env={})
    assert argv[argv.index("-group") + 1] == "\\task-1"  # escaped like every user value
    assert "-group" not in build_terminal_notifier_argv(Notification(title="t"), exe="tn",
                                                        env={})
