"""Reply tokens: what a phone holds to queue the next command for one session, and nothing else.

A task notification that can be replied to (its task ran in a session on a known machine, for a
pro account) carries one in its task link's fragment (``…/t/<task>#reply=cnr_…``: a fragment
never reaches a server's access log). The token is ``cnr_<row id>.<secret>``: the row is found by
its id, and the secret's SHA-256 compared with :func:`hmac.compare_digest`; the raw token is
never stored. It only works on ``POST /v1/commands`` (every other route wants a ``cnt_`` API
token), only for the (user, machine, session) it was issued for, and only until it expires
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
from typing import Final

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.db.models import ApiToken, Notification, Task, User
from claude_notify.cloud.server.relay.models import RelayAgent, RelayReplyToken
from claude_notify.events import utcnow

PREFIX: Final = "cnr_"
"""Tells a reply token from an API token (``cnt_``) at a glance, and in the bearer header."""
KEEP_EXPIRED: Final = timedelta(days=7)
"""An expired token's row stays this long, so a late use is still refused *and audited* for its
owner; then the next token issued to that owner clears it."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(session: Session, row: Notification, *, ttl_s: float) -> str | None:
    """A fresh token for a notification's task session, or ``None`` when it cannot be replied to.

    One row per notification: a retry or re-send rotates its secret and expiry.
    """
    task = session.get(Task, row.task_id) if row.task_id else None
    if task is None or not task.session_id or not task.machine_id or row.user_id is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.plan != "pro":
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
    token.machine_id, token.session_id = task.machine_id, task.session_id
    token.token_hash, token.created_at = _hash(secret), now
    token.expires_at = now + timedelta(seconds=ttl_s)
    return f"{PREFIX}{token.id.hex}.{secret}"


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
    return Checked(row, None)
