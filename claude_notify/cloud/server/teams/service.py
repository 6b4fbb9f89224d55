"""What a team does: invite, accept, change roles, remove, leave and hand over ownership.

Every function works in the caller's transaction and writes its line of the activity log
(:func:`record`); the routes (``/v1/workspace…`` and the web app's workspace pages) commit, then
close the relay connections of tokens a removal revoked.

The rules, in one place:

* Only a Pro workspace invites, and it holds at most :data:`SEATS` people, its owner included;
  pending invites count, so a sixth cannot even be sent. The seat is checked again, under the
  workspace's row lock, when an invite is accepted.
* An invite is a link mailed to one address (its secret stored as SHA-256), good for
  :data:`INVITE_TTL` and once; only a ``POST`` accepts it, so a mail scanner that opens links
  joins nobody. Each inviter may send :data:`INVITES_PER_DAY`. Pressing Join signs the browser
  in as the invited address, so the link goes only to that mailbox, never back to the inviter
  (who could otherwise invite someone's address and sign in as them).
* Admins manage members and viewers; only the owner appoints or removes admins; nobody removes
  the owner, who hands the workspace over first (an offer the other member accepts).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth, limits, outbox
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import ApiToken, Role, User, Workspace, WorkspaceMember
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import access
from claude_notify.cloud.server.teams.access import Member
from claude_notify.cloud.server.teams.models import AuditEntry, WorkspaceInvite
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.errors import UsageError
from claude_notify.events import utcnow

SEATS: Final = 5
INVITE_TTL: Final = timedelta(days=7)
TRANSFER_TTL: Final = timedelta(days=7)
INVITES_PER_DAY: Final = 20
INVITABLE: Final = (Role.ADMIN, Role.MEMBER, Role.VIEWER)


def _refused(message: str, status: int = 403, code: str = "role_refused") -> ApiError:
    return ApiError(status, message, code=code)


def record(session: Session, workspace_id: uuid.UUID, actor: User | None, action: str,
           target: str = "", **detail: Any) -> None:
    """One line of the workspace's activity log."""
    session.add(AuditEntry(workspace_id=workspace_id, actor_id=actor.id if actor else None,
                           actor_email=actor.email if actor else "", action=action,
                           target=target[:320], detail=detail, at=utcnow()))


def _person(session: Session, who: Member) -> User:
    user = session.get(User, who.user_id)
    if user is None:
        raise ApiError(401, "invalid, expired or revoked token")
    return user


# -- invites ------------------------------------------------------------------------------------


def _seats_taken(session: Session, workspace_id: uuid.UUID, *, now: datetime) -> int:
    members = session.scalar(select(func.count()).select_from(WorkspaceMember)
                             .where(WorkspaceMember.workspace_id == workspace_id)) or 0
    pending = session.scalar(select(func.count()).select_from(WorkspaceInvite).where(
        WorkspaceInvite.workspace_id == workspace_id, WorkspaceInvite.accepted_at.is_(None),
        WorkspaceInvite.revoked_at.is_(None), WorkspaceInvite.expires_at > now)) or 0
    return members + pending


