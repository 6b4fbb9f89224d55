"""Billing's work: starting Checkout and the Portal, the webhook ledger, re-reading a customer
from Stripe and applying the plan it derives, and the clock that ends lapsed plans.

Every path that learns something from Stripe (a webhook, the Checkout return page,
``billing-sync``) ends in :func:`sync_customer`, which re-reads the customer's subscriptions and
applies :func:`.state.derive`; the Stripe call is made outside any transaction. Each re-read takes
a number first (``requested``) and applies only if no later-numbered one was applied already, so
two re-reads racing cannot leave the older answer in place. A plan change, its audit row
(``billing_changes``) and its e-mail are written in one transaction with the re-read's result, so
each change is applied, audited and mailed exactly once, however often Stripe repeats itself.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Connection, Table, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server import outbox
from claude_notify.cloud.server.billing.errors import (
    AlreadyPro,
    BillingOff,
    NoCustomer,
    StripeProblem,
    StripeRefused,
)
from claude_notify.cloud.server.billing.models import BillingAccount, BillingChange, BillingEvent
from claude_notify.cloud.server.billing.state import Entitlement, Subscription, derive
from claude_notify.cloud.server.channels.render import render_simple
from claude_notify.cloud.server.db.models import Role, User, Workspace, WorkspaceMember
from claude_notify.cloud.server.db.ops import insert_ignore
from claude_notify.cloud.server.redact import redact
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

if TYPE_CHECKING:
    from claude_notify.cloud.server.billing.gateway import Gateway

log = logging.getLogger("claude_notify.server.billing")

HANDLED: Final = frozenset({
    "checkout.session.completed", "customer.subscription.created",
    "customer.subscription.updated", "customer.subscription.deleted", "invoice.paid",
    "invoice.payment_failed"})
"""The events the operator enables on the endpoint; each only says "re-read this customer"."""
CLAIM: Final = timedelta(seconds=60)
"""How long one handler owns an event: a duplicate delivery meanwhile does nothing."""
QUIET_S: Final = 0.05
MAX_DELAY_S: Final = 2.0
"""A worker sharing the API's process waits for a pause this long in its wake-ups and in
webhook deliveries (:data:`ARRIVALS`) before each step of an event's handling, but keeps one
event waiting no longer than this in all (see :func:`process`'s ``pause`` and the worker's
``_billing``): Stripe's timeout counts the webhook's answers, not the handling. Per event, not
per batch: a batch of 50 outlasts the pause between bursts, and a batch-wide limit let the rest
of it run straight through the next burst (one-process p99 172-188 ms against 58-93 ms back to
back)."""
PAID: Final = ("active", "trialing")
_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")

Sessions = sessionmaker[Session]


class Arrivals:
    """Webhook deliveries in this process, for a handler sharing it (the embedded worker).

    The route marks each signed delivery as it comes in, before its ledger write (unsigned ones
    cannot hold the handling back), so the handler hears of a burst from its first delivery
    rather than from the wake-up after the first commit; and once an event is recorded it wakes
    the handlers listening here directly: the workers' general wake-up would also have the
    delivery loop look for outbox rows after every group commit of a burst, and a webhook writes
    none."""

    __slots__ = ("_listeners", "last")

    def __init__(self) -> None:
        self.last = 0.0
        """When the latest delivery arrived (monotonic seconds)."""
        self._listeners: set[Callable[[], None]] = set()

    def mark(self) -> None:
        self.last = time.monotonic()

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (thread-safe, never raising) for each recorded event; returns the
        function that stops it."""
        self._listeners.add(callback)
        return lambda: self._listeners.discard(callback)

    def recorded(self) -> bool:
        """An event to handle is in the ledger: wake the listeners; whether there were any."""
        listeners = list(self._listeners)
        for callback in listeners:
            callback()
        return bool(listeners)


ARRIVALS: Final = Arrivals()


# -- Checkout and the Portal ------------------------------------------------------------------


def _gateway(settings: Settings) -> Gateway:
    """The Stripe client, imported only now: a server without Stripe never loads the SDK."""
    if not settings.billing_enabled:
        raise BillingOff("billing is not offered by this server; its operator sets plans")
    from claude_notify.cloud.server.billing.gateway import gateway

    return gateway(settings)


