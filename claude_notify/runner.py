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
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, Protocol

from claude_notify.errors import CommandNotExecutable, CommandNotFound

if sys.platform != "win32":
    import fcntl
    import select
    import termios

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
class Outcome:
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

    def feed(self, chunk: memoryview) -> None:
        """Called with every chunk relayed, stdout and stderr alike."""

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
) -> Outcome:
    """Run ``argv`` to its end, relaying output; raise for a command that cannot start.

    With ``keep_handlers`` the termination signals stay caught afterwards (by a handler that
    raises :class:`LateSignal`), so one arriving while we notify cannot kill us with the
    wrong exit status.
    """
    if sys.platform == "win32":
        from claude_notify._winrun import run_windows

        return run_windows(argv, tail=tail, log=log, observer=observer)
    else:  # a platform branch: mypy skips it elsewhere
        outcome = _Supervisor(argv, use_pty=use_pty, tail=tail, log=log, observer=observer).run()
        if keep_handlers:
            for signum in FORWARDED:
                signal.signal(signum, _late_signal)
        return outcome


class LateSignal(BaseException):
    """A termination signal arrived after the child ended: finish up and leave."""


def _late_signal(signum: int, frame: object) -> None:
    raise LateSignal(signum)


if sys.platform != "win32":

    class _Supervisor:
        """One child's life: spawn, relay, signals, job control, reaping."""

        def __init__(self, argv: Sequence[str], *, use_pty: bool, tail: Tail,
                     log: BinaryIO | None, observer: Observer | None) -> None:
            self.argv = list(argv)
            self.use_pty = use_pty
            self.tail = tail
            self.log = log
            self.observer = observer
            self.buf = bytearray(CHUNK)
            self.view = memoryview(self.buf)
            self.routes: dict[int, int] = {}  # readable fd -> fd to write it to
            self.pid = 0
            self.status: int | None = None
            self.rusage: object = None
            self.forwarded: int | None = None
            self.pending: list[int] = []
            self.child_changed = True
            self.own_peak = 0
            self.tty_fd: int | None = None  # our terminal, when the child shares it (pipe mode)
            self.master: int | None = None
            self.raw_saved: list[Any] | None = None
            self.opost_saved: list[Any] | None = None

        # -- life cycle -------------------------------------------------------------------

        def run(self) -> Outcome:
            wake_r, wake_w = os.pipe()
            for fd in (wake_r, wake_w):
                os.set_blocking(fd, False)
                os.set_inheritable(fd, False)
            old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
            handled = (*FORWARDED, signal.SIGCHLD, signal.SIGWINCH, signal.SIGCONT)
            old_handlers = {s: signal.signal(s, self._on_signal) for s in handled}
            start = time.monotonic()
            try:
                self._spawn()
                self._relay(wake_r)
            finally:
                self._restore_terminal()
                for s, handler in old_handlers.items():
                    signal.signal(s, handler)
                signal.set_wakeup_fd(old_wakeup)
                for fd in (wake_r, wake_w, *self.routes):
                    os.close(fd)
                if self.master is not None and self.master not in self.routes:
                    os.close(self.master)
                self._reap_or_kill()
            return self._outcome(time.monotonic() - start)

        def _on_signal(self, signum: int, frame: object) -> None:
            self.pending.append(signum)

        def _spawn(self) -> None:
            import subprocess

            if self.use_pty:
                stdio, child_fds = self._pty_stdio()
                self._enter_raw()  # before the child runs: its first keystrokes are ours
            else:
                stdio, child_fds = self._pipe_stdio()
            extra: dict[str, Any] = {"preexec_fn": self._child_setup()}
            if not self.use_pty and self.tty_fd is None and sys.version_info >= (3, 11):
                # No terminal to hand over: a plain new process group lets subprocess use
                # vfork, much cheaper than fork from a big parent.
                extra = {"process_group": 0}
            try:
                proc = subprocess.Popen(
                    self.argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                    close_fds=True, **extra,
                )
            except FileNotFoundError:
                raise CommandNotFound(f"command not found: {self.argv[0]}") from None
            except (PermissionError, IsADirectoryError, NotADirectoryError):
                raise CommandNotExecutable(f"permission denied: {self.argv[0]}") from None
            except OSError as exc:
                raise CommandNotExecutable(f"cannot execute {self.argv[0]}: "
                                           f"{exc.strerror}") from None
            except subprocess.SubprocessError as exc:
                raise CommandNotExecutable(f"cannot start {self.argv[0]}: {exc}") from None
            finally:
                for fd in child_fds:
                    os.close(fd)
            # We reap with wait4() for the resource usage; Popen must not try again.
            proc.returncode = 0
            self.pid = proc.pid
            import resource

            # The kernel counts our own image in the child's peak until its exec: a child that
            # stays below this cannot be measured this way.
            self.own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if self.tty_fd is not None:
                self._give_terminal(self.pid)

        def _pipe_stdio(self) -> tuple[tuple[int | None, int, int], list[int]]:
            out_r, out_w = _big_pipe()
            err_r, err_w = _big_pipe()
            self.routes = {out_r: 1, err_r: 2}
            for fd in (1, 2):
                _enlarge_if_pipe(fd)  # one 1 MiB read becomes one write, not sixteen
            if _is_foreground_tty(0):
                self.tty_fd = 0
            return (None, out_w, err_w), [out_w, err_w]

        def _pty_stdio(self) -> tuple[tuple[int | None, int, int], list[int]]:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            self.master = master
            src = 0 if os.isatty(0) else 1
            try:
                termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(src))
            except termios.error:
                pass
            _copy_winsize(src, slave)
            self.routes = {master: 1}
            stdin = slave if os.isatty(0) else None
            stderr = slave if os.isatty(2) else 2
            if stdin is not None:
                self.routes[0] = master
            return (stdin, slave, stderr), [slave]

        def _child_setup(self) -> Callable[[], None]:
            use_pty, tty_fd = self.use_pty, self.tty_fd

            def setup() -> None:  # runs in the child between fork and exec
                if use_pty:
                    os.setsid()
                    fcntl.ioctl(1, termios.TIOCSCTTY, 0)
                    return
                os.setpgid(0, 0)
                if tty_fd is not None:
                    # Take the terminal's foreground ourselves too, or a child that reads the
                    # terminal before the parent's tcsetpgrp() would be stopped by SIGTTIN.
                    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                    try:
                        os.tcsetpgrp(tty_fd, os.getpgrp())
                    except OSError:
                        pass
                    signal.signal(signal.SIGTTOU, old)

            return setup

        # -- the relay loop ---------------------------------------------------------------

        def _relay(self, wake_r: int) -> None:
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            for fd in self.routes:
                poller.register(fd, select.POLLIN)
            outputs = {fd for fd, dst in self.routes.items() if dst in (1, 2)}
            exit_deadline: float | None = None
            while outputs:
                timeout = self._poll_timeout(exit_deadline)
                try:
                    ready = poller.poll(timeout)
                except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                    ready = []
                for fd, _events in ready:
                    if fd == wake_r:
                        _drain(wake_r)
                        continue
                    if not self._pump(fd):
                        poller.unregister(fd)
                        if fd in outputs:
                            outputs.discard(fd)
                        self._close_route(fd)
                    elif self.status is not None:
                        exit_deadline = time.monotonic() + DRAIN_GRACE
                self._handle_signals()
                if self.status is None and self.child_changed:
                    self.child_changed = False
                    if self._check_child():
                        exit_deadline = time.monotonic() + DRAIN_GRACE
                        if self.master is not None and 0 in self.routes:
                            poller.unregister(0)
                            del self.routes[0]
                if exit_deadline is not None and time.monotonic() >= exit_deadline:
                    break  # background children hold the output open; the task has ended
                if self.observer is not None:
                    deadline = self.observer.next_deadline()
                    if deadline is not None and time.monotonic() >= deadline:
                        self.observer.tick()
            # Output is closed but the child lives on: wait for it, still forwarding signals.
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            while self.status is None:
                self._handle_signals()
                self._check_child()
                if self.status is None:
                    poller.poll()
                    _drain(wake_r)

        def _poll_timeout(self, exit_deadline: float | None) -> int | None:
            deadlines = [d for d in (exit_deadline,
                                     self.observer.next_deadline() if self.observer else None)
                         if d is not None]
            if not deadlines:
                return None
            return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

        def _pump(self, fd: int) -> bool:
            """Move one chunk from ``fd`` to where it goes; False at end of stream."""
            try:
                n = os.readv(fd, [self.buf])
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty: every slave fd closed
                    return False
                raise
            if n == 0:
                return False
            chunk = self.view[:n]
            dst = self.routes[fd]
            if fd == 0:  # keystrokes to the child's terminal
                self._keystrokes(chunk)
                return True
            if not _write_all(dst, chunk):
                return False  # our reader went away: close so the child gets SIGPIPE
            self.tail.feed(chunk)
            if self.log is not None:
                self.log.write(chunk)
            if self.observer is not None:
                self.observer.feed(chunk)
            return True

        def _keystrokes(self, chunk: memoryview) -> None:
            """Forward keys; the suspend key (Ctrl-Z) we act on ourselves.

            The child leads its own session, an orphaned process group for the kernel, which
            therefore discards the SIGTSTP that Ctrl-Z would send. So when the child's terminal
            turns keys into signals, we stop the child and then ourselves, as a shell would.
            """
            if self.master is None:
                return
            suspend = _suspend_key(self.master)
            cut = chunk.tobytes().find(suspend) if suspend is not None else -1
            if cut < 0:
                _write_all(self.master, chunk)
                return
            _write_all(self.master, chunk[:cut])
            try:
                os.killpg(self.pid, signal.SIGSTOP)
            except OSError:
                return
            self._suspend()

        def _close_route(self, fd: int) -> None:
            del self.routes[fd]
            if fd != 0:
                os.close(fd)
                if fd == self.master:
                    self.master = None

        # -- signals and job control ------------------------------------------------------

        def _handle_signals(self) -> None:
            while self.pending:
                signum = self.pending.pop(0)
                if signum in FORWARDED:
                    self.forwarded = signum
                    self._signal_child(signum)
                    self._signal_child(signal.SIGCONT)  # a stopped child must wake to die
                elif signum == signal.SIGCHLD:
                    self.child_changed = True
                elif signum == signal.SIGWINCH and self.master is not None:
                    _copy_winsize(0 if os.isatty(0) else 1, self.master)
                elif signum == signal.SIGCONT:
                    self._resume()

        def _signal_child(self, signum: int) -> None:
            if self.status is not None:
                return
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                pass
            except PermissionError:  # a setuid child left our group's reach
                os.kill(self.pid, signum)

        def _check_child(self, *, block: bool = False) -> bool:
            """Reap the child if it ended (True); suspend with it if it stopped."""
            flags = os.WUNTRACED | (0 if block else os.WNOHANG)
            try:
                pid, status, rusage = os.wait4(self.pid, flags)
            except ChildProcessError:
                self.status = 0
                return True
            if pid == 0:
                return False
            if os.WIFSTOPPED(status):
                self._suspend()
                return False
            self.status, self.rusage = status, rusage
            return True

        def _suspend(self) -> None:
            """The child stopped (Ctrl-Z): give the terminal back and stop ourselves too."""
            if self.tty_fd is None and self.raw_saved is None:
                return  # no job-control shell to return to; leave the child stopped
            self._restore_terminal(keep_state=True)
            os.kill(0, signal.SIGTSTP)
            # Execution continues here after `fg`; SIGCONT brought us back.
            self._resume()

        def _resume(self) -> None:
            if self.status is not None:
                return
            if self.tty_fd is not None:
                self._give_terminal(self.pid)
            if self.use_pty and self.raw_saved is None:
                self._enter_raw()
                if self.master is not None:
                    _copy_winsize(0 if os.isatty(0) else 1, self.master)
            try:
                os.killpg(self.pid, signal.SIGCONT)
            except OSError:
                pass

        # -- terminals --------------------------------------------------------------------

        def _give_terminal(self, pgid: int) -> None:
            if self.tty_fd is None:
                return
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(self.tty_fd, pgid)
            except OSError:
                pass
            finally:
                signal.signal(signal.SIGTTOU, old)

        def _enter_raw(self) -> None:
            if os.isatty(0):
                self.raw_saved = termios.tcgetattr(0)
                self._take_typeahead()
                import tty

                tty.setraw(0, termios.TCSANOW)
            elif os.isatty(1):
                # The pty already turned \n into \r\n; our terminal must not do it twice.
                self.opost_saved = termios.tcgetattr(1)
                mode = termios.tcgetattr(1)
                mode[1] &= ~termios.OPOST
                termios.tcsetattr(1, termios.TCSANOW, mode)

        def _take_typeahead(self) -> None:
            """Forward the lines typed before we go raw, and their ends of file, as such.

            A terminal in canonical mode holds an end of file typed ahead (Ctrl-D, or the one
            script(1) sends when its own input ends) as a NUL marker, which turns into a real
            NUL byte once the mode is raw: forwarded as a key, the child's terminal echoed
            ``^@`` into the output and the child never saw its end of file. So complete lines
            are read while the mode is still canonical, and each end of file is handed on as the
            child terminal's own EOF character, which it does not echo.
            """
            if self.master is None or not (self.raw_saved and self.raw_saved[3] & termios.ICANON):
                return  # not canonical: a read returns keys, not lines, and nothing is held
            try:
                eof = termios.tcgetattr(self.master)[6][termios.VEOF]
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
                if line and self.master is not None:
                    _write_all(self.master, memoryview(line))
                if not line.endswith(b"\n") and isinstance(eof, bytes) and eof != b"\0":
                    _write_all(self.master, memoryview(eof))

        def _restore_terminal(self, *, keep_state: bool = False) -> None:
            for fd, saved in ((0, self.raw_saved), (1, self.opost_saved)):
                if saved is not None:
                    try:
                        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
                    except termios.error:
                        pass
            self.raw_saved = self.opost_saved = None
            if self.tty_fd is not None:
                self._give_terminal(os.getpgrp())
                if not keep_state:
                    self.tty_fd = None

        def _reap_or_kill(self) -> None:
            """Never leave a zombie, nor — when we were told to stop — an orphaned tree."""
            if self.pid == 0:
                return
            if self.status is None:  # we are unwinding from an error: end the child
                self._signal_child(signal.SIGKILL)
                self._check_child(block=True)
            if self.forwarded is not None:
                try:
                    os.killpg(self.pid, signal.SIGTERM)
                except OSError:
                    pass

        def _outcome(self, duration: float) -> Outcome:
            status = self.status or 0
            rusage = self.rusage
            peak = cpu = None
            if rusage is not None:
                maxrss = getattr(rusage, "ru_maxrss", 0)
                if maxrss > self.own_peak:
                    peak = maxrss if sys.platform == "darwin" else maxrss * 1024
                cpu = getattr(rusage, "ru_utime", 0.0) + getattr(rusage, "ru_stime", 0.0)
            if os.WIFSIGNALED(status):
                return Outcome(None, os.WTERMSIG(status), self.forwarded, duration,
                               self.tail.value(), peak, cpu)
            return Outcome(os.waitstatus_to_exitcode(status), None, self.forwarded, duration,
                           self.tail.value(), peak, cpu)

    def _big_pipe() -> tuple[int, int]:
        r, w = os.pipe()
        os.set_inheritable(r, False)
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, CHUNK)
            except OSError:
                pass  # over /proc/sys/fs/pipe-max-size: the default size still works
        return r, w

    def _suspend_key(fd: int) -> bytes | None:
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

    def _enlarge_if_pipe(fd: int) -> None:
        import stat

        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and hasattr(fcntl, "F_SETPIPE_SZ"):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass

    def _is_foreground_tty(fd: int) -> bool:
        try:
            return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            return False

    def _copy_winsize(src: int, dst: int) -> None:
        try:
            size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def _write_all(fd: int, data: memoryview) -> bool:
        """Write everything; False when the reader is gone (EPIPE)."""
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
