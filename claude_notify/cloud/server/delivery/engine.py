"""Delivering outbox rows: claim, record the attempt, send, settle. At least once, never lost.

The same functions run in the embedded worker and in the distributed workers:

1. :func:`claim_due` takes due rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
   SQLite the single writer makes the conditional ``UPDATE`` atomic) and a fresh claim token.
   A row whose lease lapsed — its worker died mid-send — is due again.
2. :func:`prepare_many` renders the messages (:mod:`~claude_notify.cloud.server.delivery.message`)
   and writes the attempt rows *before* the sends.
3. The adapter sends; it classifies failures as retryable or permanent.
4. :func:`settle_many` marks the rows ``sent``, schedules retries or makes dead letters (the
   policy is :mod:`~claude_notify.cloud.server.delivery.retry`'s). It only touches
   a row while the claim token is still ours, so a worker that lost its lease cannot overwrite
   its successor's result. In the same transaction it flags a channel the provider says is gone
   and merges what the provider taught us into its config (a Telegram chat's new id).

A message is marked sent only after the provider accepted it, so a crash between the two sends
it again: receivers de-duplicate on the stable notification id.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, object_session, sessionmaker

from claude_notify.cloud.server import quota
from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.db.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    Task,
    User,
    Workspace,
)
from claude_notify.cloud.server.delivery import retry
from claude_notify.cloud.server.delivery.message import build_message
from claude_notify.cloud.server.redact import redact
from claude_notify.cloud.server.relay.actions import RELAY_CHANNELS
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

log = logging.getLogger("claude_notify.server.delivery")

LOST: Final = "lost"
"""What :func:`settle_many` answers for a row whose claim lapsed: its new owner settles it."""


@dataclass(frozen=True, slots=True)
class Claim:
    id: uuid.UUID
    token: uuid.UUID


@dataclass(frozen=True, slots=True)
class Prepared:
    claim: Claim
    attempt_id: uuid.UUID
    attempt_number: int
    message: Message
    created_at: datetime
    """When the notification was queued: delivery latency is measured from here."""


def claim_due(sessions: sessionmaker[Session], *, limit: int, lease_s: float) -> list[Claim]:
    """Take up to ``limit`` due rows for this worker."""
    with sessions.begin() as session:
        return _claim(session, limit=limit, lease_s=lease_s)


def next_retry_at(sessions: sessionmaker[Session]) -> datetime | None:
    """When the soonest pending delivery falls due (a retry waiting out its backoff)."""
    with sessions() as session:
        return session.scalar(
            select(func.min(Delivery.next_attempt_at))
            .where(Delivery.status == DeliveryStatus.PENDING)
        )


def claim_and_prepare(
    sessions: sessionmaker[Session], *, limit: int, lease_s: float, reply_token_ttl_s: float
) -> tuple[int, list[Prepared]]:
    """:func:`claim_due` and :func:`prepare_many` in one transaction: one write lock, one commit.

    A row that cannot be rendered is dead-lettered on its own (:func:`_prepare_row`). If preparing
    fails all the same (the database), the claim is rolled back with it; the two steps are then
    taken apart, so the claimed rows keep their lease (and their backoff) as they always did.
    """
    try:
        with sessions.begin() as session:
            claims = _claim(session, limit=limit, lease_s=lease_s)
            return len(claims), _prepare_batch(session, claims, reply_token_ttl_s)
    except Exception:
        log.warning("claiming and preparing in one transaction failed; taking them apart",
                    exc_info=True)
    claims = claim_due(sessions, limit=limit, lease_s=lease_s)
    return len(claims), prepare_many(sessions, claims, reply_token_ttl_s=reply_token_ttl_s)


def _claim(session: Session, *, limit: int, lease_s: float) -> list[Claim]:
    now = utcnow()
    token = uuid.uuid4()
    n = Delivery
    due = or_(
        and_(n.status == DeliveryStatus.PENDING, n.next_attempt_at <= now),
        and_(n.status == DeliveryStatus.SENDING, n.lease_expires_at <= now),
    )
    ids = (
        select(n.id)
        .where(due)
        .order_by(n.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(n)
        .where(n.id.in_(ids.scalar_subquery()), due)
        .values(
            status=DeliveryStatus.SENDING,
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=n.attempts + 1,
        )
        .returning(n.id)
        .execution_options(synchronize_session=False)
    )
    return [Claim(row_id, token) for row_id in session.scalars(stmt)]


def prepare_many(sessions: sessionmaker[Session], claims: list[Claim], *,
                 reply_token_ttl_s: float) -> list[Prepared]:
    """Render the claimed rows' messages and write their attempt rows, in one transaction
    (a reply token among them valid ``reply_token_ttl_s``, the settings' lifetime).

    A row whose claim is no longer ours, or that has nothing to send (dead-lettered instead),
    is left out of the answer."""
    if not claims:
        return []
    with sessions.begin() as session:
        return _prepare_batch(session, claims, reply_token_ttl_s)


def _prepare_batch(session: Session, claims: list[Claim],
                   reply_token_ttl_s: float) -> list[Prepared]:
    """The batch's rows, channels and events are read with one query each, so the per-row work
    finds them in the session instead of asking the database again."""
    if not claims:
        return []
    tokens = {c.id: c.token for c in claims}
    found = session.scalars(select(Delivery).where(Delivery.id.in_(tokens)))
    rows = {r.id: r for r in found if r.claim_token == tokens[r.id]}
    _lose_started(session, [r.id for r in rows.values() if r.attempts > 1])
    channel_ids = {r.channel_id for r in rows.values() if r.channel_id is not None}
    event_ids = {r.event_row_id for r in rows.values() if r.event_row_id is not None}
    # Held here: the session's identity map only keeps weak references.
    loaded: list[object] = [  # what build_message looks up by key
        *session.scalars(select(Channel).where(Channel.id.in_(channel_ids))),
        *session.scalars(select(Event).where(Event.id.in_(event_ids))),
    ] if rows else []
    if any(r.channel_type in RELAY_CHANNELS for r in rows.values()):  # the reply buttons'
        task_ids = {r.task_id for r in rows.values() if r.task_id is not None}
        user_ids = {r.user_id for r in rows.values() if r.user_id is not None}
        loaded += session.scalars(select(Task).where(Task.id.in_(task_ids)))
        loaded += session.scalars(select(User).where(User.id.in_(user_ids)))
    prepared = []
    for claim in claims:
        row = rows.get(claim.id)
        p = _prepare_row(session, claim, row, reply_token_ttl_s) if row is not None else None
        if p is not None:
            prepared.append(p)
    del loaded
    _record_started(session, prepared)
    return prepared


def _lose_started(session: Session, notification_ids: list[uuid.UUID]) -> None:
    """An attempt still "started" belongs to a worker that died holding the lease.

    Only a row tried before can have one, so a first attempt costs no statement here.
    """
    if notification_ids:
        session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.notification_id.in_(notification_ids),
                   DeliveryAttempt.outcome == "started")
            .values(outcome="lost", detail="worker stopped mid-delivery; lease expired")
        )


def _prepare_row(session: Session, claim: Claim, row: Delivery,
                 reply_token_ttl_s: float) -> Prepared | None:
    try:
        message = build_message(session, row, reply_token_ttl_s=reply_token_ttl_s)
    except SQLAlchemyError:
        raise  # the database, not the row: the batch is tried again after its lease
    except Exception as exc:
        # Rendering is deterministic, so a row that raises once raises every time: it is buried
        # alone. Raising would roll back its whole batch, other users' rows included, and leave
        # them "sending" to be claimed again (and fail again) after every lease.
        log.warning("notification %s cannot be prepared; dead-lettered", row.id, exc_info=True)
        message = f"cannot be prepared: {type(exc).__name__}: {exc}"[:500]
    if isinstance(message, str):
        _bury(row, message)
        return None
    return Prepared(claim, uuid.uuid4(), row.attempts, message, row.created_at)


def _record_started(session: Session, prepared: list[Prepared]) -> None:
    """The attempt rows, written before the sends: one statement for the batch."""
    if prepared:
        now = utcnow()
        session.execute(insert(_ATTEMPTS), [
            {"id": p.attempt_id, "notification_id": p.claim.id, "number": p.attempt_number,
             "outcome": "started", "started_at": now}
            for p in prepared
        ])


def _bury(row: Delivery, reason: str) -> None:
    row.status = DeliveryStatus.DEAD
    row.reason = reason
    row.lease_expires_at = None
    row.claim_token = None
    session = object_session(row)
    if session is not None:
        _refund(session, row)


def _refund(session: Session, row: Delivery | None) -> None:
    """A dead event notification gives its quota slot back (the quota counts what was sent)."""
    if row is None or row.kind != "event" or row.workspace_id is None:
        return
    workspace = session.get(Workspace, row.workspace_id)
    if workspace is not None:
        quota.refund(session, workspace_id=workspace.id, plan=workspace.plan,
                     channel_type=row.channel_type, queued_at=row.created_at,
                     tz_name=workspace.timezone)


Outcome = tuple[Prepared, SendResult, int]
"""What a send produced: the prepared delivery, its result and its duration in ms."""


def settle_many(
    sessions: sessionmaker[Session],
    outcomes: list[Outcome],
    *,
    settings: Settings,
    rng: random.Random,
) -> list[str]:
    """Record finished sends in one transaction; each row's new status (:data:`LOST` where the
    claim lapsed), in order.

    The rows still claimed by their senders are locked with one query; the attempts and the
    rows are then written with one statement each, executed for the whole batch.
    """
    if not outcomes:
        return []
    now = utcnow()
    with sessions.begin() as session:
        held = _held(session, outcomes)
        attempts, rows, statuses = [], [], []
        for prepared, result, duration_ms in outcomes:
            result = _masked(result, prepared.message)
            status, values = retry.next_status(prepared.attempt_number, result, settings, rng, now)
            attempts.append(_attempt_params(prepared, result, status, duration_ms))
            if prepared.claim.id not in held:
                statuses.append(LOST)
                continue
            statuses.append(status)
            rows.append(_row_params(prepared.claim.id, status, values))
            if (channel_id := held[prepared.claim.id]) is not None:
                _learn(session, channel_id, prepared, result, now)
            if status == DeliveryStatus.DEAD:
                _refund(session, session.get(Delivery, prepared.claim.id))
        session.execute(_SETTLE_ATTEMPTS, attempts)
        if rows:
            session.execute(_SETTLE_ROWS, rows)
        return statuses


def release_many(sessions: sessionmaker[Session], prepared: list[Prepared]) -> int:
    """Give back rows whose sends a stopping worker cut off: due now, for any worker, instead of
    after their leases. How many were still ours.

    The attempt did not fail, so it is not counted against ``max_attempts``; its row says it was
    cut off (the receiver may have seen it: receivers de-duplicate on the notification id).
    """
    if not prepared:
        return 0
    now = utcnow()
    with sessions.begin() as session:
        released = 0
        for p in prepared:
            n = Delivery
            released += len(session.scalars(
                update(n)
                .where(n.id == p.claim.id, n.status == DeliveryStatus.SENDING,
                       n.claim_token == p.claim.token)
                .values(status=DeliveryStatus.PENDING, claim_token=None, lease_expires_at=None,
                        next_attempt_at=now, attempts=n.attempts - 1)
                .returning(n.id)
                .execution_options(synchronize_session=False)
            ).all())
            session.execute(
                update(DeliveryAttempt)
                .where(DeliveryAttempt.id == p.attempt_id)
                .values(outcome="lost", detail="worker stopped mid-delivery; released")
            )
        return released


def _held(session: Session, outcomes: list[Outcome]) -> dict[uuid.UUID, uuid.UUID | None]:
    """The rows still claimed by these senders, locked, with their channels."""
    tokens = {p.claim.id: p.claim.token for p, _, _ in outcomes}
    locked = session.execute(
        select(Delivery.id, Delivery.channel_id, Delivery.claim_token)
        .where(Delivery.id.in_(tokens), Delivery.status == DeliveryStatus.SENDING)
        .with_for_update()
    )
    return {row_id: channel for row_id, channel, token in locked if token == tokens[row_id]}


_ATTEMPTS: Any = DeliveryAttempt.__table__
_ROWS: Any = Delivery.__table__
_SETTLE_ATTEMPTS = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("b_id"))
    .values(outcome=bindparam("b_outcome"), detail=bindparam("b_detail"),
            duration_ms=bindparam("b_ms"))
)
_SETTLE_ROWS = (
    update(_ROWS)
    .where(_ROWS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        lease_expires_at=None,
        claim_token=None,
        reason=bindparam("b_reason"),
        sent_at=func.coalesce(bindparam("b_sent_at", type_=_ROWS.c.sent_at.type),
                              _ROWS.c.sent_at),
        provider_id=func.coalesce(bindparam("b_provider_id", type_=_ROWS.c.provider_id.type),
                                  _ROWS.c.provider_id),
        next_attempt_at=func.coalesce(bindparam("b_next", type_=_ROWS.c.next_attempt_at.type),
                                      _ROWS.c.next_attempt_at),
    )
)


def _attempt_params(prepared: Prepared, result: SendResult, status: DeliveryStatus,
                    duration_ms: int) -> dict[str, object]:
    """One attempt's parameters for :data:`_SETTLE_ATTEMPTS`."""
    return {
        "b_id": prepared.attempt_id,
        "b_outcome": retry.attempt_outcome(result, status),
        "b_detail": result.detail[:2000],
        "b_ms": duration_ms,
    }