def invite(session: Session, settings: Settings, who: Member, email: str,
           role: str = Role.MEMBER) -> WorkspaceInvite:
    """Invite ``email`` as ``role`` and queue the mail; the caller commits and wakes. The
    link is only in the mail: it signs in as ``email``, so the inviter never sees it."""
    if not access.manages(who):
        raise _refused("only the workspace's owner and admins invite")
    if role not in INVITABLE:
        raise ApiError(422, f"invite as one of: {', '.join(INVITABLE)}")
    if role == Role.ADMIN and who.role != Role.OWNER:
        raise _refused("only the owner invites admins")
    workspace = session.get(Workspace, who.workspace_id, with_for_update=True)
    if workspace is None:
        raise ApiError(404, "no such workspace", code="not_found")
    if workspace.plan != "pro":
        raise _refused("a free workspace cannot invite: team workspaces are a Pro feature",
                       code="plan_refused")
    try:
        address = auth.normalise_email(email)
        auth.check_address(address)
    except UsageError as exc:
        raise ApiError(422, str(exc)) from None
    inviter = _person(session, who)
    if session.scalar(select(WorkspaceMember.user_id).join(User, User.id == WorkspaceMember.user_id)
                      .where(WorkspaceMember.workspace_id == workspace.id,
                             User.email == address)) is not None:
        raise ApiError(409, f"{address} is a member already", code="conflict")
    now = utcnow()
    # Inviting an address again sends a new link in place of the old one: one person, one
    # pending seat (else a re-sent invite would hold a second seat for a week).
    session.execute(update(WorkspaceInvite).where(
        WorkspaceInvite.workspace_id == workspace.id, WorkspaceInvite.email == address,
        WorkspaceInvite.accepted_at.is_(None), WorkspaceInvite.revoked_at.is_(None))
        .values(revoked_at=now))
    if _seats_taken(session, workspace.id, now=now) >= SEATS:
        raise _refused(f"a workspace has at most {SEATS} people, pending invites included: "
                       "remove someone or revoke an invite first", code="seats_full")
    if limits.reached(session, INVITES_PER_DAY, 86400.0, WorkspaceInvite.created_at,
                      WorkspaceInvite.invited_by == inviter.id):
        raise ApiError(429, f"at most {INVITES_PER_DAY} invites a day; try again tomorrow",
                       headers={"Retry-After": "3600"})
    secret = "cni_" + secrets.token_urlsafe(32)
    row = WorkspaceInvite(id=uuid.uuid4(), workspace_id=workspace.id, email=address, role=role,
                          link_hash=_hash(secret), invited_by=inviter.id, created_at=now,
                          expires_at=now + INVITE_TTL)
    session.add(row)
    link = f"{settings.public_url.rstrip('/')}/app/invite?token={secret}"
    text = (f"{inviter.email} invited you to the claude-notify workspace {workspace.name!r} as "
            f"{role}.\n\nTo join, open {link} and press Join (the link works once, for 7 "
            "days).\n\nIf you do not know them, ignore this message.")
    outbox.queue_invite(session, workspace_id=workspace.id, address=address,
                        payload=render_simple("You are invited to a claude-notify workspace",
                                              text, link), now=now)
    record(session, workspace.id, inviter, "member.invited", address, role=role)
    return row


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def pending_invite(session: Session, secret: str, *, lock: bool = False) -> WorkspaceInvite | None:
    """The invite a link carries, if it can still be accepted."""
    if not secret.startswith("cni_") or len(secret) > 100:
        return None
    stmt = select(WorkspaceInvite).where(WorkspaceInvite.link_hash == _hash(secret))
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None or row.accepted_at or row.revoked_at or row.expires_at <= utcnow():
        return None
    return row


def accept(session: Session, settings: Settings, secret: str) -> tuple[User, Workspace] | None:
    """Accept an invite: its address's account (made if it has none: the mailed link proves the
    address, as a sign-in link does) joins the workspace. ``None`` when the link is unknown,
    used, revoked or expired; an :class:`ApiError` when the workspace is full or no longer
    Pro. The caller commits, and signs the browser in as the returned user."""
    # The workspace's row first, then the invite's: the order invite() and revoke_invite() lock
    # them in, so a join racing a re-invite or a revoke waits instead of deadlocking.
    peek = pending_invite(session, secret)
    if peek is None:
        return None
    workspace = session.get(Workspace, peek.workspace_id, with_for_update=True)
    row = pending_invite(session, secret, lock=True)
    if workspace is None or row is None:
        return None
    if workspace.plan != "pro":
        raise _refused("this workspace is no longer on Pro, so it cannot take new members",
                       code="plan_refused")
    user = session.scalar(select(User).where(User.email == row.email))
    already = (user is not None
               and session.get(WorkspaceMember, (workspace.id, user.id)) is not None)
    if not already:
        members = session.scalar(select(func.count()).select_from(WorkspaceMember)
                                 .where(WorkspaceMember.workspace_id == workspace.id)) or 0
        if members >= SEATS:
            raise _refused(f"this workspace has all {SEATS} seats taken; ask its owner to free "
                           "one", code="seats_full")
    if user is None:
        # Made as a sign-in makes one: under the operator's sign-up rules (closed, or some
        # domains only) and the regions' directory, which an invite does not get around.
        from claude_notify.cloud.server.web.signin import account_for

        user = account_for(session, settings, row.email)
        if user is None:
            raise _refused(f"this server does not open an account for {row.email}: ask its "
                           "operator", code="signup_refused")
    row.accepted_at = utcnow()
    if not already:
        session.add(WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=row.role,
                                    created_at=utcnow()))
        record(session, workspace.id, user, "member.joined", user.email, role=row.role)
    return user, workspace


def revoke_invite(session: Session, who: Member, invite_id: uuid.UUID) -> WorkspaceInvite:
    # Locked as accept() locks it (workspace, then invite): a revoke racing a join sees the
    # join, or the join the revoke.
    session.get(Workspace, who.workspace_id, with_for_update=True)
    row = session.scalar(select(WorkspaceInvite).where(
        WorkspaceInvite.id == invite_id, WorkspaceInvite.workspace_id == who.workspace_id)
        .with_for_update())
    if row is None:
        raise ApiError(404, "no such invite", code="not_found")
    if row.accepted_at is None and row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, who.workspace_id, _person(session, who), "invite.revoked", row.email)
    return row


