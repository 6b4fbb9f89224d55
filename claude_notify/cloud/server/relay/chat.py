"""Commands from Discord, Feishu and Slack: ``/link CODE`` and ``/run <cmd>`` from a linked
account.

The endpoints have already checked that the provider sent the request (an Ed25519 signature, a
verification token and signature), so the sender's id is the provider's word: a Discord user id
or a Feishu ``open_id``. ``/link`` with a code from ``POST /v1/channels/{id}/link`` records that
id in the channel's config (:data:`KEYS`); after that, ``/run`` from the same id goes through
:meth:`~claude_notify.cloud.server.relay.state.Relay.submit` (pro plan, rate limit, banlist,
audit) to the run (session, machine, directory) of the channel's latest notified task,
or of the latest one of the session named.

A sender linked to nothing gets a generic refusal and nothing is recorded: there is no account
to audit it under. A linked owner's refusals are audited and answered in one line.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server import auth, outbox
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import (
    INBOUND_KEYS,
    Channel,
    Delivery,
    DeliveryStatus,
    Task,
    User,
)
from claude_notify.cloud.server.db.ops import insert_ignore
from claude_notify.cloud.server.relay import queue
from claude_notify.cloud.server.relay.link import claim
from claude_notify.cloud.server.relay.models import RelayInboundSeen
from claude_notify.cloud.server.relay.state import Relay
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.relay")

KEYS: Final = {kind: INBOUND_KEYS[kind] for kind in ("discord", "feishu", "slack")}
"""Where each provider's linked sender id is kept in the channel's config."""
STRANGER: Final = "Not run: this account is not linked to claude-notify."
MAX_ECHO: Final = 200
MAX_COMMAND: Final = 8192
"""As ``POST /v1/commands`` takes."""


@dataclass(frozen=True, slots=True)
class Said:
    """One ``/run`` from a chat, as the provider vouched for it."""

    source: str
    """``discord``, ``feishu`` or ``slack``."""
    sender: str
    command: str
    session_id: str | None = None
    """Named by the sender (Discord's ``session`` option); else the latest notified session."""
    group: bool = False
    """Sent in a group chat, where only a channel that allows it takes commands."""


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    """One line for the sender."""
    channel_id: uuid.UUID | None = None
    """The linked channel it concerns (``None`` for a stranger)."""


def link(runtime: Runtime, source: str, sender: str, code: str) -> Answer:
    """Record ``sender`` as the account whose ``/run`` the code's channel takes."""
    with runtime.sessions.begin() as session:
        channel = claim(session, source, code)
        if channel is None:
            return Answer("Not linked: that code is wrong, used or expired.")
        channel.config = {**channel.config, KEYS[source]: sender}
        label = f" ({channel.name})" if channel.name else ""
        return Answer(f"Linked{label}: /run from this account now reaches your machines.",
                      channel.id)


def run(runtime: Runtime, relay: Relay, said: Said) -> Answer:
    """Queue ``said`` for its owner's session, or refuse it (audited); the answer either way."""
    with runtime.sessions.begin() as session:
        found = _target(session, said)
        if found is None:
            log.info("%s: /run from an account linked to nothing", said.source)
            return Answer(STRANGER)
        channel, origin, target, refusal = found
        if refusal is not None or target is None:
            reason = refusal or ("no task of that session was notified on this channel"
                                 if said.session_id else
                                 "no task of a session was notified on this channel yet")
            queue.audit(session, origin, command=said.command, outcome="refused", reason=reason,
                        session_id=target.session_id if target else said.session_id)
            return Answer(f"Not run: {reason}.", channel.id)
    try:
        machine_id = relay.submit(runtime.sessions, origin, to=target, command=said.command,
                                  kind="shell", shown=lambda row: row.machine_id)
    except queue.CommandRefused as refused:
        return Answer(f"Not run: {refused.message}.", channel.id)
    return Answer(f"Queued on {machine_id[:12]}: {said.command[:MAX_ECHO]}", channel.id)


def post(runtime: Runtime, answer: Answer) -> None:
    """Send ``answer`` through its channel like a test message (Feishu: the custom bot)."""
    if answer.channel_id is None:
        return
    with runtime.sessions.begin() as session:
        channel = session.get(Channel, answer.channel_id)
        if channel is None:
            return
        outbox.queue(session, channel, outbox.RELAY,
                     render_simple("claude-notify relay", answer.text))
    runtime.waker.wake()


def _target(session: Session, said: Said
            ) -> tuple[Channel, queue.Origin, queue.Target | None, str | None] | None:
    """The linked channel, who sends, the run it goes to, and a refusal: ``None`` for a stranger.

    The run is that of the channel's latest sent task notification (of the named session, if
    one is named): a ``/run`` answers what the chat was shown, never whatever event of the
    session came last. One account may be linked to several channels (even of several users);
    the one with the most recent such notification wins.
    """
    channels = session.scalars(select(Channel).where(Channel.type == said.source,
                                                     Channel.inbound_key == said.sender[:128])
                               .order_by(Channel.created_at, Channel.id)).all()
    mine = [c for c in channels if c.config.get(KEYS[said.source]) == said.sender]
    if not mine:
        return None
    picked, notification = mine[0], None
    latest = [(found, c) for c in mine
              if (found := _latest(session, c, said.session_id)) is not None]
    if latest:
        (notification, _), picked = max(latest, key=lambda pair: pair[0][1])
    user = session.get(User, picked.user_id)
    assert user is not None  # noqa: S101 - a channel's user is its foreign key
    origin = queue.Origin(user_id=user.id, plan=auth.person_plan(session, user.id),
                          source=said.source,
                          actor=f"{said.source}:{said.sender}")
    row = session.get(Delivery, notification) if notification is not None else None
    target = queue.target_of(session, row) if row is not None else None
    refusal = None
    if said.group and picked.config.get("allow_group_replies") is not True:
        refusal = "commands are taken only in the direct chat with the bot"
    elif len(said.command) > MAX_COMMAND:
        refusal = f"the command is longer than {MAX_COMMAND} characters"
    return picked, origin, target, refusal


def _latest(session: Session, channel: Channel,
            session_id: str | None) -> tuple[uuid.UUID, datetime] | None:
    """The channel's most recently sent task notification (of ``session_id``, if given) that
    names a session, and when."""
    stmt = (select(Delivery.id, Delivery.created_at)
            .join(Task, Delivery.task_id == Task.id)
            .where(Delivery.channel_id == channel.id, Delivery.status == DeliveryStatus.SENT,
                   Task.session_id.is_not(None)))
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    found = session.execute(stmt.order_by(Delivery.created_at.desc()).limit(1)).first()
    return None if found is None else (found[0], found[1])


KEEP_SEEN = timedelta(days=2)
"""Providers redeliver within minutes (Feishu) or not at all (Discord); two days is plenty."""


def first_delivery(sessions: sessionmaker[Session], provider: str, external_id: str) -> bool:
    """True the first time ``provider``'s request ``external_id`` arrives, on any replica.

    An empty id always counts as new. Rows past :data:`KEEP_SEEN` are dropped as new ones come.
    """
    if not external_id:
        return True
    now = utcnow()
    with sessions.begin() as session:
        fresh = insert_ignore(
            session, RelayInboundSeen,
            {"provider": provider, "external_id": external_id[:128], "seen_at": now},
            ["provider", "external_id"],
        )
        if fresh:
            session.execute(delete(RelayInboundSeen).where(
                RelayInboundSeen.provider == provider,
                RelayInboundSeen.seen_at < now - KEEP_SEEN))
    return fresh
