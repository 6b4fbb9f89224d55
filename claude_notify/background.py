"""Work that must not make anyone wait: detached helper processes, and the log they write to.

The Claude Code hook and the cloud sink hand their slow part (a debounce, a D-Bus call, an
upload) to a process of its own: its own session, no inherited pipes (whoever waits on our stdout
— Claude Code, a shell's command substitution — must not wait for it), stderr to ``hook.log``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from claude_notify.paths import state_dir

MAX_LOG = 512 * 1024


def log(message: str) -> None:
    """Append one line to ``hook.log`` (kept small); never raise."""
    from claude_notify.events import utcnow

    try:
        path = state_dir() / "hook.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG:
            path.write_text("", encoding="utf-8")
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{utcnow().isoformat(timespec='seconds')} {message[:500]}\n")
    except OSError:
        pass


def spawn(module: str, args: Sequence[str] = (), *,
          env: Mapping[str, str] | None = None) -> None:
    """Start ``python -m module args`` detached; never raise (the caller's work is done)."""
    import subprocess

    try:
        directory = state_dir()
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "hook.log").open("ab") as log_file:
            subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log_file, close_fds=True,
                             start_new_session=sys.platform != "win32",
                             env=dict(os.environ if env is None else env))
    except OSError as exc:
        log(f"cannot start {module}: {exc}")