def invites(session: Session, who: Member) -> list[WorkspaceInvite]:
    """The workspace's invites still pending."""
    return list(session.scalars(select(WorkspaceInvite).where(
        WorkspaceInvite.workspace_id == who.workspace_id, WorkspaceInvite.accepted_at.is_(None),
        WorkspaceInvite.revoked_at.is_(None), WorkspaceInvite.expires_at > utcnow())
        .order_by(WorkspaceInvite.created_at)))


# -- members ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seat:
    user_id: uuid.UUID
    email: str
    role: str
    joined_at: datetime


def members(session: Session, workspace_id: uuid.UUID) -> list[Seat]:
    rows = session.execute(
        select(User.id, User.email, WorkspaceMember.role, WorkspaceMember.created_at)
        .join(WorkspaceMember, WorkspaceMember.user_id == User.id)
        .where(WorkspaceMember.workspace_id == workspace_id)
        .order_by(WorkspaceMember.created_at, User.email))
    return [Seat(*row) for row in rows]


def _their_seat(session: Session, who: Member, user_id: uuid.UUID) -> WorkspaceMember:
    row = session.get(WorkspaceMember, (who.workspace_id, user_id), with_for_update=True)
    if row is None:
        raise ApiError(404, "no such member", code="not_found")
    return row


def _may_manage(who: Member, role: str) -> None:
    """Admins manage members and viewers; the owner manages admins too; nobody the owner."""
    if role == Role.OWNER:
        raise _refused("nobody changes or removes the owner: the owner hands the workspace "
                       "over first (transfer)")
    if role == Role.ADMIN and who.role != Role.OWNER:
        raise _refused("only the owner changes or removes admins")
    if not access.manages(who):
        raise _refused("only the workspace's owner and admins manage members")


def set_role(session: Session, who: Member, user_id: uuid.UUID, role: str) -> WorkspaceMember:
    row = _their_seat(session, who, user_id)
    _may_manage(who, row.role)
    if role not in INVITABLE:
        raise ApiError(422, f"choose one of: {', '.join(INVITABLE)}")
    if role == Role.ADMIN and who.role != Role.OWNER:
        raise _refused("only the owner appoints admins")
    if row.role != role:
        target = session.get(User, user_id)
        record(session, who.workspace_id, _person(session, who), "member.role_changed",
               target.email if target else str(user_id), role=role, was=row.role)
        row.role = role
    return row


