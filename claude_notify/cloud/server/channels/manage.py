"""What a user may do with their channels, shared by the ``/v1`` API and the web app's pages:
add, change, verify, link, test and template them. One set of rules, so a page cannot allow
what the API refuses.

Every refusal is an :class:`~claude_notify.cloud.server.api.errors.ApiError` worded for a
person; the API answers it as JSON and the pages show its message.

An e-mail channel receives nothing until its owner opens the one-time link (or enters the code)
sent to the address: the service cannot be used to mail strangers. The verification message
goes through the outbox like any other, so it is retried too.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import limits, outbox, quota
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.channels import catalog, templates
from claude_notify.cloud.server.channels.markdown import DIALECTS
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Channel, Delivery, User
from claude_notify.cloud.server.relay.link import code_hash
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import access
from claude_notify.cloud.server.teams.access import Member
from claude_notify.events import utcnow

SMS_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: easy to read off a phone."""
PHONE_CODES: Final = frozenset({"sms", "whatsapp"})
"""Types confirmed by a short code sent to the number, typed back by its owner."""

TEMPLATED: Final = {"telegram": "telegram", "discord": "discord", "feishu": "lark_md",
                    "sms": "text", "email": "html"}  # fmt: skip
"""Channel types that render a custom template, and the dialect each renders it to (e-mail also
renders the text part, in the ``text`` dialect)."""

GROUP_REPLIES: Final = frozenset({"telegram", "feishu", "slack"})
"""Types whose linked group chat may take replies when the owner turns it on."""

_LINKABLE: Final = {
    "telegram": ("telegram_bot_token", "this server has no Telegram bot"),
    "discord": ("discord_public_key", "Discord replies are not enabled on this server"),
    "feishu": ("feishu_verification_token", "Feishu replies are not enabled on this server"),
    "slack": ("slack_signing_secret", "Slack replies are not enabled on this server"),
}
"""Channel type → the setting that must be present, and the answer when it is not (which names
the setting: the operator can act on it)."""


@dataclass(frozen=True)
class LinkCode:
    """A one-time code that links a chat, or the chat account allowed to reply."""

    code: str
    command: str
    """What to send to the bot."""
    url: str | None
    """``https://t.me/<bot>?start=CODE``, when the operator named the bot."""
    expires_at: datetime


def visible(who: Member) -> ColumnElement[bool]:
    """The channels ``who`` sees: the workspace's shared ones and their own personal ones."""
    return (Channel.workspace_id == who.workspace_id) & (
        ~Channel.personal | (Channel.user_id == who.user_id))


def owned(session: Session, who: Member, channel_id: uuid.UUID, *,
          change: bool = True) -> Channel:
    """A channel ``who`` sees, or 404 (another workspace's, or another member's personal
    channel, is not found either); to ``change`` a shared one they must manage the workspace."""
    channel = session.scalar(select(Channel).where(Channel.id == channel_id, visible(who)))
    if channel is None:
        raise not_found("channel")
    if change and not channel.personal and not access.manages(who):
        raise ApiError(403, "only the workspace's owner and admins change its shared channels",
                       code="role_refused")
    return channel


def is_verified(channel: Channel) -> bool:
    return channel.verified_at is not None or channel.type not in catalog.NEEDS_VERIFICATION


def check_plan(settings: Settings, plan: str, kind: str) -> None:
    """403 with the reason a real event would be refused with ("the free plan sends e-mail
    only; webhook needs pro")."""
    refused = quota.limits(plan, kind, settings)
    if isinstance(refused, str):
        raise ApiError(403, refused, code="plan_refused")


