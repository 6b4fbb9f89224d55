"""Which module implements which channel type; an adapter is imported only when used.

Adding a channel is one module and one line here (or, from another package, a plugin the
operator enables: :mod:`.plugins`). A type with no adapter on this server makes
:func:`load_adapter` raise ``LookupError``, and its deliveries end as dead letters that say so,
never as silent drops.
"""

from __future__ import annotations

import importlib
from typing import Final

import httpx

from claude_notify.cloud.server.channels.base import ChannelAdapter
from claude_notify.cloud.server.settings import Settings

ADAPTERS: Final = {
    "email": "claude_notify.cloud.server.channels.email:EmailChannel",
    "webhook": "claude_notify.cloud.server.channels.webhook:WebhookChannel",
    "telegram": "claude_notify.cloud.server.channels.telegram:TelegramChannel",
    "discord": "claude_notify.cloud.server.channels.discord:DiscordChannel",
    "feishu": "claude_notify.cloud.server.channels.feishu:FeishuChannel",
    "sms": "claude_notify.cloud.server.channels.sms:SmsChannel",
    "whatsapp": "claude_notify.cloud.server.channels.whatsapp:WhatsAppChannel",
    "slack": "claude_notify.cloud.server.channels.slack:SlackChannel",
    "ntfy": "claude_notify.cloud.server.channels.ntfy:NtfyChannel",
    "teams": "claude_notify.cloud.server.channels.teams:TeamsChannel",
    "webpush": "claude_notify.cloud.server.channels.webpush:WebPushChannel",
}


def load_adapter(channel_type: str, settings: Settings, http: httpx.AsyncClient) -> ChannelAdapter:
    """A ready adapter; ``LookupError`` when this server has none for the type."""
    path = ADAPTERS.get(channel_type)
    if path is None:
        return _plugin_adapter(channel_type, settings, http)
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LookupError(f"this server has no adapter for {channel_type} channels yet") from None
    cls = getattr(module, attr)
    adapter: ChannelAdapter = cls(settings, http)
    return adapter


def _plugin_adapter(channel_type: str, settings: Settings,
                    http: httpx.AsyncClient) -> ChannelAdapter:
    """An enabled plugin's adapter; what goes wrong becomes the ``LookupError`` its deliveries
    are dead-lettered with (never an exception in the worker)."""
    from claude_notify.cloud.server.channels import plugins

    cls = plugins.enabled(settings.channel_plugins).get(channel_type)
    if cls is None:
        why = plugins.problems(settings.channel_plugins).get(channel_type)
        raise LookupError(f"this server has no adapter for {channel_type} channels"
                          + (f": {why}" if why else " yet"))
    try:
        adapter: ChannelAdapter = cls(settings, http)
    except Exception as exc:  # the plugin's own code
        raise LookupError(f"plugin {channel_type}: cannot start: {type(exc).__name__}: "
                          f"{exc}"[:300]) from None
    return adapter
