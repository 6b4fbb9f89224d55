"""What an outbox row sends: the :class:`Message` an adapter encodes for its transport.

An event message is rendered from the stored event when it is sent: its subject, plain text and
the e-mail's HTML here, the chat adapters' bodies from the channel's template. ``verify`` and
``test`` messages and sign-in e-mails were rendered when queued and are read from the payload.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.base import Message
from claude_notify.cloud.server.channels.render import headline
from claude_notify.cloud.server.db.models import Channel, Delivery, Event
from claude_notify.cloud.server.relay.actions import actions_for


def build_message(session: Session, row: Delivery, *, reply_token_ttl_s: float) -> Message | str:
    """The message for an outbox row, or why there is nothing to send (the row is then a dead
    letter with that reason). A reply token it carries is valid ``reply_token_ttl_s``."""
    if row.kind in ("login", "billing", "invite"):  # to an address, no channel (or account)
        to = str((row.payload or {}).get("to", ""))
        return _stored(row, "email", {"address": to})
    channel = session.get(Channel, row.channel_id) if row.channel_id else None
    if channel is None:
        return "channel was deleted before delivery"
    if row.kind != "event":
        return _stored(row, channel.type, dict(channel.config))
    if not channel.enabled:
        return f"channel disabled: {channel.disabled_reason or 'by its owner'}"
    event = session.get(Event, row.event_row_id) if row.event_row_id else None
    if event is None:
        return "event no longer exists"
    # Every channel writes its body from its template; the headline is the subject and what a
    # channel falls back on when a template renders nothing.
    subject = headline(event.payload)
    return Message(
        id=str(row.id),
        channel_type=channel.type,
        config=dict(channel.config),
        kind=row.kind,
        subject=subject,
        text=subject,
        html=None,
        event=event.payload,
        actions=actions_for(session, row, channel, event.payload,
                            reply_token_ttl_s=reply_token_ttl_s),
    )


def _stored(row: Delivery, channel_type: str, config: dict[str, Any]) -> Message:
    """A message rendered when it was queued: its parts are in the row's payload."""
    content = row.payload or {}
    return Message(
        id=str(row.id),
        channel_type=channel_type,
        config=config,
        kind=row.kind,
        subject=str(content.get("subject", "")),
        text=str(content.get("text", "")),
        html=content.get("html"),
    )
