"""Our terminal while a child runs (POSIX): its modes, its foreground, its window size.

Used by :mod:`claude_notify._posixrun`. A pty child gets our terminal in raw mode (restored on
every exit path) so its keys reach the child untouched; a child that shares our terminal (pipe
mode) gets the terminal's foreground, as a shell hands it to a job, and it comes back to us
when the child stops or ends.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sys
import termios
from typing import Any

assert sys.platform != "win32"  # noqa: S101 - POSIX only: mypy --platform win32 skips the rest


class Terminal:
    """The state we change on our terminal, so that it can be put back."""

    def __init__(self) -> None:
        self.tty_fd: int | None = None
        """Our terminal, when the child shares it (pipe mode): its foreground is handed over."""
        self.raw_saved: list[Any] | None = None
        """Our stdin's mode before it went raw (pty mode)."""
        self.opost_saved: list[Any] | None = None
        """Our stdout's mode before output processing went off (pty mode, stdin not a tty)."""

    @property
    def job_control(self) -> bool:
        """Whether a job-control shell waits behind us, to return to on Ctrl-Z."""
        return self.tty_fd is not None or self.raw_saved is not None

    def give(self, pgid: int) -> None:
        """Make ``pgid`` the terminal's foreground process group (when we share one)."""
        if self.tty_fd is None:
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(self.tty_fd, pgid)
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, old)

    def enter_raw(self, master: int | None) -> None:
        """Raw mode for a pty child: keys go to ``master`` as typed."""
        if os.isatty(0):
            self.raw_saved = termios.tcgetattr(0)
            self._take_typeahead(master)
            import tty

            tty.setraw(0, termios.TCSANOW)
        elif os.isatty(1):
            # The pty already turned \n into \r\n; our terminal must not do it twice.
            self.opost_saved = termios.tcgetattr(1)
            mode = termios.tcgetattr(1)
            mode[1] &= ~termios.OPOST
            termios.tcsetattr(1, termios.TCSANOW, mode)

    def _take_typeahead(self, master: int | None) -> None:
        """Forward the lines typed before we go raw, and their ends of file, as such.

        A terminal in canonical mode holds an end of file typed ahead (Ctrl-D, or the one
        script(1) sends when its own input ends) as a NUL marker, which turns into a real
        NUL byte once the mode is raw: forwarded as a key, the child's terminal echoed
        ``^@`` into the output and the child never saw its end of file. So complete lines
        are read while the mode is still canonical, and each end of file is handed on as the
        child terminal's own EOF character, which it does not echo.
        """
        if master is None or not (self.raw_saved and self.raw_saved[3] & termios.ICANON):
            return  # not canonical: a read returns keys, not lines, and nothing is held
        try:
            eof = termios.tcgetattr(master)[6][termios.VEOF]
        except termios.error:
            return
        poller = select.poll()
        poller.register(0, select.POLLIN)
        for _ in range(256):  # bounded: a hung-up terminal reads as end of file forever
            ready = poller.poll(0)
            if not ready or not ready[0][1] & select.POLLIN:
                return
            try:
                line = os.read(0, 4096)
            except OSError:
                return
            if line:
                write_all(master, memoryview(line))
            if not line.endswith(b"\n") and isinstance(eof, bytes) and eof != b"\0":
                write_all(master, memoryview(eof))

    def restore(self, *, keep_state: bool = False) -> None:
        """Our modes and our foreground back; ``keep_state`` to hand them over again on resume."""
        for fd, saved in ((0, self.raw_saved), (1, self.opost_saved)):
            if saved is not None:
                try:
                    termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
                except termios.error:
                    pass
        self.raw_saved = self.opost_saved = None
        if self.tty_fd is not None:
            self.give(os.getpgrp())
            if not keep_state:
                self.tty_fd = None


def suspend_key(fd: int) -> bytes | None:
    """The terminal's suspend character when it generates signals, else ``None``."""
    try:
        mode = termios.tcgetattr(fd)
    except termios.error:
        return None
    key = mode[6][termios.VSUSP]
    key = key if isinstance(key, bytes) else bytes([key])
    if not mode[3] & termios.ISIG or key in (b"\0", b"\xff"):
        return None
    return key


def is_foreground_tty(fd: int) -> bool:
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def write_all(fd: int, data: memoryview) -> bool:
    """Write everything (to the pty, or our output); False when the reader is gone (EPIPE)."""
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return False
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        data = data[n:]
    return True
