"""Notification backends, one module each, found by name so only the chosen one is imported.

Selection is a pure function of :class:`~claude_notify.notifiers.base.Host` (platform, env, WSL,
terminal), so tests pass facts in instead of patching globals. Adding a backend touches its own
module and one line of ``BACKENDS``; another package adds one as a plugin
(:mod:`claude_notify.plugins`), chosen by its name.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from claude_notify.notifiers.base import Host, Notifier

BACKENDS: Final[Mapping[str, str]] = {
    "dbus": "claude_notify.notifiers.dbus:DBusNotifier",
    "terminal": "claude_notify.notifiers.terminal:TerminalNotifier",
    "terminal-notifier": "claude_notify.notifiers.macos:TerminalNotifierApp",
    "osascript": "claude_notify.notifiers.macos:OsaScriptNotifier",
    "snoretoast": "claude_notify.notifiers.windows:SnoreToastNotifier",
    "toast": "claude_notify.notifiers.windows:PowerShellToastNotifier",
    "wsl": "claude_notify.notifiers.windows:WslToastNotifier",
    "plyer": "claude_notify.notifiers.plyer_backend:PlyerNotifier",
}


def candidates(host: Host) -> list[str]:
    """Backends to try, best first, for this host. Availability is checked later, per backend."""
    if host.is_ssh:
        # A desktop API would notify the machine we are logged in to, not the user's screen.
        return ["terminal"]
    if host.platform == "darwin":
        return ["terminal-notifier", "osascript", "terminal"]
    if host.platform == "win32":
        return ["snoretoast", "toast", "plyer"]
    if host.is_wsl:
        return ["wsl", "terminal"]
    return ["dbus", "terminal", "plyer"]


def load(name: str, host: Host) -> Notifier:
    """Import and construct one backend by name, a plugin's when it is not built in;
    ``KeyError`` for a name nothing provides, :class:`~claude_notify.plugins.PluginError` for a
    plugin that cannot load."""
    if name in BACKENDS:
        module_name, _, class_name = BACKENDS[name].partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
    else:
        from claude_notify import plugins

        if plugins.find(plugins.BACKENDS, name) is None:
            raise KeyError(name)
        cls = plugins.load(plugins.BACKENDS, name)
    notifier: Notifier = cls(host)
    return notifier


def known(name: str) -> bool:
    """Whether a backend of this name is built in or installed as a plugin (only a name that is
    not built in reads the installed packages)."""
    if name in BACKENDS:
        return True
    from claude_notify import plugins

    return plugins.find(plugins.BACKENDS, name) is not None


def current_host(env: Mapping[str, str] | None = None,
                 settings: Mapping[str, object] | None = None) -> Host:
    """The facts about the machine this process runs on, and the settings backends honour."""
    from claude_notify.notifiers.base import Host

    env = os.environ if env is None else env
    return Host(platform=sys.platform, env=dict(env), is_wsl=_is_wsl(env),
                settings=dict(settings or {}))


def _is_wsl(env: Mapping[str, str]) -> bool:
    if sys.platform == "linux":
        if env.get("WSL_DISTRO_NAME") or env.get("WSL_INTEROP"):
            return True
        try:
            release = Path("/proc/sys/kernel/osrelease").read_text(encoding="ascii",
                                                                   errors="replace")
        except OSError:
            return False
        return "microsoft" in release.lower()
    else:  # a platform branch: mypy skips it elsewhere
        return False
