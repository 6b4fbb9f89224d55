"""An account's data, all of it: exported as JSON, or deleted (the GDPR's access and erasure).

Deleting the user's row cascades through every table that names the user or one of its tasks
(the foreign keys say ``ON DELETE CASCADE``); what is keyed by address instead (sign-in
requests and links) is deleted by address.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from claude_notify.cloud.server.billing.models import BillingAccount, BillingChange
from claude_notify.cloud.server.channels import catalog
from claude_notify.cloud.server.db.models import (
    ApiToken,
    Channel,
    Delivery,
    Event,
    LoginRequest,
    Role,
    Task,
    User,
    Workspace,
    WorkspaceMember,
)
from claude_notify.cloud.server.relay.models import (
    Approval,
    RelayAgent,
    RelayAudit,
    RelayCommand,
)
from claude_notify.cloud.server.teams.models import AuditEntry, WorkspaceInvite
from claude_notify.cloud.server.teams.service import hand_over_channels
from claude_notify.cloud.server.web.models import WebIdentity, WebSession, WebSignin

GONE = "(a deleted account)"
"""What the activity log says instead of the address of someone who deleted their account."""


def _owned(user: User) -> Any:
    """The workspaces ``user`` owns."""
    return select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == user.id,
                                                      WorkspaceMember.role == Role.OWNER)


def account(session: Session, user: User) -> dict[str, Any]:
    """The person's own data as one JSON-ready mapping (in a team: their machines' tasks, the
    channels they added, their deliveries; billing of what they own); no secret, hash or key
    is in it."""
    mine = user.id
    owned = _owned(user)
    events: dict[Any, list[dict[str, Any]]] = {}
    for task_id, payload, received in session.execute(
            select(Event.task_id, Event.payload, Event.received_at)
            .where(Event.user_id == mine).order_by(Event.received_at)):
        events.setdefault(task_id, []).append({"received_at": received, "event": payload})
    return {
        "account": {"email": user.email, "timezone": user.timezone,
                    "created_at": user.created_at},
        "workspaces": [{"id": w.id, "name": w.name, "plan": w.plan, "role": role}
                       for w, role in session.execute(
                           select(Workspace, WorkspaceMember.role)
                           .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
                           .where(WorkspaceMember.user_id == mine)
                           .order_by(WorkspaceMember.created_at))],
        "tasks": [{"task_id": t.key, "command": t.cmd, "status": t.status,
                   "exit_code": t.exit_code, "machine_id": t.machine_id,
                   "session_id": t.session_id, "started_at": t.started_at,
                   "finished_at": t.finished_at, "events": events.get(t.id, [])}
                  for t in session.scalars(select(Task).where(Task.user_id == mine)
                                           .order_by(Task.created_at))],
        "channels": [{"id": c.id, "type": c.type, "name": c.name, "rules": c.rules,
                        "config": catalog.shown(c.type, c.config), "personal": c.personal,
                      "enabled": c.enabled, "created_at": c.created_at}
                     for c in session.scalars(select(Channel).where(Channel.user_id == mine))],
        "deliveries": [{"id": d.id, "channel_type": d.channel_type, "kind": d.kind,
                        "status": d.status, "reason": d.reason, "attempts": d.attempts,
                        "created_at": d.created_at, "sent_at": d.sent_at}
                       for d in session.scalars(select(Delivery).where(Delivery.user_id == mine)
                                                .order_by(Delivery.created_at))],
        "relay_commands": [{"id": r.id, "machine_id": r.machine_id, "session_id": r.session_id,
                            "command": r.command, "source": r.source, "state": r.state,
                            "exit_code": r.exit_code, "detail": r.detail,
                            "created_at": r.created_at}
                           for r in session.scalars(select(RelayCommand)
                                                    .where(RelayCommand.user_id == mine))],
        "relay_audit": [{"actor": a.actor, "source": a.source, "command": a.command,
                         "outcome": a.outcome, "reason": a.reason, "created_at": a.created_at}
                        for a in session.scalars(select(RelayAudit)
                                                 .where(RelayAudit.user_id == mine))],
        "approvals": [{"id": a.id, "machine_id": a.machine_id, "session_id": a.session_id,
                       "tool_name": a.tool_name, "display": a.display, "cwd": a.cwd,
                       "state": a.state, "decided_by": a.decided_by, "note": a.note,
                       "created_at": a.created_at, "decided_at": a.decided_at}
                      for a in session.scalars(select(Approval).where(Approval.user_id == mine)
                                               .order_by(Approval.created_at))],
        "machines": [{"machine_id": m.machine_id, "created_at": m.created_at,
                      "last_seen_at": m.last_seen_at}
                     for m in session.scalars(select(RelayAgent)
                                              .where(RelayAgent.user_id == mine))],
        "tokens": [{"name": t.name, "prefix": t.prefix, "scopes": t.scopes,
                    "created_at": t.created_at, "revoked_at": t.revoked_at}
                   for t in session.scalars(select(ApiToken).where(ApiToken.user_id == mine))],
        "browser_sessions": [{"client_ip": w.client_ip, "user_agent": w.user_agent,
                              "created_at": w.created_at, "last_seen_at": w.last_seen_at}
                             for w in session.scalars(select(WebSession)
                                                      .where(WebSession.user_id == mine))],
        "billing": [{"customer_id": b.customer_id, "subscription_id": b.subscription_id,
                     "status": b.status, "current_period_end": b.current_period_end,
                     "cancel_at_period_end": b.cancel_at_period_end, "pro_until": b.pro_until}
                    for b in session.scalars(select(BillingAccount)
                                             .where(BillingAccount.workspace_id.in_(owned)))],
        "plan_changes": [{"at": c.at, "change": c.change, "plan": c.plan, "status": c.status,
                          "cause": c.cause}
                         for c in session.scalars(select(BillingChange)
                                                  .where(BillingChange.workspace_id.in_(owned))
                                                  .order_by(BillingChange.at))],
        "linked_accounts": [{"provider": i.provider, "subject": i.subject,
                             "created_at": i.created_at}
                            for i in session.scalars(select(WebIdentity)
                                                     .where(WebIdentity.user_id == mine)
                                                     .order_by(WebIdentity.created_at))],
    }


RENEWING: frozenset[str] = frozenset({"active", "trialing", "past_due", "unpaid"})


def deletion_blocker(session: Session, user: User) -> str | None:
    """Why the account cannot be deleted now, if something prevents it: a workspace it owns
    that others still share (it would vanish under them), or a paid subscription that would go
    on renewing (Stripe would charge a card for an account that is gone)."""
    shared = session.scalar(select(WorkspaceMember.workspace_id).where(
        WorkspaceMember.workspace_id.in_(_owned(user)), WorkspaceMember.user_id != user.id)
        .limit(1))
    if shared is not None:
        return ("it owns a workspace other members still use: transfer its ownership to one "
                "of them (or remove them) first")
    renewing = session.scalar(select(BillingAccount.subscription_id).where(
        BillingAccount.workspace_id.in_(_owned(user)), BillingAccount.status.in_(RENEWING),
        BillingAccount.cancel_at_period_end.is_(False)))
    if renewing is not None:
        return ("its Pro subscription still renews: cancel it first (Billing, then Manage), "
                "then delete the account")
    return None


def erase(session: Session, user: User) -> None:
    """Delete the account and all of its data; the caller commits."""
    session.execute(delete(LoginRequest).where(LoginRequest.email == user.email))
    session.execute(delete(WebSignin).where(WebSignin.email == user.email))
    session.execute(delete(Delivery).where(Delivery.user_id == user.id))
    # What they own goes with them (deletion_blocker made sure nobody else is in it); in
    # others' workspaces, the rows of their machines and their personal channels cascade with
    # the user, the shared channels they added stay with the team, and the activity log keeps
    # what happened without their address.
    owned = list(session.scalars(_owned(user)))
    for workspace_id in session.scalars(select(WorkspaceMember.workspace_id).where(
            WorkspaceMember.user_id == user.id, WorkspaceMember.workspace_id.not_in(owned))):
        hand_over_channels(session, workspace_id, user.id)
    session.execute(update(AuditEntry).where(AuditEntry.actor_id == user.id)
                    .values(actor_email=GONE))
    session.execute(update(AuditEntry).where(AuditEntry.target == user.email)
                    .values(target=GONE))
    session.execute(delete(WorkspaceInvite).where(WorkspaceInvite.email == user.email))
    session.execute(delete(Workspace).where(Workspace.id.in_(owned)))
    session.execute(delete(User).where(User.id == user.id))
