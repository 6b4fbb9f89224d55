"""Self-serve billing, through the real app, the real ``stripe`` SDK pointed at the Stripe
stand-in (``standins/stripe.py``), a real SMTP server, on SQLite and PostgreSQL.

Attacked first: forged, tampered, stale and replayed webhooks, another user's Checkout Session,
five concurrent deliveries of one event; then the orders Stripe's events really arrive in, the
grace and the end of a period on a clock the test moves, a webhook missed and repaired by
``billing-sync``, and Stripe unreachable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cloud_kit import Account, Mailbox, free_port, parse_mail, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from standins.stripe import KEY, PRICE, WEBHOOK_SECRET, StripeStandIn, sign
from web_kit import browser_of, sign_in

from claude_notify.cloud.server.billing import service
from claude_notify.cloud.server.billing.models import BillingAccount, BillingChange, BillingEvent
from claude_notify.cloud.server.billing.state import Subscription
from claude_notify.cloud.server.db.models import Delivery, Workspace
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

HOOK = "/v1/stripe/webhook"


@pytest.fixture
def stripe_api() -> Iterator[StripeStandIn]:
    with StripeStandIn() as standin:
        yield standin  # type: ignore[misc]


@pytest.fixture
def settings(settings: Settings, stripe_api: StripeStandIn) -> Settings:
    return settings.replace(stripe_secret_key=KEY, stripe_webhook_secret=WEBHOOK_SECRET,
                            stripe_price_id=PRICE, stripe_api_base=stripe_api.base_url,
                            provider_timeout_s=5.0).validate()


def _post_event(client: TestClient, event: dict[str, Any], **signing: Any) -> httpx.Response:
    """Deliver ``event`` as Stripe does; once answered, wait for the delivery worker to be done
    with it (handled, or its failure recorded)."""
    raw = json.dumps(event, indent=2).encode()
    answer = client.post(HOOK, content=raw, headers={
        "Content-Type": "application/json", "Stripe-Signature": sign(raw, **signing)})
    if answer.status_code == 200 and answer.json().get("handled"):
        _wait_handled(client.app.state.runtime, str(event["id"]))  # type: ignore[attr-defined]
    return answer


def _wait_handled(runtime: Runtime, event_id: str) -> None:
    def done() -> bool:
        with runtime.sessions() as db:
            row = db.get(BillingEvent, event_id)
            return row is not None and row.claimed_until is None and (
                row.processed_at is not None or row.error is not None)

    wait_for(done, timeout=30, what=f"event {event_id} handled")


def _checkout(client: TestClient, user: Account, stripe_api: StripeStandIn) -> str:
    """Start Checkout as the CLI does and press Pay on the stand-in's page; the session id."""
    made = client.post("/v1/billing/checkout", headers=user.headers)
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    assert url.startswith(stripe_api.base_url + "/checkout/cs_test_")
    session_id = url.rsplit("/", 1)[1]
    paid = httpx.post(f"{stripe_api.base_url}/checkout/{session_id}/pay")
    assert paid.status_code == 303
    assert paid.headers["location"] == (
        f"http://127.0.0.1:8000/app/billing/success?session_id={session_id}")
    return session_id


def _plan(runtime: Runtime, user: Account) -> str:
    with runtime.sessions() as db:
        return str(db.scalar(select(Workspace.plan).where(Workspace.id == user.user_id)))


def _changes(runtime: Runtime, user: Account) -> list[str]:
    with runtime.sessions() as db:
        return list(db.scalars(select(BillingChange.change).where(
            BillingChange.workspace_id == user.user_id).order_by(BillingChange.at)))


def _ledger(runtime: Runtime) -> list[BillingEvent]:
    with runtime.sessions() as db:
        return list(db.scalars(select(BillingEvent)))


def _billing_mails(runtime: Runtime, box: Mailbox, user: Account) -> list[str]:
    """The billing e-mails the SMTP server received for ``user``, once the outbox is settled."""
    def settled() -> bool:
        with runtime.sessions() as db:
            return not db.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.kind == "billing", Delivery.status.in_(("pending", "sending"))))

    wait_for(settled, timeout=30, what="billing mails sent")
    subjects = [str(parse_mail(m)["Subject"]) for m in box.messages if user.email in m.rcpt_tos]
    return [s for s in subjects if s != "Sign in to claude-notify"]


def _sub_of(stripe_api: StripeStandIn, session_id: str) -> str:
    return str(stripe_api.sessions[session_id]["subscription"])


