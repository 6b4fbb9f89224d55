"""Who a task belongs to: this machine (a random id kept once) and its terminal session."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from claude_notify import paths
from claude_notify.events import new_id


def machine_id() -> str:
    """A random id made once per machine and kept in the state dir."""
    directory = paths.state_dir()
    path = directory / "machine_id"
    try:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
    except OSError:
        pass
    value = new_id()
    from claude_notify.fsutil import atomic_write

    # Atomic: a concurrent first run sees one whole id. Not fsynced (~15 ms on the first run's
    # path): an id lost to a power cut is made again, as an empty file is.
    try:
        atomic_write(path, value + "\n", mode=None, durable=False)
    except OSError:
        pass  # a read-only home still gets notifications, with an id for this run only
    return value


def session_id(env: Mapping[str, str]) -> str | None:
    """The terminal session a task belongs to: explicit, or the controlling tty and session."""
    explicit = env.get("CLAUDE_NOTIFY_SESSION_ID")
    if explicit:
        return explicit
    if sys.platform == "win32":
        return env.get("WT_SESSION")
    else:  # a platform branch: mypy skips it elsewhere
        for fd in (0, 1, 2):
            try:
                if os.isatty(fd):
                    return f"tty:{os.ttyname(fd)}:{os.getsid(0)}"
            except OSError:
                continue
        return None
