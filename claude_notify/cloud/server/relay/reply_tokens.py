"""Reply tokens: what a phone holds to queue the next command for one session, and nothing else.

A task notification that can be replied to (its task ran in a session on a known machine, for a
pro account) carries one in its task link's fragment (``…/t/<task>#reply=cnr_…``: a fragment
never reaches a server's access log), but only where the owner alone reads it: a Telegram chat
that Telegram called private when it was linked (:func:`private_to_owner`) and that the owner
linked themselves, never a group, supergroup, channel, webhook or shared chat, where anyone who
reads or is forwarded the message could use it, nor a workspace's channel a teammate linked to
their own chat. The token is ``cnr_<row id>.<secret>``: the row is found by its id, and the
secret's SHA-256 compared with :func:`hmac.compare_digest`; the raw token is never stored. It
only works on ``POST /v1/commands`` (every other route wants a ``cnt_`` API token), only for the
run its notification was about (user, session, machine and directory), once (a command it
queued uses it up; a refused one does not), and only until it expires
(``CLAUDE_NOTIFY_SERVER_RELAY_REPLY_TOKEN_TTL_S``, a day by default). Sending the notification
again rotates the secret: only the copy last sent works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import ApiToken, Channel, Delivery, User
from claude_notify.cloud.server.relay.models import RelayAgent, RelayReplyToken
from claude_notify.cloud.server.relay.queue import Target, target_of
from claude_notify.events import utcnow

PREFIX: Final = "cnr_"
"""Tells a reply token from an API token (``cnt_``) at a glance, and in the bearer header."""
KEEP_EXPIRED: Final = timedelta(days=7)
"""An expired token's row stays this long, so a late use is still refused *and audited* for its
owner; then the next token issued to that owner clears it."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def private_to_owner(channel_type: str, config: dict[str, Any]) -> bool:
    """Whether only the owner reads this destination, so a reply token may be sent there.

    A Telegram chat whose type Telegram gave as ``private`` when it was linked (recorded as
    ``chat_type``), with a positive id (groups, supergroups and channels have negative ones; a
    group that became a supergroup got a new, negative id). A chat linked before the type was
    recorded counts as not private: linking it again records it.
    """
    chat_id = config.get("chat_id")
    return (channel_type == "telegram" and config.get("chat_type") == "private"
            and isinstance(chat_id, int) and not isinstance(chat_id, bool) and chat_id > 0)


def issue(session: Session, row: Delivery, target: Target, *, ttl_s: float) -> str | None:
    """A fresh token for the run ``target`` a notification was about, or ``None`` when it
    cannot be replied to (not a pro account).

    One row per notification: a retry or re-send rotates its secret and expiry, and a fresh
    secret may be used once again.
    """
    if row.user_id is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or auth.person_plan(session, user.id) != "pro":
        return None
    secret = secrets.token_urlsafe(24)
    now = utcnow()
    swept = session.info.setdefault("reply_tokens_swept", set())
    if user.id not in swept:  # once per user and transaction: a batch sends many at once
        swept.add(user.id)
        session.execute(delete(RelayReplyToken).where(
            RelayReplyToken.user_id == user.id, RelayReplyToken.expires_at < now - KEEP_EXPIRED))
    token = session.scalar(select(RelayReplyToken).where(
        RelayReplyToken.notification_id == row.id))
    if token is None:
        token = RelayReplyToken(id=uuid.uuid4(), user_id=user.id, notification_id=row.id)
        session.add(token)
    token.machine_id, token.session_id = target.machine_id, target.session_id
    token.token_hash, token.created_at = _hash(secret), now
    token.expires_at, token.last_used_at = now + timedelta(seconds=ttl_s), None
    return f"{PREFIX}{token.id.hex}.{secret}"


def use(session: Session, token: RelayReplyToken) -> bool:
    """Mark ``token`` used; ``False`` when it already was (by this or any replica: the row's
    update is the arbiter, so of two concurrent uses one wins)."""
    done = session.execute(
        update(RelayReplyToken)
        .where(RelayReplyToken.id == token.id, RelayReplyToken.last_used_at.is_(None))
        .values(last_used_at=utcnow())
        .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0) == 1)


def give_back(session: Session, token: RelayReplyToken) -> None:
    """Undo :func:`use` in the same transaction (the command was refused, nothing queued)."""
    session.execute(update(RelayReplyToken).where(RelayReplyToken.id == token.id)
                    .values(last_used_at=None).execution_options(synchronize_session=False))


def target(session: Session, token: RelayReplyToken) -> Target | str:
    """The run a token's notification was about, where its command goes; else why not.

    The notification's chat is checked again at each use: a token sent into a group before
    tokens were kept out of groups, or to a chat that has since become a supergroup, queues
    nothing.
    """
    row = session.get(Delivery, token.notification_id) if token.notification_id else None
    channel = session.get(Channel, row.channel_id) if row is not None and row.channel_id else None
    if channel is None or not private_to_owner(channel.type, channel.config):
        return "this reply token was not sent to a private chat"
    if channel.user_id != token.user_id:
        # A workspace's shared chat linked by a teammate gets everyone's notifications: a token
        # there would let that teammate command this person's machine as them.
        return "this reply token was sent to someone else's chat"
    found = target_of(session, row) if row is not None else None
    if found is None or (found.session_id, found.machine_id) != (token.session_id,
                                                                 token.machine_id):
        return "the task this reply token was issued for is gone"
    return found


def revoked_since_issued(session: Session, row: RelayReplyToken) -> bool:
    """Whether, since ``row`` was issued, its owner had a token revoked that could queue commands
    (``server revoke --user`` revokes them all) or its machine's agent token was (by ``server
    revoke`` or by registering the machine again): a reply token is worth no more than those."""
    machine_agents = select(RelayAgent.token_id).where(RelayAgent.user_id == row.user_id,
                                                       RelayAgent.machine_id == row.machine_id)
    return session.scalar(select(ApiToken.id).where(
        ApiToken.user_id == row.user_id, ApiToken.revoked_at >= row.created_at,
        or_(ApiToken.scopes.contains("commands:write"), ApiToken.id.in_(machine_agents)),
    ).limit(1)) is not None


@dataclass(frozen=True, slots=True)
class Checked:
    """What a presented token turned out to be. ``row`` is ``None`` when no row had its id (then
    nobody can be told about it); ``problem`` is ``None`` when it may be used."""

    row: RelayReplyToken | None
    problem: str | None


def check(session: Session, presented: str) -> Checked:
    """Find and verify a presented reply token (the secret compared in constant time)."""
    head, dot, secret = presented.removeprefix(PREFIX).partition(".")
    if not presented.startswith(PREFIX) or not dot or len(presented) > 200:
        return Checked(None, "not a reply token")
    try:
        token_id = uuid.UUID(hex=head)
    except ValueError:
        return Checked(None, "not a reply token")
    row = session.get(RelayReplyToken, token_id)
    if row is None:
        return Checked(None, "unknown reply token")
    if not hmac.compare_digest(_hash(secret).encode(), row.token_hash.encode()):
        return Checked(row, "wrong reply token")
    if row.expires_at <= utcnow():
        return Checked(row, "the reply token has expired")
    if revoked_since_issued(session, row):
        return Checked(row, "the reply token was revoked")
    if row.last_used_at is not None:
        return Checked(row, "the reply token was already used")
    return Checked(row, None)