# -- the webhook's door ----------------------------------------------------------------------


def test_the_signature_is_stripes_and_the_reference_vector_is_too_old_to_replay() -> None:
    """The stand-in signs as Stripe documents (the published vector), and the server's check,
    the SDK's own, accepts it only within five minutes."""
    from claude_notify.cloud.server.billing.errors import BadSignature
    from claude_notify.cloud.server.billing.gateway import verify

    body = b'{"id":"evt_test_webhook","object":"event"}'
    header = sign(body, "whsec_test_secret", 1700000000)
    assert header == ("t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b"
                      "2a5b71b990")
    with pytest.raises(BadSignature, match="tolerance"):
        verify(body, header, "whsec_test_secret")
    fresh = sign(body, "whsec_test_secret")
    verify(body, fresh, "whsec_test_secret")
    verify(body, "v1=deadbeef," + fresh, "whsec_test_secret")  # any v1 may match (rotation)


def test_forged_tampered_stale_and_unsigned_webhooks_are_refused_and_leave_no_row(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    user = make_user()
    session_id = _checkout(client, user, stripe_api)
    event = stripe_api.events[-1]
    raw = json.dumps(event, indent=2).encode()
    good = sign(raw)
    t, mac = good.split(",")
    tampered = raw.replace(b'"paid"', b'"paix"', 1)
    assert tampered != raw
    attempts = {
        "tampered body": (tampered, good),
        "wrong secret": (raw, sign(raw, "whsec_not_the_endpoints")),
        "301 s old": (raw, sign(raw, timestamp=int(time.time()) - 301)),
        "no header": (raw, None),
        "re-serialised JSON": (json.dumps(event).encode(), good),
        "timestamp moved": (raw, f"t={int(t[2:]) + 1},{mac}"),
        "not hex": (raw, f"{t},v1=zz"),
    }
    for what, (body, header) in attempts.items():
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Stripe-Signature"] = header
        answer = client.post(HOOK, content=body, headers=headers)
        assert answer.status_code == 400, what
        assert answer.json()["error"]["code"] == "bad_signature", what
    assert _ledger(runtime) == []
    assert _plan(runtime, user) == "free"
    # Odd whitespace that verifies is Stripe's body as sent: accepted, and handled.
    odd = json.dumps(event, indent=7).encode() + b"\n\n"
    answer = client.post(HOOK, content=odd, headers={"Stripe-Signature": sign(odd)})
    assert answer.status_code == 200, answer.text
    _wait_handled(runtime, event["id"])
    assert [e.event_id for e in _ledger(runtime)] == [event["id"]]
    assert _plan(runtime, user) == "pro"
    assert session_id in json.dumps(event)


def test_a_replayed_event_does_nothing_twice(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    user = make_user()
    _checkout(client, user, stripe_api)
    for event in stripe_api.events * 3:
        assert _post_event(client, event).status_code == 200
    assert len(_ledger(runtime)) == 3
    assert all(e.processed_at is not None and e.error is None for e in _ledger(runtime))
    assert _changes(runtime, user) == ["pro"]
    assert _billing_mails(runtime, smtp_server, user) == ["Welcome to claude-notify Pro"]


def test_five_concurrent_deliveries_of_one_event_make_one_row_and_one_mail(
    live_server: str, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    user = make_user()
    with httpx.Client(base_url=live_server) as http:
        made = http.post("/v1/billing/checkout", headers=user.headers)
    session_id = made.json()["url"].rsplit("/", 1)[1]
    httpx.post(f"{stripe_api.base_url}/checkout/{session_id}/pay")
    paid = next(e for e in stripe_api.events if e["type"] == "invoice.paid")
    statuses = stripe_api.deliver(paid, times=5, url=live_server + HOOK)
    assert statuses == [200] * 5
    wait_for(lambda: all(e.processed_at for e in _ledger(runtime)), timeout=30,
             what="the event handled")
    assert len(_ledger(runtime)) == 1
    assert _billing_mails(runtime, smtp_server, user) == ["Welcome to claude-notify Pro"]
    assert _changes(runtime, user) == ["pro"]


# -- orders Stripe's events arrive in ---------------------------------------------------------


def test_an_update_before_its_create_still_ends_on_the_right_plan(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    """``created`` carries ``incomplete`` and ``updated`` carries ``active``; delivered the
    other way round, a handler that applied payloads would end on ``incomplete``."""
    user = make_user()
    assert client.post("/v1/billing/checkout", headers=user.headers).status_code == 200
    customer = next(iter(stripe_api.customers))
    sub = stripe_api.subscribe(customer, status="incomplete")
    created = stripe_api.event("customer.subscription.created", sub)
    updated = stripe_api.update(sub["id"], status="active")
    assert _post_event(client, updated).status_code == 200
    assert _post_event(client, created).status_code == 200
    assert _plan(runtime, user) == "pro"
    with runtime.sessions() as db:
        account = db.get(BillingAccount, user.user_id)
        assert account is not None and account.status == "active"


def test_an_older_re_read_answering_last_never_overwrites_a_newer_one(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    """Two re-reads of one customer race and the older one answers last: neither a change
    (audited, mailed) nor a quiet update (a renewal's new period end) of the older answer
    replaces what the newer one stored."""
    user = make_user()
    assert client.post("/v1/billing/checkout", headers=user.headers).status_code == 200
    customer = next(iter(stripe_api.customers))
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def active(days: int) -> list[Subscription]:
        return [Subscription("sub_race", "active", 1, now + timedelta(days=days), False)]

    def settle(number: int, subs: list[Subscription]) -> list[str]:
        with runtime.sessions.begin() as db:
            return service._settle(db, runtime.settings, customer, number, subs, cause="t")

    with runtime.sessions.begin() as db:
        older, newer, newest = (service._number(db.connection(), customer) for _ in range(3))
    assert older is not None and newer is not None and newest is not None
    assert settle(newer, active(30)) == ["pro"]
    assert settle(older, active(10)) == []  # would be a quiet update
    assert settle(older, []) == []  # would be a change to free
    with runtime.sessions() as db:
        account = db.get(BillingAccount, user.user_id)
        assert account is not None and account.current_period_end == now + timedelta(days=30)
    assert settle(newest, active(60)) == []  # the renewal: stored, nothing to tell anyone
    with runtime.sessions() as db:
        account = db.get(BillingAccount, user.user_id)
        assert account is not None and account.applied == newest
        assert account.current_period_end == now + timedelta(days=60)
    assert (_plan(runtime, user), _changes(runtime, user)) == ("pro", ["pro"])


def test_invoice_paid_before_checkout_completed_finds_the_right_account(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    bystander, user = make_user(), make_user()
    assert client.post("/v1/billing/checkout", headers=bystander.headers).status_code == 200
    _checkout(client, user, stripe_api)
    by_type = {e["type"]: e for e in stripe_api.events}
    for kind in ("invoice.paid", "checkout.session.completed", "customer.subscription.created"):
        assert _post_event(client, by_type[kind]).status_code == 200
    assert (_plan(runtime, user), _plan(runtime, bystander)) == ("pro", "free")
    assert _changes(runtime, user) == ["pro"]
    assert _billing_mails(runtime, smtp_server, user) == ["Welcome to claude-notify Pro"]
    assert _billing_mails(runtime, smtp_server, bystander) == []


def test_an_event_for_a_customer_that_is_not_ours_is_acknowledged_and_changes_nothing(
    client: TestClient, runtime: Runtime, stripe_api: StripeStandIn,
) -> None:
    stranger = stripe_api.subscribe("cus_someone_elses")
    assert _post_event(client, stripe_api.event("customer.subscription.created",
                                                stranger)).status_code == 200
    (row,) = _ledger(runtime)
    assert row.processed_at is not None and "not one of this server's" in str(row.error)
    other = client.post(HOOK, content=b"{}", headers={"Stripe-Signature": sign(b"{}")})
    assert other.status_code == 400  # verified, but not an event


# -- the account's own session, and no one else's ------------------------------------------------


def test_checkout_return_shows_pro_before_any_webhook_and_the_webhook_changes_nothing(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    user = make_user()
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    session_id = _checkout(client, user, stripe_api)
    page = b.get(f"/app/billing/success?session_id={session_id}")
    assert page.status_code == 200, page.text
    assert '<dd id="plan">Pro</dd>' in page.text and "Paid; renews on" in page.text
    assert _plan(runtime, user) == "pro"
    assert client.get("/v1/usage", headers=user.headers).json()["plan"] == "pro"
    for event in stripe_api.events:
        assert _post_event(client, event).status_code == 200
    assert _changes(runtime, user) == ["pro"]
    assert _billing_mails(runtime, smtp_server, user) == ["Welcome to claude-notify Pro"]
    again = b.get(f"/app/billing/success?session_id={session_id}")  # reloaded: still once
    assert again.status_code == 200 and _changes(runtime, user) == ["pro"]


def test_user_b_can_never_claim_user_as_checkout_session(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    a, b_user = make_user(), make_user()
    session_id = _checkout(client, a, stripe_api)
    b = browser_of(client)
    sign_in(b, smtp_server, b_user.email)
    assert b.get(f"/app/billing/success?session_id={session_id}").status_code == 404
    # B with a customer of its own (an abandoned Checkout) fares no better.
    assert client.post("/v1/billing/checkout", headers=b_user.headers).status_code == 200
    assert b.get(f"/app/billing/success?session_id={session_id}").status_code == 404
    assert b.get("/app/billing/success?session_id=cs_test_nosuch").status_code == 404
    assert b.get("/app/billing/success?session_id=../v1/customers").status_code == 404
    assert (_plan(runtime, a), _plan(runtime, b_user)) == ("free", "free")
    for event in stripe_api.events:  # A's payment, as Stripe reports it
        assert _post_event(client, event).status_code == 200
    assert (_plan(runtime, a), _plan(runtime, b_user)) == ("pro", "free")


def test_one_customer_per_account_however_many_checkouts_start_at_once(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    user = make_user()
    answers: list[int] = []

    def start() -> None:
        answers.append(client.post("/v1/billing/checkout", headers=user.headers).status_code)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers == [200] * 4
    assert client.post("/v1/billing/checkout", headers=user.headers).status_code == 200
    assert len(stripe_api.customers) == 1
    with runtime.sessions() as db:
        assert db.scalar(select(BillingAccount.customer_id)) == next(iter(stripe_api.customers))
    customer = next(iter(stripe_api.customers.values()))
    assert customer["metadata"] == {"user_id": str(user.user_id)}
    assert all(s["customer"] == customer["id"] and s["client_reference_id"] == str(user.user_id)
               for s in stripe_api.sessions.values())


def test_a_pro_account_is_sent_to_manage_not_to_pay_twice(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    user = make_user()
    assert client.post("/v1/billing/portal", headers=user.headers).status_code == 409
    _checkout(client, user, stripe_api)
    for event in stripe_api.events:
        _post_event(client, event)
    again = client.post("/v1/billing/checkout", headers=user.headers)
    assert again.status_code == 409 and "Pro already" in again.json()["error"]["message"]
    portal = client.post("/v1/billing/portal", headers=user.headers)
    assert portal.status_code == 200 and portal.json()["url"].startswith(
        stripe_api.base_url + "/portal/bps_test_")
    assert client.post("/v1/billing/checkout").status_code == 401


# -- time: grace, and the end of a paid period ---------------------------------------------------


def _pro_by_checkout(client: TestClient, user: Account, stripe_api: StripeStandIn) -> str:
    session_id = _checkout(client, user, stripe_api)
    for event in stripe_api.events:
        assert _post_event(client, event).status_code == 200
    return _sub_of(stripe_api, session_id)


def test_a_failed_payment_keeps_pro_for_the_grace_then_free(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    user = make_user()
    page = browser_of(client)
    sign_in(page, smtp_server, user.email)  # first: the helper reads the newest mail
    sub = _pro_by_checkout(client, user, stripe_api)
    failed_at = datetime.now(timezone.utc)
    stripe_api.update(sub, status="past_due")
    invoice = stripe_api.invoice(stripe_api.subscriptions[sub], paid=False)
    for event in (stripe_api.events[-1], stripe_api.event("invoice.payment_failed", invoice)):
        assert _post_event(client, event).status_code == 200
    assert _plan(runtime, user) == "pro"
    with runtime.sessions() as db:
        grace = db.scalar(select(BillingAccount.grace_until))
    assert grace is not None and abs(grace - failed_at - timedelta(days=7)) < timedelta(
        minutes=1)
    assert "Payment failed: update your card. Pro until" in page.get("/app/billing").text
    assert _billing_mails(runtime, smtp_server, user)[-1].startswith("claude-notify: payment")
    # Stripe retries and fails again: the grace is not extended, and no second mail.
    again = stripe_api.event("invoice.payment_failed", invoice)
    assert _post_event(client, again).status_code == 200
    assert service.lapse(runtime.sessions, runtime.settings, now=grace - timedelta(hours=1)) == 0
    assert _plan(runtime, user) == "pro"
    assert service.lapse(runtime.sessions, runtime.settings, now=grace + timedelta(hours=1)) == 1
    assert _plan(runtime, user) == "free"
    usage = client.get("/v1/usage", headers=user.headers).json()  # the very next request
    assert (usage["plan"], usage["channels_allowed"]) == ("free", ["email"])
    assert _changes(runtime, user) == ["pro", "payment_failed", "free"]
    assert _billing_mails(runtime, smtp_server, user) == [
        "Welcome to claude-notify Pro", "claude-notify: payment failed, update your card",
        "Your claude-notify Pro plan has ended"]
    # The card is updated: Stripe collects, the subscription is active again, so is Pro.
    stripe_api.update(sub, status="active")
    assert _post_event(client, stripe_api.events[-1]).status_code == 200
    assert _plan(runtime, user) == "pro"
    assert sorted(_changes(runtime, user)) == sorted(  # "free" is dated by the moved clock
        ["pro", "payment_failed", "free", "pro", "payment_recovered"])


def test_cancel_in_the_portal_keeps_pro_to_the_periods_end_then_free(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, smtp_server: Mailbox,
) -> None:
    user = make_user()
    page = browser_of(client)
    sign_in(page, smtp_server, user.email)  # first: the helper reads the newest mail
    sub = _pro_by_checkout(client, user, stripe_api)
    portal = client.post("/v1/billing/portal", headers=user.headers).json()["url"]
    portal_id = portal.rsplit("/", 1)[1]
    assert httpx.post(f"{stripe_api.base_url}/portal/{portal_id}/cancel").status_code == 303
    assert stripe_api.subscriptions[sub]["cancel_at_period_end"] is True
    assert _post_event(client, stripe_api.events[-1]).status_code == 200
    assert _plan(runtime, user) == "pro"
    end = datetime.fromtimestamp(
        stripe_api.subscriptions[sub]["items"]["data"][0]["current_period_end"], timezone.utc)
    assert f"Canceled: Pro ends on {end:%Y-%m-%d %H:%M:%S} UTC" in page.get("/app/billing").text
    assert _billing_mails(runtime, smtp_server, user)[-1].startswith("Your claude-notify Pro "
                                                                     "plan ends on")
    assert service.lapse(runtime.sessions, runtime.settings, now=end - timedelta(minutes=1)) == 0
    assert service.lapse(runtime.sessions, runtime.settings, now=end + timedelta(minutes=1)) == 1
    assert _plan(runtime, user) == "free"
    # Stripe's own word at the period's end changes nothing more, and mails nothing more.
    stripe_api.update(sub, status="canceled", ended_at=int(end.timestamp()))
    stripe_api.subscriptions[sub]["items"]["data"][0]["current_period_end"] = int(
        time.time()) - 1
    assert _post_event(client, stripe_api.events[-1]).status_code == 200
    assert _changes(runtime, user) == ["pro", "cancel_scheduled", "free"]
    assert _billing_mails(runtime, smtp_server, user) == [
        "Welcome to claude-notify Pro", f"Your claude-notify Pro plan ends on {end:%Y-%m-%d}",
        "Your claude-notify Pro plan has ended"]


# -- a missed webhook, and Stripe away -------------------------------------------------------------


def test_billing_sync_repairs_a_missed_webhook(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    from claude_notify.cloud.server.cli import server

    user, unpaid = make_user(), make_user()
    sub = _pro_by_checkout(client, user, stripe_api)
    session_id = _checkout(client, unpaid, stripe_api)  # paid, but every webhook was lost
    stripe_api.update(sub, status="canceled", ended_at=int(time.time()))
    stripe_api.subscriptions[sub]["items"]["data"][0]["current_period_end"] = int(
        time.time()) - 60  # canceled at once, refunded: nothing left of the period
    assert (_plan(runtime, user), _plan(runtime, unpaid)) == ("pro", "free")
    s = runtime.settings
    for name in ("database_url", "stripe_secret_key", "stripe_webhook_secret", "stripe_price_id",
                 "stripe_api_base", "smtp_host"):
        monkeypatch.setenv("CLAUDE_NOTIFY_SERVER_" + name.upper(), str(getattr(s, name)))
    monkeypatch.setenv("DATABASE_URL", s.database_url)
    monkeypatch.setenv("CLAUDE_NOTIFY_SERVER_LOG_KEYS", ",".join(s.log_keys))
    result = CliRunner().invoke(server, ["billing-sync"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (_plan(runtime, user), _plan(runtime, unpaid)) == ("free", "pro")
    assert "2 account(s) changed" in result.output
    assert session_id


def test_stripe_unreachable_is_a_clear_error_and_nothing_is_half_written(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    settings: Settings, stripe_api: StripeStandIn,
) -> None:
    user = make_user()
    away = settings.replace(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    with TestClient(_app(runtime, away)) as down:
        answer = down.post("/v1/billing/checkout", headers=user.headers)
        assert answer.status_code == 503
        message = answer.json()["error"]["message"]
        assert "Stripe did not answer" in message and "nothing was charged" in message
        assert KEY not in answer.text
    with runtime.sessions() as db:
        assert db.scalar(select(func.count()).select_from(BillingAccount)) == 0
    # An event that arrives while Stripe cannot be read back is kept, with its error (and not
    # looked at again by the worker, which would hammer an outage), and handled by the sweep
    # once Stripe answers again.
    _checkout(client, user, stripe_api)
    stripe_api.answer((500, {"error": {"type": "api_error", "message": "An error occurred."}},
                       {"Stripe-Should-Retry": "false"}))
    assert _post_event(client, stripe_api.events[0]).status_code == 200
    (row,) = _ledger(runtime)
    assert row.processed_at is None and "Stripe answered 500" in str(row.error)
    assert service.due(runtime.sessions) == []
    assert _plan(runtime, user) == "free"
    later = datetime.now(timezone.utc) + timedelta(minutes=2)
    assert service.unprocessed(runtime.sessions, now=later) == [row.event_id]
    assert service.process(runtime.sessions, runtime.settings, row.event_id)
    assert _plan(runtime, user) == "pro"


def test_stripes_retry_of_a_failed_event_is_handled_by_the_worker(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn,
) -> None:
    """A re-read that failed is left to Stripe's retry: the same event delivered again is
    handled at once, not an hour later by the sweep."""
    user = make_user()
    _checkout(client, user, stripe_api)
    stripe_api.answer((503, {"error": {"type": "api_error", "message": "Try again."}},
                       {"Stripe-Should-Retry": "false"}))
    event = stripe_api.events[0]
    assert _post_event(client, event).json() == {"received": True, "handled": True}
    (row,) = _ledger(runtime)
    assert row.error and row.attempts == 1 and _plan(runtime, user) == "free"
    assert _post_event(client, event).json() == {"received": True, "handled": True}
    (row,) = _ledger(runtime)
    assert row.processed_at is not None and row.error is None and row.attempts == 2
    assert _plan(runtime, user) == "pro"
    assert _post_event(client, event).json() == {"received": True, "handled": False}


def test_an_api_without_a_worker_only_records_and_a_worker_handles(
    runtime: Runtime, make_user: Callable[..., Account], stripe_api: StripeStandIn,
) -> None:
    """The deployed shape: the replica that answers Stripe runs no worker (its CPU is the
    answers'); the events wait in the ledger until a worker, woken or polling, re-reads."""
    from claude_notify.cloud.server.app import create_app

    user = make_user()
    with TestClient(_app(runtime, runtime.settings)) as replica:  # no worker anywhere yet
        _checkout(replica, user, stripe_api)
        for event in stripe_api.events:
            raw = json.dumps(event).encode()
            answer = replica.post(HOOK, content=raw, headers={
                "Content-Type": "application/json", "Stripe-Signature": sign(raw)})
            assert answer.json() == {"received": True, "handled": True}
        waiting = service.due(runtime.sessions)
        assert sorted(waiting) == sorted(e["id"] for e in stripe_api.events)
        assert _plan(runtime, user) == "free"
    with TestClient(create_app(runtime=runtime)):  # a worker comes up
        for event_id in waiting:
            _wait_handled(runtime, event_id)
    assert _plan(runtime, user) == "pro" and service.due(runtime.sessions) == []


def _app(runtime: Runtime, settings: Settings) -> Any:
    """The app over the same database with other settings (the worker off: the fixture's own
    app delivers)."""
    from claude_notify.cloud.server.app import create_app

    other = Runtime(settings=settings.replace(embedded_worker=False), engine=runtime.engine,
                    sessions=runtime.sessions, waker=runtime.waker)
    return create_app(runtime=other)


# -- billing off ---------------------------------------------------------------------------------


def test_without_stripe_settings_billing_is_off_and_the_sdk_never_loads(
    tmp_path: Any, make_user: Callable[..., Account],
) -> None:
    import subprocess
    import sys

    code = f"""
import sys
from fastapi.testclient import TestClient
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.settings import Settings
app = create_app(Settings(database_url="sqlite:///{tmp_path}/x.db"))
with TestClient(app) as c:
    assert c.post("/v1/stripe/webhook", content=b"{{}}").status_code == 404
    assert c.post("/v1/billing/checkout").status_code == 401
assert "stripe" not in sys.modules, "stripe was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_billing_off_answers_404_to_an_account(client: TestClient, runtime: Runtime,
                                               make_user: Callable[..., Account]) -> None:
    user = make_user()
    off = runtime.settings.replace(stripe_secret_key=None)
    with TestClient(_app(runtime, off)) as c:
        answer = c.post("/v1/billing/checkout", headers=user.headers)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "billing_off"


def test_settings_name_what_billing_is_missing() -> None:
    from claude_notify.errors import ConfigError

    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        Settings(stripe_secret_key=KEY, stripe_price_id=PRICE).validate()
    with pytest.raises(ConfigError, match="STRIPE_PRICE_ID"):
        Settings(stripe_secret_key=KEY, stripe_webhook_secret=WEBHOOK_SECRET).validate()
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY") as bad:
        Settings(stripe_secret_key="pk_live_oops",  # noqa: S106 - a publishable key
                 stripe_webhook_secret=WEBHOOK_SECRET,
                 stripe_price_id=PRICE).validate()
    assert "pk_live_oops" not in str(bad.value)
    env = {"CLAUDE_NOTIFY_SERVER_BILLING_GRACE_DAYS": "3.5"}
    assert Settings.from_env(env).billing_grace_days == 3.5


def test_the_secret_key_never_reaches_the_logs(runtime: Runtime) -> None:
    from claude_notify.cloud.server.redact import redact

    assert KEY not in redact(f"POST /v1/customers Authorization: Bearer {KEY} failed")
    assert WEBHOOK_SECRET not in redact(f"secret={WEBHOOK_SECRET}")




# -- the terminal ---------------------------------------------------------------------------------


def test_upgrade_and_billing_open_stripe_from_the_terminal(
    live_server: str, runtime: Runtime, make_user: Callable[..., Account],
    stripe_api: StripeStandIn, tmp_path: Any,
) -> None:
    """``claude-notify upgrade`` opens Checkout in the browser (here a recorder on $BROWSER)
    and prints the address either way; ``billing`` opens the portal; a pro account is told to
    manage rather than pay twice, in one line."""
    import os
    import stat
    import subprocess
    import sys

    user = make_user()
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_NOTIFY", "DISPLAY"))}
    env.update({"CLAUDE_NOTIFY_STATE_DIR": str(tmp_path / "state"),
                "CLAUDE_NOTIFY_CONFIG": str(tmp_path / "config.toml"),
                "XDG_DATA_HOME": str(tmp_path / "xdg"), "BROWSER": str(browser),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"})

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "claude_notify", *args], env=env,
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False)

    assert cli("login", "--server", live_server, "--token", stdin=user.token).returncode == 0
    up = cli("upgrade")
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().rsplit(" ", 1)[1]
    assert up.stdout == f"opened the payment page in your browser: {url}\n"
    assert url.startswith(stripe_api.base_url + "/checkout/cs_test_")
    assert opened.read_text() == url + "\n"
    printed = cli("upgrade", "--no-browser")
    assert printed.stdout.startswith("open the payment page in a browser: " + stripe_api.base_url)
    assert opened.read_text() == url + "\n"  # not opened again
    assert httpx.post(f"{url}/pay").status_code == 303
    for event in stripe_api.events:
        stripe_api.deliver(event, url=live_server + HOOK)
    wait_for(lambda: _plan(runtime, user) == "pro", timeout=30, what="the plan to change")
    again = cli("upgrade")
    assert again.returncode != 0 and again.stderr.count("\n") == 1
    assert "on Pro already" in again.stderr and "claude-notify billing" in again.stderr
    manage = cli("billing", "--no-browser")
    assert manage.returncode == 0, manage.stderr
    assert manage.stdout.startswith("open the billing portal in a browser: "
                                    f"{stripe_api.base_url}/portal/bps_test_")
