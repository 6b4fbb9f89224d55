"""The hosted claude-notify server, installed with the ``[server]`` extra.

Public surface: :func:`create_app` and :class:`Settings`, loaded on first use so that
``claude-notify server --help`` does not import the web stack. Nothing here is imported by the
plain CLI path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_notify.cloud.server.app import create_app
    from claude_notify.cloud.server.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from claude_notify.cloud.server.app import create_app

        return create_app
    if name == "Settings":
        from claude_notify.cloud.server.settings import Settings

        return Settings
    raise AttributeError(name)
