"""Notifications as terminal escape sequences, written to the controlling terminal.

The only path that reaches the user's own screen over SSH: the sequence travels in-band to their
terminal (kitty, iTerm2, WezTerm, foot, Ghostty, Konsole...), which shows a desktop notification
on *their* machine. Inside tmux it is wrapped in DCS passthrough, which tmux only forwards with
``set -g allow-passthrough on`` (off by default since tmux 3.3).

Everything about escaping lives in the pure :func:`build_sequence`: notification text is data,
and control characters in it (ESC, BEL, C1 ST ``U+009C``...) would let a command's output end
our sequence early and smuggle its own escapes into the user's terminal.
"""

from __future__ import annotations

import errno
import os
import re
import select
import sys
import time
from base64 import b64encode
from collections.abc import Mapping
from typing import ClassVar, Final, Literal, get_args

from claude_notify.errors import ConfigError
from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

SequenceKind = Literal["99", "777", "9", "bell"]
"""OSC 99 (kitty), OSC 777 (urxvt, foot, WezTerm, Ghostty, kitty...), OSC 9 (iTerm2), BEL only."""
KINDS: Final[tuple[SequenceKind, ...]] = get_args(SequenceKind)

MAX_PAYLOAD: Final = 2048
"""Bytes of UTF-8 per text field (OSC 9 has one): kitty's limit for one OSC 99 payload."""

SEQUENCE_ENV: Final = "CLAUDE_NOTIFY_TERMINAL_SEQUENCE"
BELL_ENV: Final = "CLAUDE_NOTIFY_TERMINAL_BELL"

ESC: Final = b"\x1b"
BEL: Final = b"\x07"
ST: Final = b"\x1b\\"

LINE_SEPARATOR: Final = " ⏎ "
"""Stands in for a line break where the sequence cannot carry one (titles, OSC 777 and 9)."""
SEMICOLON_STANDIN: Final = "\uff1b"
"""Fullwidth semicolon: an OSC 777 title cannot hold ``;``, which would end the title field."""
OSC9_GUARD: Final = "\u200b"
"""Zero-width space before an OSC 9 text that starts with a digit, so ConEmu and Windows
Terminal do not read ``4;...`` as a progress bar or ``7;...`` as "run a process"."""

_URGENCY_CODE: Final = {"low": 0, "normal": 1, "critical": 2}
_NEWLINES = re.compile("\r\n|[\r\n\u2028\u2029\x85]")
# C0 controls, DEL and C1 controls (U+009C is ST to terminals that decode before parsing).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_IDENT_UNSAFE = re.compile(r"[^a-zA-Z0-9_+.-]")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def detect_kind(env: Mapping[str, str]) -> tuple[SequenceKind, str]:
    """Which sequence this terminal understands, and the fact that decided it.

    Raises :class:`ConfigError` for an unknown ``CLAUDE_NOTIFY_TERMINAL_SEQUENCE``.
    """
    override = env.get(SEQUENCE_ENV, "auto").strip().lower()
    if override in KINDS:
        return override, f"{SEQUENCE_ENV}={override}"
    if override not in ("", "auto"):
        raise ConfigError(f"{SEQUENCE_ENV}={override!r}: expected auto, {', '.join(KINDS)}")
    if env.get("TERM") == "xterm-kitty":
        return "99", "TERM=xterm-kitty"
    if env.get("KITTY_WINDOW_ID"):
        return "99", "KITTY_WINDOW_ID is set"
    if env.get("TERM_PROGRAM") == "iTerm.app":
        return "9", "TERM_PROGRAM=iTerm.app"
    # Forwarded by ssh's default SendEnv LC_*, unlike TERM_PROGRAM.
    if env.get("LC_TERMINAL") == "iTerm2":
        return "9", "LC_TERMINAL=iTerm2"
    return "777", "the most widely understood sequence"


def bell_wanted(env: Mapping[str, str]) -> bool:
    """``CLAUDE_NOTIFY_TERMINAL_BELL`` (default on): also ring the bell, which tmux forwards."""
    value = env.get(BELL_ENV, "").strip().lower()
    if value in _TRUE or not value:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{BELL_ENV}={value!r}: expected on or off")


def clean(text: str, *, newlines: bool) -> str:
    """``text`` safe inside an escape sequence: no control characters, valid UTF-8.

    Line breaks become ``\\n`` when ``newlines`` is true, else :data:`LINE_SEPARATOR`; tabs become
    spaces; surrogate pairs are joined and lone surrogates become U+FFFD.
    """
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    lines = [_CONTROLS.sub("", line) for line in _NEWLINES.split(text.replace("\t", " "))]
    if newlines:
        return "\n".join(lines)
    return LINE_SEPARATOR.join(line.strip() for line in lines if line.strip())


def fit(text: str, limit: int = MAX_PAYLOAD) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 on a character boundary, marked with …."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    ellipsis = "…"
    cut = raw[: limit - len(ellipsis.encode("utf-8"))].decode("utf-8", "ignore")
    return cut.rstrip("\u200d") + ellipsis  # a dangling zero-width joiner would glue onto "…"


def build_sequence(
    n: Notification,
    kind: SequenceKind,
    *,
    tmux: bool,
    ident: str = "claude-notify",
    bell: bool = False,
) -> bytes:
    """The bytes to write to the terminal for ``n``: the sequence, tmux-wrapped, then a BEL.

    ``ident`` names an OSC 99 notification (kitty replaces a shown one with the same id).
    """
    title = clean(n.title, newlines=False)
    body = clean(n.body, newlines=kind == "99")  # only base64 payloads can carry line breaks
    if not title and not body.strip():
        title = clean(n.app_name, newlines=False) or "claude-notify"
    if kind == "bell":
        return BEL
    if kind == "99":
        seq = _osc99(title, body, urgency=_URGENCY_CODE.get(n.urgency, 1), ident=ident)
    elif kind == "777":
        seq = _osc777(title, body)
    else:
        seq = _osc9(title, body)
    if tmux:
        seq = wrap_tmux(seq)
    return seq + BEL if bell else seq


