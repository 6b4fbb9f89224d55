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
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from claude_notify.shell import commandline

if TYPE_CHECKING:
    from claude_notify.config import Config
    from claude_notify.events import Status, TaskEvent

Verdict = Literal["notify", "ignored", "short", "suspended", "focused", "interrupted",
                  "wrapped"]
"""``notify``; ``ignored``, ``short``, ``suspended`` (Ctrl-Z: not finished) and ``wrapped`` (it
ran ``claude-notify run`` or ``watch``, which notified for it) are dropped; ``focused`` and
``interrupted`` (the user's own Ctrl-C: they are at the keyboard) are recorded in the history
without a notification."""

_WRAPPERS: Final = ("run", "watch")
"""Our own commands that notify for what they wrap: the shell must not notify a second time."""

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
    if any(_is_wrapper(words) for words in cands):
        return "wrapped"
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


def _is_wrapper(words: list[str]) -> bool:
    """``claude-notify run …`` (or ``python -m claude_notify run …``), whatever its path."""
    if words[:1] == ["claude-notify"]:
        rest = words[1:]
    elif len(words) > 2 and words[1:3] == ["-m", "claude_notify"]:
        rest = words[3:]
    else:
        return False
    return bool(rest) and rest[0] in _WRAPPERS


def wrapped_in_history(done: Finished, session: str | None) -> bool:
    """A ``run`` or ``watch`` of this terminal started and ended while the command ran.

    What the command line cannot show (a shell function or a script that calls
    ``claude-notify run``) the history can: the wrapper records its task before the shell's
    prompt hook starts us.
    """
    began = done.started
    if began is None and (spawned := _process_start()) is not None:
        began = spawned - done.duration  # fish gives no start: we were spawned as it ended
    if session is None or began is None:
        return False
    from claude_notify import history

    # One clock on both sides: the slack is for its resolution and our spawn, not for drift,
    # and small enough that a wrapped command that ended just before this one began is not it.
    slack = timedelta(seconds=0.25 if done.started is not None else 0.5)
    start = datetime.fromtimestamp(began, timezone.utc) - slack
    end = start + timedelta(seconds=done.duration) + 2 * slack
    try:
        entries = history.query(limit=20)
    except Exception:  # a history we cannot read must not cost the notification
        return False
    return any(entry.event.source in _WRAPPERS and entry.event.session_id == session
               and entry.event.started_at is not None and entry.event.ended_at is not None
               and start <= entry.event.started_at and entry.event.ended_at <= end
               for entry in entries)


def _process_start() -> float | None:
    """Linux: epoch seconds when this process was forked (to ten milliseconds)."""
    if sys.platform != "linux":
        return None
    else:  # a platform branch: mypy skips it elsewhere
        import time

        try:  # our age on the boot clock (btime itself is whole seconds: too coarse)
            ticks = int(_own_stat()[19])
            uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _own_stat() -> list[str]:
    """Linux: the fields of ``/proc/self/stat`` after the command name (``[0]`` is the state)."""
    stat = Path("/proc/self/stat").read_text(encoding="ascii")
    return stat[stat.rindex(")") + 2:].split()


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
            return f"tty:{_device_name(fd)}:{os.getsid(0)}"
        except OSError:
            return None
        finally:
            os.close(fd)


def _device_name(fd: int) -> str:
    """The terminal's own name (``/dev/pts/3``), as ``run`` sees it on its stdio.

    ``ttyname`` of a descriptor opened as ``/dev/tty`` is ``/dev/tty``; so that the shell's
    events and ``run``'s share a session id, the device it stands for is looked up.
    """
    if sys.platform == "win32":
        raise OSError("no terminal devices")
    else:  # a platform branch: mypy skips it elsewhere
        name: str = os.ttyname(fd)
        return (_controlling_terminal() or name) if name == "/dev/tty" else name


def _controlling_terminal() -> str | None:
    """Linux: the controlling terminal's number is in ``/proc/self/stat``; find its node."""
    if sys.platform != "linux":
        return None
    else:  # a platform branch: mypy skips it elsewhere
        try:
            tty_nr = int(_own_stat()[4])
        except (OSError, ValueError, IndexError):
            return None
        device = os.makedev((tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00))
        for candidate in (*Path("/dev/pts").glob("[0-9]*"), *Path("/dev").glob("tty?*")):
            try:
                if candidate.stat().st_rdev == device:
                    return str(candidate)
            except OSError:
                continue
        return None


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
    if result in ("notify", "focused", "interrupted") and wrapped_in_history(done,
                                                                            session_id(env)):
        result = "wrapped"
    if result in ("notify", "focused", "interrupted"):
        event = build_event(done, env, now=utcnow())
        Dispatcher(config, env).emit(event, on="exit" if result == "notify" else "never",
                                     min_duration=0.0)
    log(f"{result:<11} {done.shell} status={done.status} {done.duration:.3f}s "
        f"{done.command.strip()[:200]!r}")
    return result


def log(line: str) -> None:
    """Append to ``shell.log``, keeping it under :data:`LOG_LIMIT` (the newer half survives)."""
    from claude_notify.events import utcnow
    from claude_notify.paths import state_dir

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
    from claude_notify.paths import state_dir

    if sys.stderr is not None and sys.stderr.isatty():
        return
    path = state_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = path.open("a", encoding="utf-8", buffering=1)
    except OSError:
        pass
