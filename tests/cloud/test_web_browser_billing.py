"""Upgrading and managing the plan in a real browser: Playwright driving Debian's Chromium
against the real server (a subprocess) and the Stripe stand-in's Checkout and Portal pages,
JavaScript on and off.

Upgrade hands the browser to Stripe's page (across origins: the app's ``form-action 'self'``
must not stop it), "Pay" brings it back to a page that already says Pro, before any webhook;
the webhooks delivered afterwards change nothing and mail the welcome once. Manage opens the
Portal, where cancelling brings the browser back to a page that says when Pro ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Mailbox, mail_text, parse_mail, wait_for
from relay_kit import Server, email
from standins.stripe import KEY, PRICE, WEBHOOK_SECRET, StripeStandIn

from claude_notify.cloud.server.billing.models import BillingEvent


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[StripeStandIn]:
    with StripeStandIn() as standin:
        yield standin  # type: ignore[misc]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
           module_smtp: Mailbox, stripe_api: StripeStandIn) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("web-billing-db") / "server.db"
    shutil.copy(sqlite_template, path)
    made = Server.make(f"sqlite:///{path}", module_smtp,
                       CLAUDE_NOTIFY_SERVER_STRIPE_SECRET_KEY=KEY,
                       CLAUDE_NOTIFY_SERVER_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                       CLAUDE_NOTIFY_SERVER_STRIPE_PRICE_ID=PRICE,
                       CLAUDE_NOTIFY_SERVER_STRIPE_API_BASE=stripe_api.base_url)
    made.start()
    stripe_api.webhook_url = f"{made.url}/v1/stripe/webhook"
    yield made
    made.stop()


def _signed_in(browser: Any, server: Server, box: Mailbox, address: str,
               javascript: bool) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    seen = sum(address in m.rcpt_tos for m in box.messages)
    page.goto(f"{server.url}/app/signin")
    page.fill("#email", address)
    page.click("text=E-mail me a link")
    page.wait_for_selector("text=Check your mail")
    mails = wait_for(lambda: (m := [mail_text(e) for e in box.messages
                                    if address in e.rcpt_tos])[seen:] and m,
                     timeout=30, what="the sign-in mail")
    page.goto(next(w for w in mails[-1].split() if "/app/signin/confirm?token=" in w))
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/app/tasks")
    return context, page, violations


def _ledger_done(server: Server, n: int) -> bool:
    from sqlalchemy import create_engine, func, select

    engine = create_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(BillingEvent.__table__).where(
                BillingEvent.processed_at.is_not(None))).scalar_one() >= n
    finally:
        engine.dispose()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_upgrade_pay_and_see_pro_before_the_webhook_then_cancel_in_the_portal(
    browser: Any, server: Server, stripe_api: StripeStandIn, module_smtp: Mailbox,
    javascript: bool,
) -> None:
    address = email("billing")
    server.admin("create-user", address)
    context, page, violations = _signed_in(browser, server, module_smtp, address, javascript)
    page.click("nav >> text=Billing")
    assert page.inner_text("#plan") == "Free"
    assert page.inner_text("#payment") == "No subscription"
    delivered_before = len(stripe_api.events)

    page.click("#upgrade")
    page.wait_for_url(f"{stripe_api.base_url}/checkout/cs_test_*")
    page.wait_for_selector("text=Subscribe to Pro")
    page.click("button:has-text('Pay')")
    page.wait_for_url(f"{server.url}/app/billing/success?session_id=cs_test_*")
    page.wait_for_selector("text=Thank you: the payment went through.")
    assert page.inner_text("#plan") == "Pro"  # before any webhook: none was delivered
    assert page.inner_text("#payment").startswith("Paid; renews on")

    events = stripe_api.events[delivered_before:]
    assert [e["type"] for e in events] == ["customer.subscription.created", "invoice.paid",
                                           "checkout.session.completed"]
    for event in reversed(events):  # late, and in the worst order
        assert stripe_api.deliver(event) == [200]
    page.reload()
    assert page.inner_text("#plan") == "Pro"

    page.click("#manage")
    page.wait_for_url(f"{stripe_api.base_url}/portal/bps_test_*")
    page.click("button:has-text('Cancel plan')")
    page.wait_for_url(f"{server.url}/app/billing")
    assert stripe_api.deliver(stripe_api.events[-1]) == [200]
    wait_for(lambda: _ledger_done(server, len(stripe_api.events)), timeout=30,
             what="the events handled")
    page.reload()
    assert page.inner_text("#plan") == "Pro"
    assert page.inner_text("#payment").startswith("Canceled: Pro ends on")
    subjects = wait_for(lambda: (s := [str(parse_mail(m)["Subject"]) for m in module_smtp.messages
                                       if address in m.rcpt_tos and "Sign in" not in
                                       str(parse_mail(m)["Subject"])]) and len(s) >= 2 and s,
                        timeout=30, what="the billing mails")
    assert subjects[0] == "Welcome to claude-notify Pro"
    assert subjects[1].startswith("Your claude-notify Pro plan ends on")
    assert len(subjects) == 2
    assert violations == []
    context.close()
