"""Small helpers shared by the tests: running the real CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "claude_notify"]


def cli_env(tmp: Path, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment isolated from the developer's own config, state and desktop.

    ``base`` (a desktop harness's environment) is taken as is; without it, everything that
    points at the developer's own bus, terminal or settings is removed.
    """
    if base is not None:
        env = {k: v for k, v in base.items() if not k.startswith("CLAUDE_NOTIFY_")}
    else:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLAUDE_NOTIFY_", "SSH_", "DBUS_", "KITTY_"))
               and k not in ("TMUX", "DISPLAY", "XDG_RUNTIME_DIR", "TERM_PROGRAM",
                             "LC_TERMINAL")}
    env["CLAUDE_NOTIFY_CONFIG"] = str(tmp / "config.toml")
    env["CLAUDE_NOTIFY_STATE_DIR"] = str(tmp / "state")
    env.update(extra)
    return env


def run_cli(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 30,
            **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """``claude-notify ARGS`` in a subprocess, output captured as bytes."""
    return subprocess.run([*CLI, *args], env=dict(env), capture_output=True, timeout=timeout,
                          check=False, **kwargs)