def check_usable(settings: Settings, plan: str, kind: str) -> None:
    """Refuse a channel this account's plan, or this server, cannot send through: made anyway,
    it would only collect refusals (the plan's reason is the one real events get)."""
    check_plan(settings, plan, kind)
    if kind == "telegram" and not settings.telegram_bot_token:
        raise ApiError(422, "this server has no Telegram bot: its operator has not set "
                            "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN", code="not_configured")
    if kind == "whatsapp" and not settings.twilio_whatsapp_from:
        raise ApiError(422, "this server sends no WhatsApp messages: its operator has not set "
                            "CLAUDE_NOTIFY_SERVER_TWILIO_WHATSAPP_FROM", code="not_configured")


def _config(settings: Settings, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    from claude_notify.cloud.server.channels import plugins

    plugin = plugins.enabled(settings.channel_plugins).get(kind)
    try:
        if plugin is not None:
            return plugins.validate_config(plugin, config)
        return catalog.validate_config(kind, config, allow_private=settings.webhook_allow_private)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def types(settings: Settings) -> tuple[str, ...]:
    """Every channel type this server offers: the built-in ones, then its enabled plugins'."""
    from claude_notify.cloud.server.channels import plugins

    return (*catalog.CHANNEL_TYPES, *plugins.enabled(settings.channel_plugins))


def rules(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return catalog.validate_rules(value)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _check_room(session: Session, who: Member, limit: int) -> None:
    """Refuse a channel past a person's limit in a workspace; their row is locked first, so
    two concurrent requests cannot both take the last place."""
    session.get(User, who.user_id, with_for_update=True)
    count = session.scalar(select(func.count()).where(Channel.user_id == who.user_id,
                                                      Channel.workspace_id == who.workspace_id))
    if (count or 0) >= limit:
        raise ApiError(403, f"an account has at most {limit} channels; delete one first")


def create(session: Session, runtime: Runtime, *, who: Member, kind: str, name: str,
           config: dict[str, Any], rules_: dict[str, Any],
           personal: bool | None = None) -> Channel:
    """Add a channel (committed), starting its recipient's confirmation where one is needed.

    It is the workspace's unless ``personal`` (the default for a member who does not manage
    the workspace, and the only kind they may add).
    """
    settings = runtime.settings
    try:
        kind = catalog.normalise_type(kind, types(settings))
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    if personal is None:
        personal = not access.manages(who)
    if not personal and not access.manages(who):
        raise ApiError(403, "only the workspace's owner and admins add shared channels; add a "
                            "personal one", code="role_refused")
    check_usable(settings, who.plan, kind)
    _check_room(session, who, settings.max_channels_per_user)
    channel = Channel(id=uuid.uuid4(), user_id=who.user_id, workspace_id=who.workspace_id,
                      personal=personal, type=kind, name=name,
                      config=_config(settings, kind, config), rules=rules(rules_), enabled=True)
    session.add(channel)
    session.flush()
    if channel.type in catalog.NEEDS_VERIFICATION:
        start_verification(session, runtime, channel)
    audit(session, who, channel, "channel.created")
    session.commit()
    runtime.waker.wake()
    return channel


def audit(session: Session, who: Member, channel: Channel, action: str) -> None:
    """Write a change to a shared channel in the workspace's activity log (a personal channel
    is its owner's business)."""
    if channel.personal:
        return
    from claude_notify.cloud.server.teams.service import record

    record(session, channel.workspace_id, session.get(User, who.user_id), action,
           channel.name or channel.type, type=channel.type)


def delete(session: Session, who: Member, channel: Channel) -> None:
    """Delete a channel (committed)."""
    audit(session, who, channel, "channel.deleted")
    session.delete(channel)
    session.commit()


def update(session: Session, runtime: Runtime, channel: Channel, *, name: str | None = None,
           config: dict[str, Any] | None = None, rules_: dict[str, Any] | None = None,
           enabled: bool | None = None, who: Member | None = None) -> Channel:
    """Change what is given (committed), logged as ``who``'s when given. A new recipient must
    confirm again."""
    if name is not None:
        channel.name = name
    if rules_ is not None:
        channel.rules = rules(rules_)
    if enabled is not None:
        channel.enabled = enabled
        channel.disabled_reason = None if enabled else "by its owner"
    if config is not None:
        # A secret left out is kept: reads never show it, so it cannot be sent back.
        asked = catalog.keep_secret(channel.config, config)
        checked = catalog.carry_over(channel.config, _config(runtime.settings, channel.type,
                                                             asked))
        changed = catalog.recipient(checked) != catalog.recipient(channel.config)
        channel.config = checked
        if changed and channel.type in catalog.NEEDS_VERIFICATION:
            start_verification(session, runtime, channel)
    if who is not None:
        audit(session, who, channel, "channel.changed")
    session.commit()
    runtime.waker.wake()
    return channel


def set_group_replies(session: Session, runtime: Runtime, channel: Channel, allow: bool) -> None:
    """Whether the channel's linked group chat takes replies and button presses (committed)."""
    if channel.type not in GROUP_REPLIES:
        raise ApiError(409, f"a {channel.type} channel has no group chat to take replies from")
    # The user's own part of the config; what the server set (the chat) is carried over.
    mine = {k: v for k, v in channel.config.items()
            if k not in catalog.SERVER_KEYS and k != "allow_group_replies"}
    update(session, runtime, channel, config={**mine, "allow_group_replies": allow})


def rotate_secret(session: Session, channel: Channel) -> Channel:
    """A new Standard Webhooks secret; the old one stops at once (committed)."""
    if channel.type != "webhook":
        raise ApiError(409, f"only a webhook channel has a signing secret made here; this is "
                            f"a {channel.type} channel")
    channel.config = {**channel.config, "secret": catalog.new_webhook_secret()}
    session.commit()
    return channel


def send_test(session: Session, runtime: Runtime, plan: str, channel: Channel) -> uuid.UUID:
    """Queue a test message (committed); refused as an event would be."""
    if not is_verified(channel):
        raise ApiError(409, "recipient not verified yet: open the link sent to it first")
    check_plan(runtime.settings, plan, channel.type)  # as for an event: no way around the plan
    text = "This is a test message from claude-notify: this channel works."
    queued = outbox.queue(session, channel, outbox.TEST,
                          render_simple("claude-notify test message", text))
    session.commit()
    runtime.waker.wake()
    return queued


def resend_verification(session: Session, runtime: Runtime, channel: Channel) -> None:
    if channel.type not in catalog.NEEDS_VERIFICATION or channel.verified_at is not None:
        raise ApiError(409, "this channel needs no verification")
    start_verification(session, runtime, channel)
    session.commit()
    runtime.waker.wake()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_link(settings: Settings, secret: str) -> str:
    """The page a mailed confirmation link opens: it shows a button, and only its POST
    confirms, so a mail scanner that opens links confirms nothing."""
    return f"{settings.public_url.rstrip('/')}/app/verify?token={secret}"


def start_verification(session: Session, runtime: Runtime, channel: Channel) -> None:
    """Queue the one-time link or code; only its hash is stored."""
    if limits.reached(session, runtime.settings.verifications_per_hour, 3600.0,
                      Delivery.created_at, Delivery.user_id == channel.user_id,
                      Delivery.kind == outbox.VERIFY):
        raise ApiError(
            429, "too many confirmation messages this hour", headers={"Retry-After": "3600"}
        )
    channel.verified_at = None
    ttl = timedelta(seconds=runtime.settings.verification_ttl_s)
    if channel.type == "telegram":  # the owner asks for a code: see link_code()
        channel.verify_hash = None
        channel.verify_expires_at = None
        return
    if channel.type in PHONE_CODES:
        code = "".join(secrets.choice(SMS_ALPHABET) for _ in range(8))
        channel.verify_hash = code_hash(code)
        channel.verify_expires_at = utcnow() + ttl
        text = f"claude-notify code: {code}. Enter it to get task alerts on this number."
        outbox.queue(session, channel, outbox.VERIFY, render_simple("claude-notify code", text))
        return
    secret = secrets.token_urlsafe(24)
    channel.verify_hash = _hash(secret)
    channel.verify_expires_at = utcnow() + ttl
    link = verify_link(runtime.settings, secret)
    text = (
        "Someone asked claude-notify to send task notifications to this address.\n\n"
        f"If it was you, confirm by opening {link} or by entering the code {secret}.\n\n"
        "If not, ignore this message: nothing will be sent."
    )
    outbox.queue(session, channel, outbox.VERIFY,
                 render_simple("Confirm your claude-notify address", text, link))


def consume(channel: Channel, secret: str) -> bool:
    """Mark verified if ``secret`` is the channel's live one-time secret; it works once."""
    expires = channel.verify_expires_at
    if channel.verify_hash is None or expires is None or expires <= utcnow():
        return False
    if channel.type in PHONE_CODES:
        secret = secret.strip().upper()  # codes are read off a phone and typed in any case
    if not secrets.compare_digest(channel.verify_hash, _hash(secret)):
        return False
    channel.verified_at = utcnow()
    channel.verify_hash = None
    channel.verify_expires_at = None
    return True


def by_link_secret(session: Session, secret: str) -> Channel | None:
    """The channel whose mailed link carries ``secret``, if that link is still live."""
    channel = session.scalar(select(Channel).where(Channel.verify_hash == _hash(secret)))
    if channel is None or channel.verify_expires_at is None:
        return None
    return channel if channel.verify_expires_at > utcnow() else None


def link_code(session: Session, runtime: Runtime, channel: Channel) -> LinkCode:
    """A one-time code (committed) to send to the operator's bot: it links a Telegram chat, or
    the Discord or Feishu account allowed to reply."""
    if channel.type not in _LINKABLE:
        raise ApiError(409, "only Telegram, Discord and Feishu channels are linked with a code")
    setting, missing = _LINKABLE[channel.type]
    if not getattr(runtime.settings, setting):
        raise ApiError(422, f"{missing}: its operator has not set CLAUDE_NOTIFY_SERVER_"
                            f"{setting.upper()}", code="not_configured")
    code = secrets.token_urlsafe(24)
    channel.verify_hash = code_hash(code)
    channel.verify_expires_at = utcnow() + timedelta(seconds=runtime.settings.link_ttl_s)
    session.commit()
    bot = runtime.settings.telegram_bot_username if channel.type == "telegram" else None
    command = {"telegram": f"/start {code}", "discord": f"/link code:{code}",
               "slack": f"{runtime.settings.slack_command} link {code}"}
    return LinkCode(code=code, command=command.get(channel.type, f"/link {code}"),
                    url=f"https://t.me/{bot}?start={code}" if bot else None,
                    expires_at=channel.verify_expires_at)


# -- templates (pro) -------------------------------------------------------------------------


def compiled(source: str) -> templates.Template:
    try:
        return templates.compile_template(source)
    except templates.TemplateError as exc:
        raise ApiError(422, f"template: {exc}", code="invalid_template") from None


def previews(template: templates.Template) -> dict[str, str]:
    """The template rendered with a sample event, in every dialect."""
    return {d: template.render(templates.SAMPLE_FIELDS, d) for d in DIALECTS}


def set_template(session: Session, plan: str, channel: Channel,
                 source: str) -> templates.Template:
    """Check and save a channel's custom template (committed)."""
    if plan != "pro":
        raise ApiError(403, "custom templates are a pro feature")
    if channel.type not in TEMPLATED:
        raise ApiError(409, f"{channel.type} channels do not take a custom template yet")
    template = compiled(source)
    channel.config = {**channel.config, "template": template.source}
    session.commit()
    return template


def clear_template(session: Session, channel: Channel) -> None:
    channel.config = {k: v for k, v in channel.config.items() if k != "template"}
    session.commit()