def _owner(session: Session, workspace_id: uuid.UUID) -> User | None:
    """Who pays for a workspace and receives its billing mail."""
    return session.scalar(select(User).join(WorkspaceMember, WorkspaceMember.user_id == User.id)
                          .where(WorkspaceMember.workspace_id == workspace_id,
                                 WorkspaceMember.role == Role.OWNER))


def start_checkout(sessions: Sessions, settings: Settings, user_id: uuid.UUID) -> str:
    """A Checkout Session URL for the workspace ``user_id`` (its id: a person's own workspace
    has theirs) to pay for Pro. Raises :class:`AlreadyPro`, :class:`BillingOff` or a
    :class:`~.errors.StripeProblem` (then nothing was written)."""
    stripe = _gateway(settings)
    with sessions() as session:
        workspace = session.get(Workspace, user_id)
        owner = _owner(session, user_id)
        if workspace is None or owner is None:
            raise NoCustomer("no such account")
        email, plan = owner.email, workspace.plan
        account = session.get(BillingAccount, user_id)
        customer = account.customer_id if account else None
    if plan == "pro":
        raise AlreadyPro("this account is on Pro already")
    if customer is None:
        customer = _new_customer(sessions, stripe, user_id=user_id, email=email)
    public = settings.public_url.rstrip("/")
    success = settings.billing_success_url or f"{public}/app/billing/success"
    if "{CHECKOUT_SESSION_ID}" not in success:
        success += ("&" if "?" in success else "?") + "session_id={CHECKOUT_SESSION_ID}"
    made = stripe.checkout(customer=customer, user_id=user_id, success_url=success,
                           cancel_url=settings.billing_cancel_url or f"{public}/app/billing")
    return str(made["url"])


def _new_customer(sessions: Sessions, stripe: Gateway, *, user_id: uuid.UUID,
                  email: str) -> str:
    """The account's one customer: Stripe's idempotency key makes a retry, or a second request
    at the same moment, get the same customer; the row is written only once Stripe made it."""
    customer = stripe.create_customer(user_id=user_id, email=email)
    try:
        with sessions.begin() as session:
            insert_ignore(session, BillingAccount, {
                "workspace_id": user_id, "customer_id": customer, "cancel_at_period_end": False,
                "requested": 0, "applied": 0, "created_at": utcnow()}, ["workspace_id"])
    except IntegrityError:
        # A concurrent request stored the same customer first: PostgreSQL may report the race
        # on the other unique key (customer_id), which ON CONFLICT (workspace_id) does not
        # absorb.
        pass
    with sessions() as session:
        stored = session.scalar(select(BillingAccount.customer_id)
                                .where(BillingAccount.workspace_id == user_id))
    return str(stored)


def start_portal(sessions: Sessions, settings: Settings, user_id: uuid.UUID) -> str:
    """A Billing Portal URL for the account's customer (card, invoices, cancel)."""
    stripe = _gateway(settings)
    with sessions() as session:
        customer = session.scalar(select(BillingAccount.customer_id)
                                  .where(BillingAccount.workspace_id == user_id))
    if customer is None:
        raise NoCustomer("this account has no subscription to manage yet: upgrade first")
    made = stripe.portal(customer=customer,
                         return_url=f"{settings.public_url.rstrip('/')}/app/billing")
    return str(made["url"])


def confirm_checkout(sessions: Sessions, settings: Settings, user_id: uuid.UUID,
                     session_id: str) -> bool:
    """The Checkout return page: re-read the session and, if it is this account's own, its
    customer, so the user sees Pro before any webhook. ``False`` when the session is not this
    account's (another user's id in the URL is not found, and changes nothing)."""
    stripe = _gateway(settings)
    if not _SESSION_ID.fullmatch(session_id):
        return False
    with sessions() as session:
        customer = session.scalar(select(BillingAccount.customer_id)
                                  .where(BillingAccount.workspace_id == user_id))
    if customer is None:
        return False
    try:
        paid = stripe.checkout_session(session_id)
    except StripeRefused:  # Stripe's 404 for a session that does not exist
        return False
    if paid.get("client_reference_id") != str(user_id) or _id(paid.get("customer")) != customer:
        return False
    sync_customer(sessions, settings, customer, cause="checkout-return")
    return True


