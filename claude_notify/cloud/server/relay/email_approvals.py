"""Permission requests by e-mail: a card whose link answers it once, without signing in.

When an approval is filed, the owner's own address gets one mail: the call literally (escaped in
the HTML part, verbatim in the text part), the project and machine, when it expires, and a link
``{dashboard_url}/approvals/<id>/link#t=cna_…``. The key after ``#t=`` is a fresh random secret,
stored only as its SHA-256 (:class:`~.models.ApprovalLink`), expiring with the approval and spent
by the one answer it carries. It sits in the URL's fragment, which a browser never sends: it is
in no server's or proxy's log and in no ``Referer``.

The link's page (:mod:`claude_notify.cloud.server.web.approval_links`) is the same for every id
and reads nothing; its script takes the key from the fragment and POSTs it to show the card and
to answer, so a mail scanner that opens the link decides nothing.

Only the account's own address gets the mail — an enabled, confirmed e-mail channel whose address
is the one its owner signs in with. Whoever reads that mailbox can sign in as the owner anyway
(the sign-in link goes there), so the key gives nobody a power they did not have; a card mailed
to another address (a team list, a colleague) would let its readers answer, and "only the
machine's owner can answer" is the rule. Sent at once, not through the outbox, like the other
cards: an approval waits minutes at most.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import secrets
import threading
import time
import uuid
from collections import deque
from pathlib import PurePath
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.base import Message
from claude_notify.cloud.server.channels.render import one_line
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.db.models import Channel, User
from claude_notify.cloud.server.relay import approval_kinds
from claude_notify.cloud.server.relay.models import Approval, ApprovalLink
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams.access import private_to
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.relay")

PREFIX: Final = "cna_"
"""Tells an approval link's key from an API token (``cnt_``) or a reply token (``cnr_``)."""
KEY_CHARS: Final = 100
"""Longer presented keys are refused unread (a real one is 47 characters)."""
GUESSES_PER_IP_PER_HOUR: Final = 20
"""Wrong keys one client IP may present in an hour before its link requests are refused."""
ACTOR: Final = "email"
"""Who answered, in the audit log and ``decided_by`` (the agent tells Claude "an e-mail link")."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def can_send(settings: Settings) -> bool:
    """Whether this server can mail a card: an SMTP relay, and a web app address a phone can open
    for the link (:attr:`~claude_notify.cloud.server.settings.Settings.dashboard_url`)."""
    return bool(settings.smtp_host and settings.dashboard_url)


def recipients(session: Session, user_id: uuid.UUID) -> list[str]:
    """The owner's own address, when one of their enabled, confirmed e-mail channels sends there
    (see the module's docstring for why no other address)."""
    user = session.get(User, user_id)
    if user is None:
        return []
    found = session.scalars(select(Channel).where(
        private_to(user_id), Channel.type == "email", Channel.enabled.is_(True),
        Channel.verified_at.is_not(None)))
    mine = any(str(c.config.get("address", "")).strip().lower() == user.email for c in found)
    return [user.email] if mine else []


def issue(session: Session, row: Approval) -> str | None:
    """A fresh key for ``row``'s link (its hash stored, the caller commits); ``None`` when it has
    one already (only the first mail carries a key)."""
    if session.get(ApprovalLink, row.id) is not None:
        return None
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(ApprovalLink(approval_id=row.id, token_hash=_hash(secret), created_at=utcnow(),
                             expires_at=row.expires_at))
    return secret


def link_of(settings: Settings, approval_id: uuid.UUID, secret: str) -> str:
    base = (settings.dashboard_url or "").rstrip("/")
    return f"{base}/approvals/{approval_id}/link#t={secret}"


def card(row: Approval, *, link: str, address: str) -> Message:
    """The mail: text and an escaped HTML twin, every value of the call literal."""
    project = PurePath(row.cwd).name if row.cwd else ""
    where = " · ".join(x for x in (project, row.machine_id[:12]) if x)
    display = clean(row.display)
    until = row.expires_at.strftime("%H:%M UTC")
    offered = clean(approval_kinds.always_label(row) or "")  # a question keeps no labels there
    title = f"Claude wants to use {clean(row.tool_name)}"
    text = (f"{title}\n{where}\n\n{display}\n\n"
            + (f"Always in this session offers: {offered}\n\n" if offered else "")
            + f"Answer by {until}, or in the terminal: {link}\n\n"
            "The link answers once. Anyone with this mail can use it until then: do not "
            "forward it.\n")
    e = html.escape
    page = ("<!doctype html><html><body>"
            f"<p><strong>🔐 {e(title)}</strong><br>{e(where)}</p>"
            f"<pre style='white-space:pre-wrap'>{e(display)}</pre>"
            + (f"<p>Always in this session offers: <code>{e(offered)}</code></p>" if offered
               else "")
            + f"<p><a href=\"{e(link, quote=True)}\">Answer</a> by {e(until)}, or in the "
            "terminal.</p><p style='color:#888'>The link answers once. Anyone with this mail "
            "can use it until then: do not forward it.</p></body></html>")
    return Message(id=row.id.hex, channel_type="email", config={"address": address},
                   kind="approval", subject=one_line(f"🔐 {title}: {display}"), text=text,
                   html=page)


async def mail_card(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Mail a pending approval's card to its owner's own address, with a new key."""
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.email import EmailChannel

    settings = runtime.settings
    if not can_send(settings):
        return

    def prepare() -> list[Message]:
        try:
            with runtime.sessions.begin() as session:
                row = session.get(Approval, approval_id)
                if row is None or row.state != "pending":
                    return []
                addresses = recipients(session, row.user_id)
                secret = issue(session, row) if addresses else None
                if secret is None:
                    return []
                link = link_of(settings, row.id, secret)
                return [card(row, link=link, address=a) for a in addresses]
        except IntegrityError:  # another replica issued its key at the same moment
            return []

    for message in await run_in_threadpool(prepare):
        result = await EmailChannel(settings).send(message)
        if not result.ok:
            log.warning("approval card not mailed: %s", result.detail[:200])


# --------------------------------------------------------------------------- the link's key


def check(session: Session, approval_id: uuid.UUID, presented: str) -> ApprovalLink | None:
    """The link ``presented`` is the key of, for this approval only; ``None`` for anything else
    (another approval's key, a made-up one), compared in constant time."""
    if not presented.startswith(PREFIX) or len(presented) > KEY_CHARS:
        return None
    link = session.get(ApprovalLink, approval_id)
    if link is None or not hmac.compare_digest(_hash(presented).encode(),
                                               link.token_hash.encode()):
        return None
    return link


def spend(session: Session, link: ApprovalLink) -> bool:
    """Use the key up, if it is unused and unexpired; ``False`` otherwise. One conditional
    update: of two answers with one key, on any replica, one spends it and the other is refused.
    The caller decides in the same transaction, so the key and the answer commit together."""
    done = session.execute(
        update(ApprovalLink)
        .where(ApprovalLink.approval_id == link.approval_id, ApprovalLink.used_at.is_(None),
               ApprovalLink.expires_at > utcnow())
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0) == 1)


class Guesses:
    """Wrong keys per client IP in the last hour, in this process: past ``limit`` the IP's link
    requests are refused unread, so keys cannot be tried at speed (a key is 256 random bits,
    out of reach anyway; this bounds the work and the noise). With N replicas a client gets N
    times the limit."""

    CLIENTS: Final = 10_000

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def blocked(self, ip: str, *, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen.get(ip)
            while seen and now - seen[0] > 3600.0:
                seen.popleft()
            return seen is not None and len(seen) >= self.limit

    def failed(self, ip: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._seen.setdefault(ip, deque()).append(now)
            if len(self._seen) > self.CLIENTS:  # forget the quietest clients first
                for stale in [k for k, v in self._seen.items() if now - v[-1] > 3600.0]:
                    del self._seen[stale]
                while len(self._seen) > self.CLIENTS:
                    del self._seen[next(iter(self._seen))]
