"""Run a child process, relay its output untouched, and report how it ended.

Two ways to relay, chosen by the caller:

* **pipes** — stdout and stderr stay separate streams. Large reads into one reused buffer, pipes
  enlarged with ``F_SETPIPE_SZ``, the tail kept by copying only its last bytes: the relay is
  bound by the kernel's copies, not by Python.
* **pty** — when our stdout is a terminal, the child gets a pseudo-terminal so colours, progress
  bars, ``isatty()`` and prompts behave as without us. Our terminal is put in raw mode (restored on
  every exit path), keystrokes are forwarded, the window size follows ours.

The child runs in its own process group (its own session with a pty) so a signal we forward
reaches the whole tree, and when we share a terminal with it we hand it the terminal's
foreground, as a shell does. Ctrl-Z suspends the child and then us; ``fg`` resumes both.

This module holds what both platforms share and :func:`run`; the child's life is in
:mod:`claude_notify._posixrun` (its terminal in :mod:`claude_notify._terminal`) or
:mod:`claude_notify._winrun`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, Protocol

CHUNK: Final = 1 << 20
"""Bytes per read: as large as the biggest pipe, so one syscall moves what the pipe holds."""

DRAIN_GRACE: Final = 0.5
"""After the child exits, how long output held open by its background children may stay idle."""

if sys.platform == "win32":
    FORWARDED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
else:
    FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    """Signals that, sent to us, are passed on to the child's process group."""


@dataclass(frozen=True, slots=True)
class ChildExit:
    """How the child ended."""

    exit_code: int | None
    """Its exit code, or ``None`` when a signal killed it."""
    signal: int | None
    """The signal that killed it, if any."""
    forwarded: int | None
    """A termination signal we received and passed on, if any."""
    duration_s: float
    tail: bytes
    peak_rss_bytes: int | None
    cpu_time_s: float | None

    @property
    def wrapper_exit(self) -> int:
        """What ``run`` exits with: the child's code, or 128+N for death by signal N."""
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)


class Observer(Protocol):
    """Watches the output while the child runs (``--match``, ``--every``)."""

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        """Called with every chunk relayed, stdout and stderr alike: ``buf[:n]``.

        ``buf`` is the runner's own buffer, reused for the next chunk: search it in place, and
        copy only what must outlive the call.
        """

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` at which :meth:`tick` wants to run, if ever."""

    def tick(self) -> None:
        """Called once the deadline has passed."""


class Tail:
    """The last ``size`` bytes of the output, kept by copying at most ``size`` bytes a chunk."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = bytearray()

    def feed(self, chunk: memoryview) -> None:
        if self.size <= 0:
            return
        if len(chunk) >= self.size:
            self._buf[:] = chunk[len(chunk) - self.size :]
            return
        self._buf += chunk
        if len(self._buf) > 2 * self.size:
            del self._buf[: len(self._buf) - self.size]

    def value(self) -> bytes:
        return bytes(self._buf[-self.size :]) if self.size > 0 else b""


def run(
    argv: Sequence[str],
    *,
    use_pty: bool,
    tail: Tail,
    log: BinaryIO | None = None,
    observer: Observer | None = None,
    keep_handlers: bool = False,
) -> ChildExit:
    """Run ``argv`` to its end, relaying output; raise for a command that cannot start.

    With ``keep_handlers`` the termination signals stay caught afterwards (by a handler that
    raises :class:`LateSignal`), so one arriving while we notify cannot kill us with the
    wrong exit status.
    """
    if sys.platform == "win32":
        from claude_notify._winrun import run_windows

        return run_windows(argv, tail=tail, log=log, observer=observer)
    else:  # a platform branch: mypy skips it elsewhere
        from claude_notify._posixrun import run_posix

        outcome = run_posix(argv, use_pty=use_pty, tail=tail, log=log, observer=observer)
        if keep_handlers:
            for signum in FORWARDED:
                signal.signal(signum, _late_signal)
        return outcome


class LateSignal(BaseException):
    """A termination signal arrived after the child ended: finish up and leave."""


def _late_signal(signum: int, frame: object) -> None:
    raise LateSignal(signum)