# -- the webhook ledger -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """What :func:`record` made of a verified event."""

    event_id: str
    handle: bool
    """Whether this delivery should run the handler (new, or a retry of a failed one)."""


def customer_of(event: dict[str, Any]) -> str | None:
    obj = (event.get("data") or {}).get("object") or {}
    return _id(obj.get("customer")) if isinstance(obj, dict) else None


def record(session: Session, event: dict[str, Any], *, now: datetime | None = None
           ) -> Received:
    """Write the event into the ledger once (the caller commits: the webhook shares a group
    commit with the deliveries arriving beside it). A repeat does nothing unless the event is
    still unhandled and unclaimed (Stripe retrying after a crash or a failed handling; should
    the first handler still be about to start, :func:`process` lets only one of them run)."""
    now = now or utcnow()
    event_id = str(event["id"])[:255]
    if insert_ignore(session, BillingEvent, {
            "event_id": event_id, "type": str(event.get("type"))[:100],
            "customer_id": (customer_of(event) or "")[:255] or None, "received_at": now,
            "attempts": 0}, ["event_id"]):
        return Received(event_id, True)
    row = session.get(BillingEvent, event_id)
    retry = row is not None and row.processed_at is None and (
        row.claimed_until is None or row.claimed_until <= now)
    if retry and row is not None:
        row.error = None  # Stripe retried a failed event: the worker's to handle again (due)
    return Received(event_id, retry)


