"""``claude-notify shell-done``: the exact rules for a command the shell snippet reports.

The snippet only starts us for commands that ran at least the lowest threshold, in the
background, with its output sent to ``/dev/null``. So this side has the time to be exact, and
writes what it decided (and any warning) to ``shell.log`` in the state dir, the one place a user
can find out why a command did or did not notify.
"""

from __future__ import annotations

import os
import signal as signal_mod
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final, Literal

from claude_notify.shell import commandline

if TYPE_CHECKING:
    from claude_notify.config import Config
    from claude_notify.events import Status, TaskEvent

Verdict = Literal["notify", "ignored", "short", "suspended", "focused", "interrupted"]
"""``notify``; ``ignored``, ``short`` and ``suspended`` (Ctrl-Z: not finished) are dropped;
``focused`` and ``interrupted`` (the user's own Ctrl-C: they are at the keyboard) are recorded in
the history without a notification."""

LOG_NAME: Final = "shell.log"
LOG_LIMIT: Final = 64 * 1024
_INTERRUPTS: Final = frozenset({"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGPIPE"})
_STOPS: Final = frozenset({"SIGTSTP", "SIGSTOP", "SIGTTIN", "SIGTTOU"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """One interactive command, as the shell saw it."""

    command: str
    """The line as typed (empty when the shell could not tell: kept out of its history)."""
    expanded: str = ""
    """The line with its alias expanded, when the shell expanded one."""
    status: int
    """``$?`` / ``$status``: 128+N when signal N ended it."""
    duration: float
    """Seconds, by the shell's clock."""
    started: float | None = None
    """Epoch seconds when it started, when the shell knows it."""
    cwd: str = ""
    shell: str = ""


def verdict(done: Finished, config: Config, *, looking: Callable[[], bool | None]) -> Verdict:
    """What to do with a finished command. ``looking`` is asked last: it runs probes."""
    cands = commandline.candidates(done.command, done.expanded)
    if commandline.ignored(cands, ignore=config["shell.ignore"], allow=config["shell.allow"]):
        return "ignored"
    limit = commandline.threshold_for(cands, default=config["shell.threshold"],
                                      overrides=config["shell.commands"])
    if done.duration < limit:
        return "short"
    if outcome(done.status)[2] in _STOPS:
        return "suspended"  # it ends later, under ``fg``
    if done.status == 128 + signal_mod.SIGINT:
        return "interrupted"
    if config["shell.unfocused_only"] and looking() is True:
        return "focused"
    return "notify"


def outcome(status: int) -> tuple[Status, int | None, str | None]:
    """Event status, exit code and signal name from a shell's ``$?``."""
    if status > 128:
        try:
            name = signal_mod.Signals(status - 128).name
        except ValueError:
            name = None
        if name is not None:
            return ("interrupted" if name in _INTERRUPTS else "failure"), None, name
    return ("success" if status == 0 else "failure"), status, None


def build_event(done: Finished, env: Mapping[str, str], *, now: datetime) -> TaskEvent:
    """The ``finished`` event for one command."""
    from claude_notify.events import TaskEvent, host_name, new_id
    from claude_notify.identity import machine_id

    status, exit_code, sig = outcome(done.status)
    if done.started is not None:
        started = datetime.fromtimestamp(done.started, timezone.utc)
        ended = started + timedelta(seconds=done.duration)
    else:
        ended = now
        started = now - timedelta(seconds=done.duration)
    command = done.command.strip() or done.expanded.strip()
    return TaskEvent(
        type="finished", source="shell", task_id=new_id(), machine_id=machine_id(),
        session_id=session_id(env), status=status,
        command=command or f"a command kept out of the {done.shell or 'shell'} history",
        cwd=done.cwd, host=host_name(), started_at=started, ended_at=ended,
        duration_s=done.duration, exit_code=exit_code, signal=sig,
    )


def session_id(env: Mapping[str, str]) -> str | None:
    """The terminal of the shell: our own stdio is ``/dev/null``, its tty is still ours."""
    from claude_notify.identity import session_id as from_stdio

    found = from_stdio(env)
    if found is not None or sys.platform == "win32":
        return found
    else:  # a platform branch: mypy skips it elsewhere
        try:
            fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
        except OSError:
            return None
        try:
            return f"tty:{os.ttyname(fd)}:{os.getsid(0)}"
        except OSError:
            return None
        finally:
            os.close(fd)


def report(done: Finished, env: Mapping[str, str]) -> Verdict:
    """Decide, record and notify; one line per command in ``shell.log``."""
    from claude_notify import config as config_mod
    from claude_notify.dispatch import Dispatcher
    from claude_notify.events import utcnow

    config = config_mod.load(env)

    def probe() -> bool | None:
        from claude_notify.shell import focus

        return focus.looking(focus.gather(env, platform=sys.platform,
                                          run=focus.subprocess_runner(env)))

    result = verdict(done, config, looking=probe)
    if result in ("notify", "focused", "interrupted"):
        event = build_event(done, env, now=utcnow())
        Dispatcher(config, env).emit(event, on="exit" if result == "notify" else "never",
                                     min_duration=0.0)
    log(f"{result:<11} {done.shell} status={done.status} {done.duration:.3f}s "
        f"{done.command.strip()[:200]!r}")
    return result


def log(line: str) -> None:
    """Append to ``shell.log``, keeping it under :data:`LOG_LIMIT` (the newer half survives)."""
    from claude_notify.config import state_dir
    from claude_notify.events import utcnow

    path = state_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > LOG_LIMIT:
            tail = path.read_bytes()[-LOG_LIMIT // 2:]
            path.write_bytes(tail[tail.find(b"\n") + 1:])
        with path.open("a", encoding="utf-8") as out:
            out.write(f"{utcnow():%Y-%m-%dT%H:%M:%SZ} {line}\n")
    except OSError:
        pass  # a read-only state dir must not turn into an error nobody can see


def redirect_warnings() -> None:
    """Started by the snippet, our stderr is ``/dev/null``: warnings go to ``shell.log``.

    Someone running ``shell-done`` by hand at a terminal keeps seeing them.
    """
    from claude_notify.config import state_dir

    if sys.stderr is not None and sys.stderr.isatty():
        return
    path = state_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = path.open("a", encoding="utf-8", buffering=1)
    except OSError:
        pass
