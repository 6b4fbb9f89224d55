"""The relay's state machine, in the database: queue, deliver, start, finish, expire, audit.

Every function takes the caller's session and leaves the commit to it, so a refusal and its audit
row, or a state change and its audit row, land together. A command is handed to an agent only
when it is the oldest unfinished one of its session (commands for one session run in order),
and it reaches ``running`` only when the agent says it started it: an agent that reconnects is
sent the ``delivered`` ones again, and its own journal of started ids keeps it from running one
twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import limits
from claude_notify.cloud.server.db.models import (
    ApiToken,
    Delivery,
    Event,
    Task,
    User,
    WorkspaceMember,
)
from claude_notify.cloud.server.relay.models import RelayAgent, RelayAudit, RelayCommand
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

OPEN: Final = ("queued", "delivered", "running")
FINAL: Final = ("done", "failed", "expired", "refused")


@dataclass(frozen=True)
class RelayPolicy:
    """The server's relay limits: its settings' ``relay_*`` values (defaults and meanings
    there), read once per app."""

    ttl_s: float
    """How long a command waits for an offline agent before it expires."""
    per_minute: int
    """Commands (accepted or refused) one sender may send in a minute (per actor)."""
    banned: tuple[str, ...]
    """Lower-case keywords that refuse a shell command (spec §11's list by default)."""
    poll_s: float
    """How often a connected agent's queue is re-read without a wake-up (expiry, other replicas)."""
    idle_s: float
    """An agent silent this long (no heartbeat) is disconnected."""
    reply_token_ttl_s: float
    """How long a notification's reply token can queue a command for its session."""

    @classmethod
    def of(cls, settings: Settings) -> RelayPolicy:
        return cls(ttl_s=settings.relay_ttl_s, per_minute=settings.relay_per_minute,
                   banned=tuple(word.lower() for word in settings.relay_banned),
                   poll_s=settings.relay_poll_s, idle_s=settings.relay_idle_s,
                   reply_token_ttl_s=settings.relay_reply_token_ttl_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RelayPolicy:
        """As a server started with ``env`` (default: this process's) would have it."""
        return cls.of(Settings.from_env(env).validate())


class CommandRefused(Exception):
    """A command the server will not queue; already audited, the caller commits and answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a command, for routing and the audit log."""

    user_id: uuid.UUID
    plan: str
    actor: str
    source: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command runs: the session, machine and directory of one task run.

    A reply is bound to the run its notification was about (:func:`target_of`), never to
    whatever the session's latest event says: any events token can write one, and the latest
    task may be a relayed command's own, registered at its start before an event brings its
    directory (a command queued then ran without one).
    """

    session_id: str
    machine_id: str
    cwd: str | None
    """``None`` when the run's event did not say: such a command is refused, not run elsewhere."""
    source: str | None = None
    """The event's ``source`` (``claude-code`` for a Claude Code session)."""
    owner: uuid.UUID | None = None
    """Whose machine ran it: in a shared workspace, the only person whose commands go there."""
    workspace_id: uuid.UUID | None = None
    """The workspace the task is in: a teammate's refused attempt goes in its activity log."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _target(task: Task, payload: object) -> Target | None:
    payload = payload if isinstance(payload, dict) else {}
    if not task.session_id or not task.machine_id:
        return None
    return Target(task.session_id, task.machine_id, _text(payload.get("cwd")),
                  _text(payload.get("source")), task.user_id, task.workspace_id)


def target_of(session: Session, notification: Delivery) -> Target | None:
    """The run a task notification was about: its task's session and machine, and the
    directory its own event reported; ``None`` when the task names no session or machine."""
    task = session.get(Task, notification.task_id) if notification.task_id else None
    if task is None or notification.event_row_id is None:
        return None
    event = session.get(Event, notification.event_row_id)
    return _target(task, event.payload if event is not None else None)


def target_of_task(session: Session, task: Task) -> Target | None:
    """The run of ``task`` itself: its session and machine, and the directory its latest event
    reported (the web app's task page answers that run)."""
    payload = session.scalar(select(Event.payload).where(Event.task_id == task.id)
                             .order_by(Event.received_at.desc()).limit(1))
    return _target(task, payload)


def latest_target(session: Session, user_id: uuid.UUID, session_id: str) -> Target | None:
    """For a command that answers no notification (the API's ``session_id``): the session's
    latest run that reported its directory, else its latest task (then without a directory).

    A task registered at its start has no event yet: it is passed over, not taken to mean
    "no directory"."""
    tasks = session.scalars(
        select(Task).where(Task.user_id == user_id, Task.session_id == session_id,
                           Task.machine_id.is_not(None))
        .order_by(Task.created_at.desc()).limit(20)).all()
    if not tasks:
        return None
    by_id = {task.id: task for task in tasks}
    events = session.execute(
        select(Event.task_id, Event.payload).where(Event.task_id.in_(by_id))
        .order_by(Event.received_at.desc()).limit(50))
    for task_id, payload in events:
        found = _target(by_id[task_id], payload)
        if found is not None and found.cwd is not None:
            return found
    return _target(tasks[0], None)


def teammates_target(session: Session, user_id: uuid.UUID, session_id: str) -> Target | None:
    """The latest run of ``session_id`` that someone else reported into a workspace ``user_id``
    belongs to: a session they can see on the task page, so a command for it is refused as a
    teammate's (403, audited), not answered as unknown; a stranger's stays unknown (404)."""
    theirs = select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == user_id)
    task = session.scalar(
        select(Task).where(Task.session_id == session_id, Task.machine_id.is_not(None),
                           Task.user_id != user_id, Task.workspace_id.in_(theirs))
        .order_by(Task.created_at.desc()).limit(1))
    return _target(task, None) if task is not None else None


def audit(session: Session, origin: Origin, *, command: str, outcome: str,
          reason: str | None = None, row: RelayCommand | None = None,
          machine_id: str | None = None, session_id: str | None = None) -> None:
    session.add(RelayAudit(
        user_id=origin.user_id, command_id=row.id if row else None, actor=origin.actor[:128],
        source=origin.source, machine_id=row.machine_id if row else machine_id,
        session_id=row.session_id if row else session_id, command=command[:8192],
        outcome=outcome, reason=reason))


def over_limit(session: Session, origin: Origin, policy: RelayPolicy) -> str | None:
    """Why this sender may not act again this minute, else ``None`` (see ``per_minute``)."""
    if limits.reached(session, policy.per_minute, 60.0, RelayAudit.created_at,
                      RelayAudit.user_id == origin.user_id,
                      RelayAudit.actor == origin.actor[:128]):
        return f"more than {policy.per_minute} commands in a minute: try again later"
    return None


def enqueue(session: Session, origin: Origin, *, to: Target | str, command: str,
            policy: RelayPolicy, kind: str = "shell") -> RelayCommand:
    """Queue ``command`` for a run's machine and directory, or raise :class:`CommandRefused`.

    ``to`` is the run a reply answers (its notification's :class:`Target`), or a session id
    (the API), which goes to the session's latest run that reported a directory. A run whose
    directory is unknown is refused: the agent would otherwise have to guess one.

    A ``claude`` command is a prompt: the keyword banlist does not apply to prose ("delete the
    repo" passes any list); Claude Code's permission mode on the agent is the control there.
    """
    session_id = to.session_id if isinstance(to, Target) else to

    def refuse(status: int, reason: str, machine: str | None = None) -> CommandRefused:
        audit(session, origin, command=command, outcome="refused", reason=reason,
              machine_id=machine, session_id=session_id)
        return CommandRefused(status, reason)

    now = utcnow()
    if (limited := over_limit(session, origin, policy)) is not None:
        raise refuse(429, limited)
    if origin.plan != "pro":
        raise refuse(403, "the command relay needs the pro plan")
    lowered = command.lower() if kind == "shell" else ""
    if hit := next((word for word in policy.banned if word in lowered), None):
        raise refuse(403, f"the command contains a banned keyword ({hit!r})")
    target = to if isinstance(to, Target) else (
        latest_target(session, origin.user_id, to)
        or teammates_target(session, origin.user_id, to))
    if target is None:
        raise refuse(404, "no task of yours ran in that session")
    if target.owner is not None and target.owner != origin.user_id:
        # A team shares tasks, never machines: nobody runs anything on a teammate's laptop.
        _record_refusal(session, origin, target)
        raise refuse(403, "only the person whose machine ran that task may run commands there",
                     target.machine_id)
    if target.cwd is None:
        raise refuse(409, "the directory that task ran in is unknown", target.machine_id)
    if not served(session, origin.user_id, target.machine_id):
        # Nothing could run it now, and it must not wait for whoever registers the machine next:
        # after a revocation, that may be someone the owner meant to shut out.
        raise refuse(409, "no agent is registered on that machine (run `claude-notify agent "
                          "register` there)", target.machine_id)
    row = RelayCommand(id=uuid.uuid4(), user_id=origin.user_id, machine_id=target.machine_id,
                       session_id=session_id, command=command, source=origin.source, kind=kind,
                       cwd=target.cwd, state="queued", deliveries=0,
                       created_at=now, expires_at=now + timedelta(seconds=policy.ttl_s))
    session.add(row)
    audit(session, origin, command=command, outcome="queued", row=row)
    return row


def _record_refusal(session: Session, origin: Origin, target: Target) -> None:
    """A teammate's attempt on someone's machine, in the workspace's activity log (who tried,
    whose machine, from where; the command itself stays in the sender's relay audit)."""
    from claude_notify.cloud.server.teams import service  # imports the web app's models

    if target.workspace_id is None or target.owner is None:
        return
    owner = session.get(User, target.owner)
    service.record(session, target.workspace_id, session.get(User, origin.user_id),
                   "relay.refused", owner.email if owner is not None else str(target.owner),
                   machine_id=target.machine_id, session_id=target.session_id,
                   source=origin.source)


def served(session: Session, user_id: uuid.UUID, machine_id: str) -> bool:
    """Whether a live agent credential (not revoked, not expired) is bound to the machine."""
    now = utcnow()
    return session.scalar(
        select(RelayAgent.token_id).join(ApiToken, ApiToken.id == RelayAgent.token_id)
        .where(RelayAgent.user_id == user_id, RelayAgent.machine_id == machine_id,
               ApiToken.revoked_at.is_(None),
               or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
        .limit(1)) is not None


def drop_unserved(session: Session, user_ids: Sequence[uuid.UUID]) -> int:
    """Expire the waiting commands of machines left with no live agent (a revocation): they
    must not run for whoever registers the machine next. Returns how many."""
    rows = session.scalars(select(RelayCommand).where(
        RelayCommand.user_id.in_(user_ids),
        RelayCommand.state.in_(("queued", "delivered")))).all()
    now, dropped = utcnow(), 0
    live: dict[tuple[uuid.UUID, str], bool] = {}
    for row in rows:
        key = (row.user_id, row.machine_id)
        if key not in live:
            live[key] = served(session, *key)
        if live[key]:
            continue
        row.state, row.finished_at = "expired", now
        row.detail = "the machine's agent credential was revoked"
        audit(session, _agent(row.user_id), command=row.command, outcome="expired",
              reason=row.detail, row=row)
        dropped += 1
    return dropped


def due(session: Session, user_id: uuid.UUID, machine_id: str,
        already_sent: set[uuid.UUID]) -> list[RelayCommand]:
    """The commands to hand to this machine's agent now, marked ``delivered``.

    Expires what waited too long, then takes the head of each session's queue, unless that head
    is running or was already sent on this connection.
    """
    now = utcnow()
    overdue = session.scalars(select(RelayCommand).where(
        RelayCommand.user_id == user_id, RelayCommand.machine_id == machine_id,
        RelayCommand.state == "queued", RelayCommand.expires_at <= now)).all()
    for row in overdue:
        row.state, row.finished_at, row.detail = "expired", now, "the agent was offline"
        audit(session, _agent(user_id), command=row.command, outcome="expired",
              reason=row.detail, row=row)
    rows = session.scalars(select(RelayCommand).where(
        RelayCommand.user_id == user_id, RelayCommand.machine_id == machine_id,
        RelayCommand.state.in_(OPEN)).order_by(RelayCommand.created_at, RelayCommand.id)).all()
    heads: dict[str, RelayCommand] = {}
    for row in rows:
        heads.setdefault(row.session_id, row)
    out = []
    for row in heads.values():
        if row.state == "running" or row.id in already_sent:
            continue
        row.state, row.delivered_at, row.deliveries = "delivered", now, row.deliveries + 1
        out.append(row)
    return out


def started(session: Session, user_id: uuid.UUID, machine_id: str, command_id: uuid.UUID) -> bool:
    """The agent started it: ``running`` (once; a repeat changes nothing)."""
    row = _mine(session, user_id, machine_id, command_id)
    if row is None or row.state not in ("queued", "delivered"):
        return False
    row.state, row.started_at = "running", utcnow()
    audit(session, _agent(user_id), command=row.command, outcome="started", row=row)
    return True


def finished(session: Session, user_id: uuid.UUID, machine_id: str, command_id: uuid.UUID, *,
             state: str, exit_code: int | None, detail: str | None) -> bool:
    """The agent's result: ``done``, ``failed`` or ``refused`` (by the agent's own rules)."""
    row = _mine(session, user_id, machine_id, command_id)
    if row is None or row.state not in OPEN or state not in ("done", "failed", "refused"):
        return False
    row.state, row.finished_at = state, utcnow()
    row.exit_code, row.detail = exit_code, (detail or None) and detail[:2000]
    audit(session, _agent(user_id), command=row.command, outcome=state, reason=row.detail,
          row=row)
    return True


def orphaned(session: Session, user_id: uuid.UUID, machine_id: str,
             alive: Sequence[uuid.UUID]) -> None:
    """A reconnecting agent says what it is still running; any other ``running`` one died."""
    rows = session.scalars(select(RelayCommand).where(
        RelayCommand.user_id == user_id, RelayCommand.machine_id == machine_id,
        RelayCommand.state == "running")).all()
    for row in rows:
        if row.id not in alive:
            finished(session, user_id, machine_id, row.id, state="failed", exit_code=None,
                     detail="the agent stopped during the run")


def _mine(session: Session, user_id: uuid.UUID, machine_id: str,
          command_id: uuid.UUID) -> RelayCommand | None:
    row = session.get(RelayCommand, command_id, with_for_update=True)
    if row is None or row.user_id != user_id or row.machine_id != machine_id:
        return None
    return row


def _agent(user_id: uuid.UUID) -> Origin:
    return Origin(user_id=user_id, plan="", actor="agent", source="agent")
