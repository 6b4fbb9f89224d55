"""Stripe stand-in: the API calls billing makes, the hosted Checkout and Billing Portal pages,
and webhooks signed the way Stripe signs them.

The contract checked is Stripe's documented one (https://docs.stripe.com/api): ``Authorization:
Bearer <secret key>`` (401 otherwise), a ``Stripe-Version`` header, form-encoded POST bodies with
bracketed nesting (``line_items[0][price]``), 400 ``parameter_unknown`` for a parameter the
endpoint does not take and ``resource_missing`` for an unknown id, and ``Idempotency-Key``: the
same key with the same body replays the first answer (``Idempotent-Replayed: true``), with another
body is a 400 ``idempotency_error``. Objects have the shapes of the SDK's pinned API version: the
billing period is on the subscription's items, an invoice names its subscription under
``parent.subscription_details``.

Webhooks: ``Stripe-Signature: t=<unix>,v1=<hex>``, ``v1`` = HMAC-SHA256(secret, ``"<t>." + raw
body``), computed here without the SDK. Nothing is delivered by itself: the test decides when,
how often and in which order (:meth:`StripeStandIn.deliver`), or turns on :attr:`auto_deliver`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import httpx

from standins import Answer, Request, StandIn

KEY = "sk_test_standin_" + "4eC39HqLyjWDarjtT1zdp7dc"
WEBHOOK_SECRET = "whsec_standin_" + "0123456789abcdef"
PRICE = "price_pro_monthly"
API_VERSION_HEADER = "stripe-version"
PERIOD_S = 30 * 86_400

_ALLOWED = {
    ("POST", "/v1/customers"): {"email", "metadata", "name", "description"},
    ("POST", "/v1/checkout/sessions"): {
        "mode", "customer", "client_reference_id", "line_items", "success_url", "cancel_url",
        "metadata", "subscription_data", "allow_promotion_codes", "customer_update"},
    ("POST", "/v1/billing_portal/sessions"): {"customer", "return_url", "configuration"},
    ("GET", "/v1/subscriptions"): {"customer", "status", "limit", "starting_after", "price"},
}


def error(status: int, kind: str, message: str, code: str | None = None,
          param: str | None = None) -> Answer:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    return status, {"error": body}, {}


def missing(what: str, ident: str) -> Answer:
    return error(404, "invalid_request_error", f"No such {what}: '{ident}'", "resource_missing",
                 "id")


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` pairs as nested dicts (list indexes stay string keys)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class StripeStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.portals: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        """Every event generated, in the order Stripe would have generated them."""
        self.webhook_url: str | None = None
        self.auto_deliver = False
        """Deliver each event as it happens (otherwise the test calls :meth:`deliver`)."""
        self.pay_status = "active"
        """The status a subscription paid on the Checkout page starts in."""
        self.clock: Callable[[], float] = time.time
        self._idempotent: dict[str, tuple[bytes, Answer]] = {}
        self._ids = itertools.count(1)
        self._state = threading.RLock()

    # -- ids and objects -------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._ids):06d}{secrets.token_hex(4)}"

    def now(self) -> int:
        return int(self.clock())

    def event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Record an event of ``kind`` carrying a snapshot of ``obj`` (delivered per policy)."""
        made = {
            "id": self.new_id("evt"), "object": "event", "api_version": "2026-10-28.endive",
            "created": self.now(), "type": kind, "livemode": False, "pending_webhooks": 1,
            "data": {"object": json.loads(json.dumps(obj))},
            "request": {"id": None, "idempotency_key": None},
        }
        with self._state:
            self.events.append(made)
        if self.auto_deliver and self.webhook_url:  # not under the caller's lock
            threading.Thread(target=self.deliver, args=(made,), daemon=True).start()
        return made

    def subscribe(self, customer: str, status: str | None = None) -> dict[str, Any]:
        """A subscription to the Pro price for ``customer`` (as paying on Checkout makes one)."""
        start = self.now()
        sub = {
            "id": self.new_id("sub"), "object": "subscription", "customer": customer,
            "status": status or self.pay_status, "created": start, "livemode": False,
            "cancel_at_period_end": False, "canceled_at": None, "ended_at": None,
            "metadata": {},
            "items": {"object": "list", "has_more": False, "data": [{
                "id": self.new_id("si"), "object": "subscription_item", "quantity": 1,
                "price": {"id": PRICE, "object": "price", "unit_amount": 490,
                          "currency": "usd", "recurring": {"interval": "month"}},
                "current_period_start": start, "current_period_end": start + PERIOD_S}]},
        }
        with self._state:
            self.subscriptions[sub["id"]] = sub
        return sub

    def invoice(self, sub: dict[str, Any], *, paid: bool) -> dict[str, Any]:
        return {
            "id": self.new_id("in"), "object": "invoice", "customer": sub["customer"],
            "status": "paid" if paid else "open", "amount_due": 490, "currency": "usd",
            "amount_paid": 490 if paid else 0, "livemode": False,
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": sub["id"], "metadata": {}}},
        }

    def update(self, sub_id: str, **changes: Any) -> dict[str, Any]:
        """Change a subscription as Stripe would (a failed renewal, a cancellation) and record
        ``customer.subscription.updated`` (``deleted`` when it becomes ``canceled``)."""
        with self._state:
            sub = self.subscriptions[sub_id]
            sub.update(changes)
        kind = "deleted" if changes.get("status") == "canceled" else "updated"
        return self.event(f"customer.subscription.{kind}", sub)

    # -- webhooks --------------------------------------------------------------------------------

    def deliver(self, event: dict[str, Any], *, times: int = 1, url: str | None = None,
                secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
                body: bytes | None = None) -> list[int]:
        """POST ``event`` as Stripe does, ``times`` times at once; the statuses answered."""
        raw = body if body is not None else json.dumps(event, indent=2).encode()
        target = url or self.webhook_url
        assert target, "no webhook URL"

        def post(_: int) -> int:
            return httpx.post(target, content=raw, timeout=30, headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": sign(raw, secret, timestamp)}).status_code

        if times == 1:
            return [post(0)]
        with ThreadPoolExecutor(times) as pool:
            return list(pool.map(post, range(times)))

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        if request.path.startswith(("/checkout/", "/portal/")):
            return self._page(request)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return error(401, "invalid_request_error", "Invalid API Key provided")
        if not request.headers.get(API_VERSION_HEADER):
            return error(400, "invalid_request_error", "Stripe-Version header missing")
        if request.method == "POST" and not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return error(400, "invalid_request_error", "Invalid request body content type")
        pairs = (parse_qsl(request.body.decode(), keep_blank_values=True)
                 if request.method == "POST" else [(k, v[0]) for k, v in request.query.items()])
        params = nest(pairs)
        allowed = _ALLOWED.get((request.method, request.path))
        if allowed is not None and (unknown := set(params) - allowed):
            name = sorted(unknown)[0]
            return error(400, "invalid_request_error", f"Received unknown parameter: {name}",
                         "parameter_unknown", name)
        key = request.headers.get("idempotency-key")
        if request.method == "POST" and key:
            with self._state:
                seen = self._idempotent.get(key)
                if seen is not None:
                    if seen[0] != request.body:
                        return error(400, "idempotency_error", "Keys for idempotent requests "
                                     "can only be used with the same parameters they were "
                                     "first used with.")
                    status, body, headers = seen[1]
                    return status, body, {**headers, "Idempotent-Replayed": "true"}
                answer = self._api(request, params)
                self._idempotent[key] = (request.body, answer)
                return answer
        return self._api(request, params)

    def _api(self, request: Request, params: dict[str, Any]) -> Answer:
        method, path = request.method, request.path
        with self._state:
            if (method, path) == ("POST", "/v1/customers"):
                customer = {"id": self.new_id("cus"), "object": "customer", "livemode": False,
                            "email": params.get("email"), "created": self.now(),
                            "metadata": params.get("metadata", {})}
                self.customers[customer["id"]] = customer
                return 200, customer, {}
            if (method, path) == ("POST", "/v1/checkout/sessions"):
                return self._new_checkout(params)
            if (method, path) == ("POST", "/v1/billing_portal/sessions"):
                if params.get("customer") not in self.customers:
                    return missing("customer", str(params.get("customer")))
                made = {"id": self.new_id("bps"), "object": "billing_portal.session",
                        "customer": params["customer"], "livemode": False,
                        "return_url": params.get("return_url"), "created": self.now()}
                made["url"] = f"{self.base_url}/portal/{made['id']}"
                self.portals[made["id"]] = made
                return 200, made, {}
            if (method, path) == ("GET", "/v1/subscriptions"):
                status = params.get("status")
                found = [s for s in self.subscriptions.values()
                         if s["customer"] == params.get("customer", s["customer"])
                         and (status == "all" or s["status"] == status or (
                             status is None and s["status"] != "canceled"))]
                found.sort(key=lambda s: s["created"], reverse=True)
                limit = int(params.get("limit", 10))
                return 200, {"object": "list", "url": "/v1/subscriptions",
                             "has_more": len(found) > limit, "data": found[:limit]}, {}
            if method == "GET" and (m := re.fullmatch(r"/v1/(\w+(?:/\w+)?)/([\w]+)", path)):
                table = {"customers": self.customers, "subscriptions": self.subscriptions,
                         "checkout/sessions": self.sessions}.get(m.group(1))
                if table is None:
                    return error(404, "invalid_request_error", f"Unrecognized request URL "
                                 f"(GET: {path})")
                found_one = table.get(m.group(2))
                return (200, found_one, {}) if found_one else missing(m.group(1), m.group(2))
        return error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _new_checkout(self, params: dict[str, Any]) -> Answer:
        if params.get("mode") not in ("payment", "subscription", "setup"):
            return error(400, "invalid_request_error", "Invalid mode", "parameter_invalid",
                         "mode")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            return missing("customer", customer)
        items = params.get("line_items") or {}
        first = items.get("0") or {}
        if first.get("price") != PRICE:
            return missing("price", str(first.get("price")))
        if not params.get("success_url"):
            return error(400, "invalid_request_error", "success_url is required for hosted "
                         "Checkout", "parameter_missing", "success_url")
        made = {
            "id": "cs_test_" + secrets.token_hex(12), "object": "checkout.session",
            "mode": params["mode"], "status": "open", "payment_status": "unpaid",
            "client_reference_id": params.get("client_reference_id"), "customer": customer,
            "subscription": None, "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"), "metadata": params.get("metadata", {}),
            "livemode": False, "created": self.now(), "expires_at": self.now() + 86_400,
            "amount_total": 490, "currency": "usd",
        }
        made["url"] = f"{self.base_url}/checkout/{made['id']}"
        self.sessions[made["id"]] = made
        return 200, made, {}

    # -- the hosted pages ------------------------------------------------------------------------

    def _page(self, request: Request) -> Answer:
        parts = request.path.strip("/").split("/")
        with self._state:
            if parts[0] == "checkout":
                found = self.sessions.get(parts[1]) if len(parts) > 1 else None
                if found is None:
                    return _html(404, "<h1>Something went wrong</h1>")
                if len(parts) == 3 and parts[2] == "pay" and request.method == "POST":
                    return self._pay(found)
                if found["status"] != "open":
                    return _html(200, "<h1>This Checkout Session is no longer active</h1>")
                return _html(200, f"""<h1>Subscribe to Pro</h1><p>US$4.90 per month</p>
<form method="post" action="/checkout/{found['id']}/pay"><button>Pay</button></form>
<p><a href="{html.escape(found['cancel_url'] or '')}">Cancel</a></p>""")
            found = self.portals.get(parts[1]) if len(parts) > 1 else None
            if found is None:
                return _html(404, "<h1>Something went wrong</h1>")
            subs = [s for s in self.subscriptions.values()
                    if s["customer"] == found["customer"] and s["status"] != "canceled"]
            if len(parts) == 3 and request.method == "POST" and subs:
                if parts[2] == "cancel":
                    self.update(subs[0]["id"], cancel_at_period_end=True,
                                canceled_at=self.now())
                elif parts[2] == "renew":
                    self.update(subs[0]["id"], cancel_at_period_end=False, canceled_at=None)
                return 303, None, {"Location": found["return_url"]}
            state = ("Your plan will be canceled" if subs and subs[0]["cancel_at_period_end"]
                     else "Pro, US$4.90 per month" if subs else "No subscription")
            return _html(200, f"""<h1>Billing</h1><p id="state">{state}</p>
<form method="post" action="/portal/{found['id']}/cancel"><button>Cancel plan</button></form>
<form method="post" action="/portal/{found['id']}/renew"><button>Renew plan</button></form>
<p><a href="{html.escape(found['return_url'] or '')}">Return</a></p>""")

    def _pay(self, found: dict[str, Any]) -> Answer:
        """The "Pay" button: a subscription, the session completed, and the events Stripe
        sends for it (in Stripe's usual order; tests deliver them in any)."""
        if found["status"] == "open":
            sub = self.subscribe(found["customer"])
            found.update(status="complete", payment_status="paid", subscription=sub["id"])
            self.event("customer.subscription.created", sub)
            self.event("invoice.paid", self.invoice(sub, paid=True))
            self.event("checkout.session.completed", found)
        target = found["success_url"].replace("{CHECKOUT_SESSION_ID}", found["id"])
        return 303, None, {"Location": target}


def _html(status: int, body: str) -> Answer:
    page = f"<!doctype html><html><head><title>Stripe stand-in</title></head><body>{body}" \
           "</body></html>"
    return status, page.encode(), {"Content-Type": "text/html; charset=utf-8"}
