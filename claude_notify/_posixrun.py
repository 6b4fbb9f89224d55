"""The runner's POSIX child: spawn, relay, signals, job control, reaping.

The child runs in its own process group (its own session with a pty) so a signal we forward
reaches the whole tree, and when we share a terminal with it we hand it the terminal's
foreground, as a shell does (see :mod:`claude_notify._terminal`). Ctrl-Z suspends the child and
then us; ``fg`` resumes both. The native Windows runner is :mod:`claude_notify._winrun`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import sys
import termios
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from claude_notify.errors import CommandNotExecutable, CommandNotFound
from claude_notify.runner import CHUNK, DRAIN_GRACE, FORWARDED, ChildExit, Observer, Tail

assert sys.platform != "win32"  # noqa: S101 - POSIX only: mypy --platform win32 skips the rest

from claude_notify._terminal import (  # noqa: E402 - POSIX only too, so after the assert
    Terminal,
    copy_winsize,
    is_foreground_tty,
    suspend_key,
    write_all,
)


def run_posix(argv: Sequence[str], *, use_pty: bool, tail: Tail, log: BinaryIO | None,
              observer: Observer | None) -> ChildExit:
    """Run ``argv`` to its end, relaying its output (see :func:`claude_notify.runner.run`)."""
    return Supervisor(argv, use_pty=use_pty, tail=tail, log=log, observer=observer).run()


class Supervisor:
    """One child's life: spawn, relay, signals, job control, reaping.

    One class (and so a module of some 430 lines) because every step reads and changes the same
    few facts about the child: its pid and status, its routes, the pty, the pending signals.
    """

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
        self.term = Terminal()
        self.master: int | None = None

    # -- life cycle -------------------------------------------------------------------

    def run(self) -> ChildExit:
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
            self.term.restore()
            for s, handler in old_handlers.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(old_wakeup)
            # Our stdin stays open, as _close_route leaves it: closed, the next socket or file
            # we open would take fd 0 (the D-Bus connection did, under tmux).
            for fd in (wake_r, wake_w, *(r for r in self.routes if r != 0)):
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
            self.term.enter_raw(self.master)  # before the child runs: its first keys are ours
        else:
            stdio, child_fds = self._pipe_stdio()
        extra: dict[str, Any] = {"preexec_fn": self._child_setup()}
        if not self.use_pty and self.term.tty_fd is None and sys.version_info >= (3, 11):
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
        self.term.give(self.pid)

    def _pipe_stdio(self) -> tuple[tuple[int | None, int, int], list[int]]:
        out_r, out_w = _big_pipe()
        err_r, err_w = _big_pipe()
        self.routes = {out_r: 1, err_r: 2}
        for fd in (1, 2):
            _enlarge_if_pipe(fd)  # one 1 MiB read becomes one write, not sixteen
        if is_foreground_tty(0):
            self.term.tty_fd = 0
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
        copy_winsize(src, slave)
        self.routes = {master: 1}
        stdin = slave if os.isatty(0) else None
        stderr = slave if os.isatty(2) else 2
        if stdin is not None:
            self.routes[0] = master
        return (stdin, slave, stderr), [slave]

    def _child_setup(self) -> Callable[[], None]:
        use_pty, tty_fd = self.use_pty, self.term.tty_fd

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
        """Relay until the output ends, then wait for the child, still forwarding signals."""
        self._relay_output(wake_r)
        self._await_child(wake_r)

    def _relay_output(self, wake_r: int) -> None:
        """Move output and keys until every output closes, or the child has ended and only its
        background children hold the output open (idle for :data:`DRAIN_GRACE`)."""
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        for fd in self.routes:
            poller.register(fd, select.POLLIN)
        outputs = {fd for fd, dst in self.routes.items() if dst in (1, 2)}
        exit_deadline: float | None = None
        while outputs:
            for fd, _events in self._poll(poller, exit_deadline):
                if fd == wake_r:
                    _drain(wake_r)
                elif not self._pump(fd):
                    self._end_route(poller, outputs, fd)
                elif self.status is not None:
                    exit_deadline = time.monotonic() + DRAIN_GRACE
            self._handle_signals()
            if self._child_ended(poller):
                exit_deadline = time.monotonic() + DRAIN_GRACE
            if exit_deadline is not None and time.monotonic() >= exit_deadline:
                break  # background children hold the output open; the task has ended
            self._tick_observer()

    def _poll(self, poller: select.poll, exit_deadline: float | None) -> list[tuple[int, int]]:
        try:
            return poller.poll(self._poll_timeout(exit_deadline))
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            return []

    def _end_route(self, poller: select.poll, outputs: set[int], fd: int) -> None:
        """``fd`` reached its end (or its reader went away): stop watching it and close it."""
        poller.unregister(fd)
        outputs.discard(fd)
        self._close_route(fd)

    def _child_ended(self, poller: select.poll) -> bool:
        """Reap the child when a SIGCHLD came; True when it has just ended. Keys stop there."""
        if self.status is not None or not self.child_changed:
            return False
        self.child_changed = False
        if not self._check_child():
            return False
        if self.master is not None and 0 in self.routes:
            poller.unregister(0)
            del self.routes[0]
        return True

    def _tick_observer(self) -> None:
        if self.observer is not None:
            deadline = self.observer.next_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                self.observer.tick()

    def _await_child(self, wake_r: int) -> None:
        """Output is closed but the child lives on: wait for it, still forwarding signals."""
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
        if not write_all(dst, chunk):
            return False  # our reader went away: close so the child gets SIGPIPE
        self.tail.feed(chunk)
        if self.log is not None:
            self.log.write(chunk)
        if self.observer is not None:
            self.observer.feed(self.buf, n)
        return True

    def _keystrokes(self, chunk: memoryview) -> None:
        """Forward keys; the suspend key (Ctrl-Z) we act on ourselves.

        The child leads its own session, an orphaned process group for the kernel, which
        therefore discards the SIGTSTP that Ctrl-Z would send. So when the child's terminal
        turns keys into signals, we stop the child and then ourselves, as a shell would.
        """
        if self.master is None:
            return
        suspend = suspend_key(self.master)
        cut = chunk.tobytes().find(suspend) if suspend is not None else -1
        if cut < 0:
            write_all(self.master, chunk)
            return
        write_all(self.master, chunk[:cut])
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
                copy_winsize(0 if os.isatty(0) else 1, self.master)
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
        if not self.term.job_control:
            return  # no job-control shell to return to; leave the child stopped
        self.term.restore(keep_state=True)
        os.kill(0, signal.SIGTSTP)
        # Execution continues here after `fg`; SIGCONT brought us back.
        self._resume()

    def _resume(self) -> None:
        if self.status is not None:
            return
        self.term.give(self.pid)
        if self.use_pty and self.term.raw_saved is None:
            self.term.enter_raw(self.master)
            if self.master is not None:
                copy_winsize(0 if os.isatty(0) else 1, self.master)
        try:
            os.killpg(self.pid, signal.SIGCONT)
        except OSError:
            pass

    # -- the end ---------------------------------------------------------------------------

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

    def _outcome(self, duration: float) -> ChildExit:
        status = self.status or 0
        rusage = self.rusage
        peak = cpu = None
        if rusage is not None:
            maxrss = getattr(rusage, "ru_maxrss", 0)
            if maxrss > self.own_peak:
                peak = maxrss if sys.platform == "darwin" else maxrss * 1024
            cpu = getattr(rusage, "ru_utime", 0.0) + getattr(rusage, "ru_stime", 0.0)
        if os.WIFSIGNALED(status):
            return ChildExit(None, os.WTERMSIG(status), self.forwarded, duration,
                           self.tail.value(), peak, cpu)
        return ChildExit(os.waitstatus_to_exitcode(status), None, self.forwarded, duration,
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

def _enlarge_if_pipe(fd: int) -> None:
    import stat

    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and hasattr(fcntl, "F_SETPIPE_SZ"):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass

def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
