"""Plugins: notification backends and server channels other packages add, found through Python
entry points. The built-in ones use the same interfaces.

- ``claude_notify.backends``: ``name = "module:Class"``, a
  :class:`~claude_notify.notifiers.base.Notifier` constructed with the
  :class:`~claude_notify.notifiers.base.Host`. Chosen by name (``--backend NAME`` or
  ``backend = "NAME"``); ``auto`` never looks.
- ``claude_notify.channels``: ``name = "module:Class"``, a server channel
  (:class:`~claude_notify.cloud.server.channels.base.ChannelAdapter` plus the class attributes
  :mod:`claude_notify.cloud.server.channels.plugins` reads), used only when the server's
  operator enables it by name.

Entry points are read only when a name is not built in: ``run`` and ``hook`` with built-in
backends never import :mod:`importlib.metadata` (~5 ms) nor scan installed packages. A plugin
that cannot be imported is one line of explanation, never a traceback, and never stops a
wrapped command or the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from claude_notify.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

PLUGIN_API: Final = 1
"""The plugin interface's major version. A plugin may say which it was written for with a
``plugin_api`` attribute; another major is refused with a line saying so."""
BACKENDS: Final = "claude_notify.backends"
CHANNELS: Final = "claude_notify.channels"
GROUPS: Final = {BACKENDS: "backend", CHANNELS: "server channel"}


class PluginError(ConfigError):
    """A plugin that is named but cannot be used; its message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Installed:
    """One entry point of one installed distribution, and whether it loads."""

    name: str
    group: str
    target: str
    distribution: str
    version: str
    problem: str | None


def _entry_points(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def find(group: str, name: str) -> EntryPoint | None:
    """The installed entry point ``name`` of ``group`` (the first, if several claim it)."""
    return next((ep for ep in _entry_points(group) if ep.name == name), None)


def _origin(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def load(group: str, name: str) -> Any:
    """The object the plugin ``name`` names; :class:`PluginError` (one line) if it is not
    installed, does not import, or was written for another interface version."""
    ep = find(group, name)
    if ep is None:
        raise PluginError(f"no {GROUPS[group]} plugin named {name!r} is installed")
    return _load(ep)


def _load(ep: EntryPoint) -> Any:
    dist, version = _origin(ep)
    where = f"plugin {ep.name!r} ({dist} {version})"
    try:
        obj = ep.load()
    except Exception as exc:  # its import ran someone else's code: any error is theirs
        raise PluginError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
    wanted = getattr(obj, "plugin_api", PLUGIN_API)
    if wanted != PLUGIN_API:
        raise PluginError(f"{where} was written for plugin API {wanted}; this claude-notify "
                          f"has plugin API {PLUGIN_API}")
    return obj


def installed() -> list[Installed]:
    """Every plugin entry point installed, each loaded once to say whether it works."""
    found = []
    for group in GROUPS:
        for ep in _entry_points(group):
            dist, version = _origin(ep)
            try:
                _load(ep)
                problem = None
            except PluginError as exc:
                problem = str(exc)
            found.append(Installed(ep.name, group, ep.value, dist, version, problem))
    return found