def wrap_tmux(seq: bytes) -> bytes:
    """tmux's DCS passthrough: ``ESC P tmux;`` + the sequence with every ESC doubled + ST."""
    return b"\x1bPtmux;" + seq.replace(ESC, ESC + ESC) + ST


def _osc99(title: str, body: str, *, urgency: int, ident: str) -> bytes:
    # Base64 (e=1) keeps newlines and makes the payload inert: nothing in it can end the OSC.
    ident = _IDENT_UNSAFE.sub("", ident) or "0"
    chunks = [("title", fit(title), 0), ("body", fit(body), 1)]
    return b"".join(
        b"\x1b]99;%s;%s"
        % (f"i={ident}:d={done}:u={urgency}:e=1:p={kind}".encode(), b64encode(text.encode("utf-8")))
        + ST
        for kind, text, done in chunks
    )


def _osc777(title: str, body: str) -> bytes:
    title = title.replace(";", SEMICOLON_STANDIN)  # the body, the last field, may keep its own
    return b"\x1b]777;notify;" + f"{fit(title)};{fit(body)}".encode() + BEL


def _osc9(title: str, body: str) -> bytes:
    text = f"{title}: {body}" if title and body else title or body
    text = text.lstrip()
    if text[:1].isdigit():
        text = OSC9_GUARD + text
    return b"\x1b]9;" + fit(text).encode("utf-8") + BEL


class TerminalNotifier:
    """Write a notification escape sequence to the controlling terminal."""

    name: ClassVar[str] = "terminal"

    def __init__(
        self, host: Host, *, kind: SequenceKind | None = None, bell: bool | None = None
    ) -> None:
        self.host = host
        configured = host.settings.get("terminal.sequence")
        if kind is None and configured in KINDS:
            kind = configured  # one of KINDS, checked above
        bell_setting = host.settings.get("terminal.bell")
        if bell is None and isinstance(bell_setting, bool):
            bell = bell_setting
        self._kind = kind
        self._bell = bell

    def sequence_kind(self) -> tuple[SequenceKind, str]:
        """The sequence to send and why; :class:`ConfigError` for a bad override."""
        if self._kind is not None:
            return self._kind, "chosen by configuration"
        return detect_kind(self.host.env)

    def available(self) -> Availability:
        try:
            kind, why = self.sequence_kind()
            bell_wanted(self.host.env)
        except ConfigError as exc:
            return Availability(False, str(exc))
        path = self.host.tty_path
        if not path:
            return Availability(False, "no controlling terminal")
        try:
            os.close(_open_tty(path))
        except OSError as exc:
            return Availability(False, f"cannot open {path}: {exc.strerror or exc}")
        return Availability(True, f"{_describe(kind, self.host)} to {path} ({why})")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        deadline = time.monotonic() + timeout
        try:
            kind, _ = self.sequence_kind()
            bell = self._bell if self._bell is not None else bell_wanted(self.host.env)
        except ConfigError as exc:
            return DeliveryResult(self.name, False, str(exc))
        path = self.host.tty_path
        if not path:
            return DeliveryResult(self.name, False, "no controlling terminal")
        data = build_sequence(
            notification,
            kind,
            tmux=self.host.in_tmux,
            ident=f"claude-notify-{os.urandom(4).hex()}",
            bell=bell,
        )
        try:
            fd = _open_tty(path)
        except OSError as exc:
            return DeliveryResult(self.name, False, f"cannot open {path}: {exc.strerror or exc}")
        try:
            _write_all(fd, data, deadline)
        except TimeoutError:
            why = f"{path} took no output for {timeout:g}s (output stopped, e.g. by Ctrl-S?)"
            return DeliveryResult(self.name, False, why, retryable=True)
        except OSError as exc:
            return DeliveryResult(
                self.name, False, f"cannot write to {path}: {exc.strerror or exc}"
            )
        finally:
            os.close(fd)
        return DeliveryResult(self.name, True, f"{_describe(kind, self.host)} written to {path}")


def _describe(kind: SequenceKind, host: Host) -> str:
    what = "a terminal bell" if kind == "bell" else f"OSC {kind}"
    if host.in_tmux and kind != "bell":
        what += " via tmux passthrough (needs `set -g allow-passthrough on`)"
    return what


def _open_tty(path: str) -> int:
    # Non-blocking so a terminal that stops reading (Ctrl-S, a hung ssh) cannot hold us past the
    # deadline; O_NOCTTY so opening never makes it our controlling terminal. The new open file
    # description keeps O_NONBLOCK away from the stdin/stdout we share with the user's shell.
    if sys.platform == "win32":  # no tty device to open; the console is another API entirely
        raise OSError(errno.ENODEV, "no POSIX terminal device on Windows")
    else:  # not after the if: mypy --platform win32 would call it unreachable
        return os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    """Write all of ``data`` by ``deadline`` or raise ``TimeoutError``."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if len(view) < len(data):
                _abandon(fd)
            raise TimeoutError
        select.select([], [fd], [], remaining)


def _abandon(fd: int) -> None:
    """After a partial write, try to end the open OSC/DCS so the terminal shows output again."""
    try:
        os.write(fd, ST)
    except OSError:
        pass
