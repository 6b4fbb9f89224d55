"""Channel plugins on the server: the ones its operator enabled by name
(``CLAUDE_NOTIFY_SERVER_CHANNEL_PLUGINS``), loaded once per list of names.

A channel plugin is a class (the ``claude_notify.channels`` entry point) that the delivery worker
constructs as ``Class(settings, http)`` and awaits ``send(message) -> SendResult`` on, exactly
like the built-in adapters (:mod:`.base`), and that declares:

- ``validate_config(config: dict) -> dict`` (a static or class method): the user-level config a
  channel of this type holds, checked when one is added or changed; a ``ValueError``'s message is
  what the user reads;
- ``verification`` (default ``None``): how a recipient confirms before anything is sent to it.
  Only ``None`` (none needed: the config itself is the owner's, like a webhook URL) is supported
  by this server version; a plugin asking for another is not enabled, and says why;
- ``accepts_replies`` (default ``False``): replies and buttons through the relay are not open to
  plugins yet; a plugin asking for them is not enabled.

Every plugin channel is pro only, as every channel but e-mail is (:func:`..quota.limits`). A
plugin that cannot be loaded or is unfit is logged in one line at start and left out; the server
runs on, and a channel of its type is "unknown" until it is fixed. Its sends that raise become
dead letters naming the plugin; they never stop the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from claude_notify import plugins
from claude_notify.cloud.server.channels import catalog

log = logging.getLogger("claude_notify.server")


@lru_cache(maxsize=8)
def _enabled(names: tuple[str, ...]) -> tuple[Mapping[str, Any], Mapping[str, str]]:
    usable: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name in names:
        cls: Any = None
        try:
            problem = _unfit(name)
            if problem is None:
                cls = plugins.load(plugins.CHANNELS, name)
                problem = _unfit_class(cls)
        except plugins.PluginError as exc:
            problem = str(exc)
        if problem is not None:
            problems[name] = problem
            log.error("channel plugin %s is not enabled: %s", name, problem)
        else:
            usable[name] = cls
    return usable, problems


def _unfit(name: str) -> str | None:
    if name in catalog.CHANNEL_TYPES or name in catalog.ALIASES:
        return f"{name!r} is a built-in channel type; a plugin cannot replace it"
    return None


def _unfit_class(cls: Any) -> str | None:
    if not callable(getattr(cls, "validate_config", None)) or not callable(
            getattr(cls, "send", None)):
        return "it has no validate_config() or send()"
    if getattr(cls, "verification", None) is not None:
        return (f"recipient verification {cls.verification!r} is not supported by this server "
                "version (only None)")
    if getattr(cls, "accepts_replies", False):
        return "replies through the relay are not open to plugins in this server version"
    return None


def enabled(names: tuple[str, ...]) -> Mapping[str, Any]:
    """The usable plugin classes among ``names``, by channel type."""
    return _enabled(tuple(names))[0]


def problems(names: tuple[str, ...]) -> Mapping[str, str]:
    """Why each plugin among ``names`` that is not usable is not, one line each."""
    return _enabled(tuple(names))[1]


def validate_config(cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The plugin's own check of a config; anything it raises is the user's one-line error."""
    try:
        checked = cls.validate_config(dict(config))
    except ValueError as exc:
        raise ValueError(str(exc) or "config refused") from None
    except Exception as exc:  # the plugin's bug: the user still gets a line, not a 500
        raise ValueError(f"the {getattr(cls, 'type', 'plugin')} channel could not check this "
                         f"config ({type(exc).__name__})") from None
    if not isinstance(checked, dict):
        raise ValueError("the plugin's validate_config() did not return a config")
    return checked
