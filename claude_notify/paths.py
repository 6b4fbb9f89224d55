"""Where claude-notify keeps its files: config, state (machine id, mute, login), data (history).

``CLAUDE_NOTIFY_CONFIG`` names the config file, ``CLAUDE_NOTIFY_STATE_DIR`` the state directory
and ``CLAUDE_NOTIFY_DATA_DIR`` the data directory (tests, and several setups on one account).

On macOS and Windows these come from platformdirs. On Linux and the BSDs they are the XDG base
directories, which we read ourselves: they are three environment variables with documented
defaults, and ``platformdirs.unix`` imports ``tempfile`` (and with it ``shutil``, ``bz2``,
``lzma``, ``random``) — about 7 ms on every wrapped command. A test checks that both agree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP = "claude-notify"

_XDG = {
    "config": ("XDG_CONFIG_HOME", ".config"),
    "state": ("XDG_STATE_HOME", ".local/state"),
    "data": ("XDG_DATA_HOME", ".local/share"),
}


def _xdg(kind: str) -> Path:
    variable, default = _XDG[kind]
    base = os.environ.get(variable, "").strip()
    # The XDG spec ignores relative values, as platformdirs does.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / default  # noqa: PTH117
    return root / APP


def user_dir(kind: str) -> Path:
    """``config``, ``state`` or ``data`` directory for this user."""
    if sys.platform in ("darwin", "win32"):
        import platformdirs

        finder = {"config": platformdirs.user_config_path,
                  "state": platformdirs.user_state_path,
                  "data": platformdirs.user_data_path}[kind]
        return finder(APP, appauthor=False)
    else:  # a platform branch: mypy skips it elsewhere
        return _xdg(kind)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$CLAUDE_NOTIFY_CONFIG``, else ``config.toml`` in the platform's config dir."""
    env = os.environ if env is None else env
    override = env.get("CLAUDE_NOTIFY_CONFIG")
    if override:
        return Path(override).expanduser()
    return user_dir("config") / "config.toml"


def state_dir() -> Path:
    """Where small per-machine state lives (machine id, mute state, login, agent, spool)."""
    override = os.environ.get("CLAUDE_NOTIFY_STATE_DIR")
    if override:
        return Path(override).expanduser()
    return user_dir("state")


def data_dir() -> Path:
    """Where the history lives; ``$CLAUDE_NOTIFY_DATA_DIR`` overrides."""
    override = os.environ.get("CLAUDE_NOTIFY_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return user_dir("data")