def remove(session: Session, who: Member, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Take ``user_id`` out of the workspace: their seat, their tokens for it (revoked, so their
    agents' connections close once the caller tells the relay) and their personal channels in
    it. Returns the revoked token ids; the caller commits, then calls ``hub.revoked``."""
    if user_id == who.user_id:
        raise _refused("to leave a workspace, leave it (owners transfer it first)")
    _lock(session, who.workspace_id)
    row = _their_seat(session, who, user_id)
    _may_manage(who, row.role)
    target = session.get(User, user_id)
    revoked = _drop(session, who.workspace_id, user_id)
    record(session, who.workspace_id, _person(session, who), "member.removed",
           target.email if target else str(user_id), role=row.role)
    return revoked


def leave(session: Session, who: Member) -> list[uuid.UUID]:
    """The caller leaves the workspace (an owner must transfer it first); see :func:`remove`."""
    if who.role == Role.OWNER:
        # Not a role refusal (the owner may use the route): the workspace's state forbids it.
        raise ApiError(409, "the owner cannot leave: transfer the workspace to another member "
                            "first", code="conflict")
    me = _person(session, who)
    _lock(session, who.workspace_id)
    revoked = _drop(session, who.workspace_id, me.id)
    record(session, who.workspace_id, me, "member.left", me.email)
    return revoked


def _lock(session: Session, workspace_id: uuid.UUID) -> None:
    """The workspace's row lock, taken before any member's row, as :func:`take_over` does: a
    removal and a handover to the same person wait for each other instead of deadlocking."""
    session.get(Workspace, workspace_id, with_for_update=True)


def _drop(session: Session, workspace_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
    from claude_notify.cloud.server.db.models import Channel

    session.execute(delete(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace_id,
                                                  WorkspaceMember.user_id == user_id))
    ids = list(session.scalars(select(ApiToken.id).where(
        ApiToken.workspace_id == workspace_id, ApiToken.user_id == user_id,
        ApiToken.revoked_at.is_(None))))
    if ids:
        session.execute(update(ApiToken).where(ApiToken.id.in_(ids)).values(revoked_at=utcnow()))
    session.execute(delete(Channel).where(Channel.workspace_id == workspace_id,
                                          Channel.user_id == user_id, Channel.personal))
    hand_over_channels(session, workspace_id, user_id)
    session.execute(update(WebSession).where(WebSession.user_id == user_id,
                                             WebSession.workspace_id == workspace_id)
                    .values(workspace_id=None))
    # A handover offered to them goes with them: else, invited back later, they could still
    # take the workspace over on an offer made to the member they were before.
    session.execute(update(Workspace).where(Workspace.id == workspace_id,
                                            Workspace.transfer_to == user_id)
                    .values(transfer_to=None, transfer_expires_at=None))
    if session.scalar(select(WorkspaceMember.workspace_id)
                      .where(WorkspaceMember.user_id == user_id).limit(1)) is None:
        _own_again(session, user_id)
    return ids


LINKED_KEYS: Final = ("tg_user_id", "discord_user_id", "feishu_open_id", "slack_user_id")
"""A channel's config values naming the one chat account whose replies and presses count."""


def hand_over_channels(session: Session, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """The shared channels ``user_id`` added to the workspace pass to its owner when they go
    (the team keeps its Feishu group), without their chat account: its replies and presses
    counted as the person who added the channel, and must not count as the owner's."""
    from claude_notify.cloud.server.db.models import Channel

    owner = session.scalar(select(WorkspaceMember.user_id).where(
        WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.role == Role.OWNER))
    if owner is None or owner == user_id:
        return
    for channel in session.scalars(select(Channel).where(
            Channel.workspace_id == workspace_id, Channel.user_id == user_id,
            ~Channel.personal)):
        channel.user_id = owner
        channel.config = {k: v for k, v in channel.config.items() if k not in LINKED_KEYS}


def _own_again(session: Session, user_id: uuid.UUID) -> None:
    """A new (free) workspace of their own for someone who belongs to none any more: who
    handed theirs over, then left or was removed from it. Everyone is in a workspace (their
    sign-in, tokens and pages act in one), as a new account is from its start."""
    person = session.get(User, user_id)
    if person is None:
        return
    own = Workspace(id=uuid.uuid4(), name=person.email, plan="free", timezone=person.timezone,
                    created_at=utcnow())
    session.add(own)
    session.flush()
    session.add(WorkspaceMember(workspace_id=own.id, user_id=user_id, role=Role.OWNER,
                                created_at=utcnow()))


# -- ownership ----------------------------------------------------------------------------------


def offer(session: Session, who: Member, user_id: uuid.UUID) -> Workspace:
    """The owner offers the workspace to another member, who accepts with :func:`take_over`."""
    if who.role != Role.OWNER:
        raise _refused("only the owner hands the workspace over")
    if user_id == who.user_id:
        raise ApiError(422, "you own it already")
    _their_seat(session, who, user_id)
    workspace = session.get(Workspace, who.workspace_id, with_for_update=True)
    assert workspace is not None  # noqa: S101 - the caller is its owner
    workspace.transfer_to = user_id
    workspace.transfer_expires_at = utcnow() + TRANSFER_TTL
    target = session.get(User, user_id)
    record(session, workspace.id, _person(session, who), "owner.offered",
           target.email if target else str(user_id))
    return workspace


def take_over(session: Session, who: Member) -> Workspace:
    """The member offered the workspace accepts: they become its owner (its plan, Stripe
    customer and billing mail go with it) and the previous owner an admin."""
    workspace = session.get(Workspace, who.workspace_id, with_for_update=True)
    if (workspace is None or workspace.transfer_to != who.user_id
            or workspace.transfer_expires_at is None
            or workspace.transfer_expires_at <= utcnow()):
        raise ApiError(404, "no handover of this workspace is waiting for you", code="not_found")
    session.execute(update(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace.id,
                                                  WorkspaceMember.role == Role.OWNER)
                    .values(role=Role.ADMIN))
    session.execute(update(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace.id,
                                                  WorkspaceMember.user_id == who.user_id)
                    .values(role=Role.OWNER))
    workspace.transfer_to = None
    workspace.transfer_expires_at = None
    me = _person(session, who)
    workspace.timezone = me.timezone  # the quota day follows its owner's clock
    record(session, workspace.id, me, "owner.accepted", me.email)
    return workspace


# -- reading ------------------------------------------------------------------------------------


def workspaces_of(session: Session, user_id: uuid.UUID) -> list[tuple[Workspace, str]]:
    """Every workspace ``user_id`` belongs to, with their role, their own first."""
    rows = session.execute(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)
        .order_by(WorkspaceMember.role != Role.OWNER, WorkspaceMember.created_at))
    return [(w, r) for w, r in rows]


def activity(session: Session, workspace_id: uuid.UUID, *, action: str | None = None,
             actor: str | None = None, limit: int = 200) -> list[AuditEntry]:
    """The activity log, newest first, filtered by action prefix and actor address."""
    stmt = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
    if action:
        stmt = stmt.where(AuditEntry.action.startswith(action, autoescape=True))
    if actor:
        stmt = stmt.where(AuditEntry.actor_email == auth.normalise_email(actor))
    return list(session.scalars(stmt.order_by(AuditEntry.at.desc(), AuditEntry.id).limit(limit)))
