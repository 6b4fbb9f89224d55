"""``claude-notify watch``: notify when processes that are already running end.

They are not our children, so the OS keeps their exit status from us: the event says "ended"
(status ``ended``, exit code ``None``). We poll with short, growing intervals; psutil guards
against PID reuse by the process's creation time.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from claude_notify.errors import UsageError
from claude_notify.events import Status, TaskEvent, host_name, new_id, utcnow

if TYPE_CHECKING:
    import psutil


def by_pid(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes to watch; a PID that does not exist is a :class:`UsageError`."""
    import psutil

    found = []
    for pid in pids:
        if pid == os.getpid():
            raise UsageError("claude-notify cannot watch itself")
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            raise UsageError(f"no process with PID {pid}") from None
    return found


def by_name(pattern: str) -> list[psutil.Process]:
    """Running processes whose name or command line matches the regular expression."""
    import psutil

    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--name: bad regular expression: {exc}") from None
    me = {os.getpid(), os.getppid()}
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        info = proc.info
        if info["pid"] in me:
            continue
        line = " ".join(info["cmdline"] or [])
        if regex.search(info["name"] or "") or (line and regex.search(line)):
            found.append(proc)
    if not found:
        raise UsageError(f"no running process matches {pattern!r}")
    return found


def describe(proc: psutil.Process) -> str:
    """The process's command line as a user would type it (its name if that is hidden)."""
    import psutil

    try:
        cmdline = proc.cmdline()
        return shlex.join(cmdline) if cmdline else proc.name()
    except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess):
        return f"PID {proc.pid}"


def wait(procs: list[psutil.Process], on_end: Callable[[TaskEvent], None], *,
         machine_id: str, session_id: str | None) -> None:
    """Block until every process ended, calling ``on_end`` with each one's event."""
    import psutil

    facts = {}
    for proc in procs:
        try:
            created = datetime.fromtimestamp(proc.create_time(), timezone.utc)
            cwd = proc.cwd()
        except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess):
            created, cwd = None, ""
        facts[proc.pid] = (describe(proc), created, cwd)

    def ended(proc: psutil.Process) -> None:
        command, created, cwd = facts[proc.pid]
        now = utcnow()
        status: Status = "ended"
        on_end(TaskEvent(type="finished", source="watch", task_id=new_id(),
                         machine_id=machine_id, session_id=session_id, status=status,
                         command=command, cwd=cwd, host=host_name(), started_at=created,
                         ended_at=now, exit_code=None,
                         duration_s=(now - created).total_seconds() if created else None))

    pending = list(procs)
    delay = 0.01
    while pending:
        for proc in [p for p in pending if _gone(p)]:
            pending.remove(proc)
            ended(proc)
        if pending:
            time.sleep(delay)  # polling is all the OS offers for a process that is not ours
            delay = min(delay * 1.5, 0.25)


def _gone(proc: psutil.Process) -> bool:
    """Ended — a zombie whose parent has not reaped it yet has ended too."""
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