def due(sessions: Sessions, *, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Events for the delivery worker to handle, in arrival order: new ones, ones Stripe
    retried, and ones whose handler died holding the claim. A failed re-read (``error`` set)
    waits for Stripe's own retry, the hourly sweep or ``billing-sync``, so a Stripe outage is
    not hammered."""
    now = now or utcnow()
    with sessions() as session:
        return list(session.scalars(
            select(BillingEvent.event_id)
            .where(BillingEvent.processed_at.is_(None), BillingEvent.error.is_(None),
                   or_(BillingEvent.claimed_until.is_(None), BillingEvent.claimed_until <= now))
            .order_by(BillingEvent.received_at).limit(limit)))


# The worker's statements for every event, built once and run on the session's connection:
# in a one-process server the handling shares the webhook's interpreter, and the ORM's
# statement building and unit of work were most of its database CPU.
_EVENTS = cast(Table, BillingEvent.__table__)
_ACCOUNTS = cast(Table, BillingAccount.__table__)
_WORKSPACES = cast(Table, Workspace.__table__)
_MEMBERS = cast(Table, WorkspaceMember.__table__)
_CLAIM = (update(_EVENTS)
          .where(_EVENTS.c.event_id == bindparam("p_event"), _EVENTS.c.processed_at.is_(None),
                 or_(_EVENTS.c.claimed_until.is_(None),
                     _EVENTS.c.claimed_until <= bindparam("p_now")))
          .values(claimed_until=bindparam("p_until"), attempts=_EVENTS.c.attempts + 1)
          .returning(_EVENTS.c.customer_id))
_DONE = (update(_EVENTS).where(_EVENTS.c.event_id == bindparam("p_event"))
         .values(processed_at=bindparam("p_at"), claimed_until=None, error=bindparam("p_error")))
_NUMBER = (update(_ACCOUNTS).where(_ACCOUNTS.c.customer_id == bindparam("p_customer"))
           .values(requested=_ACCOUNTS.c.requested + 1).returning(_ACCOUNTS.c.requested))
_ACCOUNT = (select(_ACCOUNTS).where(_ACCOUNTS.c.customer_id == bindparam("p_customer"))
            .with_for_update())
_PLAN = (select(_WORKSPACES.c.plan).where(_WORKSPACES.c.id == bindparam("p_workspace"))
         .with_for_update())
_OWNED = select(_MEMBERS.c.user_id).where(_MEMBERS.c.workspace_id == bindparam("p_workspace"),
                                          _MEMBERS.c.role == str(Role.OWNER))
_APPLIED = (update(_ACCOUNTS).where(_ACCOUNTS.c.workspace_id == bindparam("p_workspace"))
            .values(applied=bindparam("p_applied")))
_STORE = (update(_ACCOUNTS).where(_ACCOUNTS.c.workspace_id == bindparam("p_workspace"))
          .values(applied=bindparam("p_applied"), subscription_id=bindparam("p_subscription"),
                  status=bindparam("p_status"), current_period_end=bindparam("p_period_end"),
                  cancel_at_period_end=bindparam("p_cancel"), grace_until=bindparam("p_grace"),
                  pro_until=bindparam("p_pro_until"), synced_at=bindparam("p_synced")))


def process(sessions: Sessions, settings: Settings, event_id: str, *,
            now: datetime | None = None, pause: Callable[[], None] | None = None) -> bool:
    """Handle one ledger event: claim it, re-read its customer, apply, mark it done (two
    transactions: the claim with the re-read's number, the result with the mark). A failure is
    written on the row (``error``; ``processed_at`` stays empty) for the sweep and
    ``billing-sync`` to retry. ``False`` if it failed or another handler owns it.

    ``pause`` is called before each step (the claim, the re-read, the result): a worker in the
    API's process waits there while webhook deliveries arrive, so a burst meets at most one
    step already under way (the claim outlasts the waits; the numbers order the re-reads)."""
    stripe = _gateway(settings)
    if pause:
        pause()
    now = now or utcnow()
    with sessions.begin() as session:
        conn = session.connection()
        claimed = conn.execute(_CLAIM, {"p_event": event_id, "p_now": now,
                                        "p_until": now + CLAIM}).first()
        customer = claimed.customer_id if claimed else None
        number = _number(conn, customer) if customer else None
    if claimed is None:
        return False
    try:
        if pause and customer and number:
            pause()
        subscriptions = stripe.subscriptions(customer) if customer and number else None
    except Exception as exc:  # recorded, never lost: the row stays unprocessed
        if not isinstance(exc, StripeProblem):
            log.exception("billing event %s failed", event_id)
        with sessions.begin() as session:
            session.connection().execute(_DONE, {"p_event": event_id, "p_at": None,
                                                 "p_error": redact(str(exc))[:1000]})
        return False
    if pause:
        pause()
    with sessions.begin() as session:
        if subscriptions is not None and customer and number:
            _settle(session, settings, customer, number, subscriptions, cause=event_id)
        note = None if number else "ignored: not one of this server's customers"
        session.connection().execute(_DONE, {"p_event": event_id, "p_at": utcnow(),
                                             "p_error": note})
    return True


def unprocessed(sessions: Sessions, *, older_than: timedelta = CLAIM,
                now: datetime | None = None) -> list[str]:
    """Events received a while ago and still not handled (their handler failed or died)."""
    cutoff = (now or utcnow()) - older_than
    with sessions() as session:
        return list(session.scalars(
            select(BillingEvent.event_id)
            .where(BillingEvent.processed_at.is_(None), BillingEvent.received_at <= cutoff)
            .order_by(BillingEvent.received_at).limit(1000)))


# -- re-reading and applying ---------------------------------------------------------------------


def sync_customer(sessions: Sessions, settings: Settings, customer: str, *, cause: str,
                  now: datetime | None = None) -> list[str] | None:
    """Re-read the customer's subscriptions and apply the plan they give; the changes made
    (``pro``, ``payment_failed``, …), or ``None`` for a customer that is not ours."""
    stripe = _gateway(settings)
    with sessions.begin() as session:
        number = _number(session.connection(), customer)
    if number is None:
        return None
    subscriptions = stripe.subscriptions(customer)
    with sessions.begin() as session:
        return _settle(session, settings, customer, number, subscriptions, cause=cause,
                       now=now)


def _number(conn: Connection, customer: str) -> int | None:
    """A number for the re-read about to start; ``None`` for a customer that is not ours."""
    number = conn.execute(_NUMBER, {"p_customer": customer}).scalar()
    return None if number is None else int(number)


def _settle(session: Session, settings: Settings, customer: str, number: int,
            subscriptions: list[Subscription], *, cause: str,
            now: datetime | None = None) -> list[str]:
    """Apply a re-read numbered ``number``, unless a later one was applied already.

    Most re-reads change nothing anyone is told about (Stripe sends several events per
    change, and a renewal only moves the period's end): those are stored with one statement;
    a change to audit and mail goes through :func:`_apply`, as the clock's does."""
    conn = session.connection()
    account = conn.execute(_ACCOUNT, {"p_customer": customer}).first()
    if account is None or account.applied >= number:
        return []  # deleted meanwhile, or a later re-read was applied already
    applied = {"p_workspace": account.workspace_id, "p_applied": number}
    if not subscriptions and account.status is None:
        conn.execute(_APPLIED, applied)
        return []  # never subscribed: the plan is the operator's to set, not ours
    now = now or utcnow()
    grace = timedelta(days=settings.billing_grace_days)
    entitled = derive(subscriptions, now=now, grace=grace, grace_until=account.grace_until)
    plan = conn.execute(_PLAN, {"p_workspace": account.workspace_id}).scalar()
    if plan is None or conn.execute(_OWNED, {"p_workspace": account.workspace_id}).first() is None \
            or _changes(account.status, account.cancel_at_period_end, plan, entitled):
        conn.execute(_APPLIED, applied)
        stored = session.get(BillingAccount, account.workspace_id)
        return [] if stored is None else _apply(session, settings, stored, entitled,
                                                 cause=cause, now=now)
    sub = entitled.subscription
    conn.execute(_STORE, {
        **applied, "p_subscription": sub.id if sub else None,
        "p_status": sub.status if sub else None,
        "p_period_end": sub.current_period_end if sub else None,
        "p_cancel": bool(sub and sub.cancel_at_period_end), "p_grace": entitled.grace_until,
        "p_pro_until": entitled.pro_until, "p_synced": now})
    return []


def lapse(sessions: Sessions, settings: Settings, *, now: datetime | None = None) -> int:
    """The clock: accounts whose Pro ran out (grace over, canceled period ended) with no word
    from Stripe since drop to free; run by the worker every hour. How many changed."""
    now = now or utcnow()
    grace = timedelta(days=settings.billing_grace_days)
    changed = 0
    with sessions.begin() as session:
        due = list(session.scalars(select(BillingAccount)
                                   .where(BillingAccount.pro_until <= now).with_for_update()))
        for account in due:
            sub = _stored(account)
            entitled = derive([sub] if sub else [], now=now, grace=grace,
                              grace_until=account.grace_until)
            changed += bool(_apply(session, settings, account, entitled, cause="clock", now=now))
    return changed


def _stored(account: BillingAccount) -> Subscription | None:
    """The subscription as last read from Stripe (the clock re-derives from it)."""
    if account.subscription_id is None or account.status is None:
        return None
    return Subscription(account.subscription_id, account.status, 0,
                        account.current_period_end, account.cancel_at_period_end)


def _apply(session: Session, settings: Settings, account: BillingAccount,
           entitled: Entitlement, *, cause: str, now: datetime) -> list[str]:
    """Store what was derived; audit and mail each change (the caller's transaction)."""
    workspace = session.get(Workspace, account.workspace_id, with_for_update=True)
    user = _owner(session, account.workspace_id)
    if workspace is None or user is None:
        return []
    sub = entitled.subscription
    changes = _changes(account.status, account.cancel_at_period_end, workspace.plan, entitled)
    status = sub.status if sub else None
    account.subscription_id = sub.id if sub else None
    account.status = status
    account.current_period_end = sub.current_period_end if sub else None
    account.cancel_at_period_end = bool(sub and sub.cancel_at_period_end)
    account.grace_until = entitled.grace_until
    account.pro_until = entitled.pro_until
    account.synced_at = now
    if entitled.plan != workspace.plan:
        workspace.plan = entitled.plan
    for change in changes:
        session.add(BillingChange(workspace_id=workspace.id, at=now, change=change,
                                  plan=workspace.plan, status=status, cause=cause[:255]))
        mail = _mail(change, account, settings)
        if mail is not None:
            outbox.queue_billing(session, user_id=user.id, address=user.email, payload=mail,
                                 now=utcnow())  # sent now, whatever clock decided the change
    if changes:
        log.info("billing: workspace %s %s (%s)", workspace.id, ", ".join(changes), cause)
    return changes


def _changes(was_status: str | None, was_canceling: bool, plan: str,
             entitled: Entitlement) -> list[str]:
    """What storing ``entitled`` changes for an account whose subscription had ``was_status``
    (``was_canceling``: its cancellation scheduled) and whose plan is ``plan``: each is
    audited and mailed."""
    sub = entitled.subscription
    status = sub.status if sub else None
    was_ending = was_status in PAID and was_canceling
    ending = status in PAID and bool(sub and sub.cancel_at_period_end)
    changes: list[str] = []
    if entitled.plan != plan:
        changes.append(entitled.plan)
    if status == "past_due" and was_status != "past_due" and entitled.plan == "pro":
        changes.append("payment_failed")
    elif was_status == "past_due" and status in PAID:
        changes.append("payment_recovered")
    if ending and not was_ending:
        changes.append("cancel_scheduled")
    elif was_ending and status in PAID and not ending:
        changes.append("cancel_withdrawn")
    return changes


def _mail(change: str, account: BillingAccount, settings: Settings) -> dict[str, str] | None:
    page = f"{settings.public_url.rstrip('/')}/app/billing"
    day = _day(account.pro_until or account.current_period_end)
    if change == "pro":
        renews = f" It renews on {_day(account.current_period_end)}." if (
            account.current_period_end and not account.cancel_at_period_end) else ""
        return render_simple("Welcome to claude-notify Pro", (
            "Your account is on Pro: every channel (Telegram, Discord, Feishu, SMS, webhooks), "
            f"no daily limit, and commands from your phone.{renews}\n\nManage it at {page}"))
    if change == "payment_failed":
        return render_simple("claude-notify: payment failed, update your card", (
            f"Stripe could not charge your card for Pro. You keep Pro until {day}; update your "
            f"card in the billing portal to keep it after that.\n\n{page}"))
    if change == "cancel_scheduled":
        return render_simple(f"Your claude-notify Pro plan ends on {day}", (
            f"Your Pro plan was canceled and ends on {day}; until then nothing changes. "
            f"Changed your mind? Resume it in the billing portal.\n\n{page}"))
    if change == "free":
        return render_simple("Your claude-notify Pro plan has ended", (
            "Your account is on the free plan now: e-mail only, "
            f"{settings.free_daily_notifications} a day. Your channels, tasks and history are "
            f"kept, and upgrading again brings everything back.\n\n{page}"))
    return None


def _day(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d") if when else "the end of the period"


def _id(value: object) -> str | None:
    """A Stripe reference, given as its id or as the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def housekeep(sessions: Sessions, settings: Settings) -> dict[str, int]:
    """The worker's hourly pass: retry events whose handling failed, then end lapsed plans."""
    retried = sum(process(sessions, settings, e) for e in unprocessed(sessions))
    return {"events_retried": retried, "plans_lapsed": lapse(sessions, settings)}


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What ``server billing-sync`` did."""

    checked: int
    changed: dict[str, list[str]]
    """Per account address, the changes made."""
    failed: dict[str, str]
    """Per account address, why it could not be re-read."""


def sync_all(sessions: Sessions, settings: Settings, *, email: str | None = None) -> SyncReport:
    """Re-read every account's subscriptions (or one account's) from Stripe: what a missed
    webhook left wrong is put right. Then retry unhandled events and end lapsed plans."""
    _gateway(settings)  # BillingOff before anything else
    query = (select(BillingAccount.customer_id, User.email)
             .join(WorkspaceMember, (WorkspaceMember.workspace_id == BillingAccount.workspace_id)
                   & (WorkspaceMember.role == Role.OWNER))
             .join(User, User.id == WorkspaceMember.user_id).order_by(User.email))
    if email is not None:
        query = query.where(User.email == email.strip().lower())
    with sessions() as session:
        accounts = list(session.execute(query))
    changed: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for customer, address in accounts:
        try:
            made = sync_customer(sessions, settings, customer, cause="billing-sync")
        except StripeProblem as exc:
            failed[address] = str(exc)
            continue
        if made:
            changed[address] = made
    if email is None:
        for event_id in unprocessed(sessions, older_than=timedelta(0)):
            process(sessions, settings, event_id)
        lapse(sessions, settings)
    return SyncReport(len(accounts), changed, failed)