def _row_params(row_id: uuid.UUID, status: str, values: dict[str, object]) -> dict[str, object]:
    """One row's parameters for :data:`_SETTLE_ROWS`: the reason is always written, the other
    columns keep their values where ``values`` leaves them out."""
    return {
        "b_id": row_id,
        "b_status": status,
        "b_reason": values.get("reason"),
        "b_sent_at": values.get("sent_at"),
        "b_provider_id": values.get("provider_id"),
        "b_next": values.get("next_attempt_at"),
    }


def _masked(result: SendResult, message: Message) -> SendResult:
    """The result with secrets masked in its detail, which becomes the attempt's detail, the
    row's reason and a disabled channel's reason, all shown to the user.

    Adapters build details from a fixed vocabulary plus the provider's status and error text;
    a provider or a proxy may still echo a request back, with the operator's token in its URL
    or the channel's own signing secret.
    """
    own = [v for k, v in message.config.items()
           if isinstance(v, str) and ("secret" in k or "token" in k)]
    detail = redact(result.detail, own)
    return result if detail == result.detail else dataclasses.replace(result, detail=detail)


def _learn(session: Session, channel_id: uuid.UUID, prepared: Prepared,
           result: SendResult, now: datetime) -> None:
    """What a provider's answer says about the channel: its new address, or that it is gone."""
    if result.channel_update:
        _update_config(session, channel_id, prepared.message.config, result.channel_update)
    if result.remove_channel:
        session.execute(delete(Channel).where(Channel.id == channel_id))
        log.info("channel %s removed: %s", channel_id, result.detail[:200])
        return
    if result.disable_channel:
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(enabled=False, disabled_reason=result.detail[:500], updated_at=now)
        )


def _update_config(
    session: Session, channel_id: uuid.UUID, sent_with: dict[str, Any], changes: dict[str, Any]
) -> None:
    """Merge what the provider taught us into the channel's config, key by key, only where the
    value is still the one this message was sent with (a chat re-linked meanwhile wins)."""
    channel = session.get(Channel, channel_id, with_for_update=True)
    if channel is None:
        return
    config = dict(channel.config)
    fresh = {k: v for k, v in changes.items() if config.get(k) == sent_with.get(k)}
    if fresh and any(config.get(k) != v for k, v in fresh.items()):
        channel.config = {**config, **fresh}
        channel.updated_at = utcnow()
        log.info("channel %s config updated by its provider: %s", channel_id, sorted(fresh))

