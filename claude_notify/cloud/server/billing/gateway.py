"""The one module that imports ``stripe``: the calls billing makes, and Stripe's errors
translated at this edge.

Imported only when billing is configured, so a server without Stripe never loads the SDK. The
SDK keeps its pinned API version (the shapes :mod:`.state` reads); ``stripe_api_base`` points it
at a stand-in in tests.

Stripe's exceptions become :class:`~.errors.StripeDown` (no answer, 5xx, 429: nothing was
decided) or :class:`~.errors.StripeRefused` (Stripe said no: a bad key, an unknown price).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import stripe

from claude_notify.cloud.server.billing.errors import BadSignature, StripeDown, StripeRefused
from claude_notify.cloud.server.billing.state import Subscription
from claude_notify.cloud.server.redact import redact
from claude_notify.cloud.server.settings import Settings

TOLERANCE_S = 300
"""Stripe's own default: a signature older than five minutes is a replay."""


def verify(payload: bytes, header: str | None, secret: str) -> None:
    """Check ``Stripe-Signature`` over the raw body (any ``v1`` may match; the timestamp must
    be within :data:`TOLERANCE_S`), or raise :class:`BadSignature`."""
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise BadSignature(str(exc).split(".")[0][:200]) from None


class Gateway:
    """Billing's Stripe calls, over one client (thread-safe: requests' session per thread)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key is not None  # noqa: S101 - checked by billing_enabled
        self.settings = settings
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            # One retry: the SDK repeats a POST with its idempotency key, so it cannot double.
            max_network_retries=1,
            http_client=stripe.RequestsClient(timeout=settings.provider_timeout_s),
        )

    def create_customer(self, *, user_id: uuid.UUID, email: str) -> str:
        """A customer for the account. The idempotency key is the account's, so a retry, or two
        Checkouts started at once, get the same customer back rather than a second one."""
        made = self._call(lambda: self._client.v1.customers.create(
            params={"email": email, "metadata": {"user_id": str(user_id)}},
            options={"idempotency_key": f"customer-create:{user_id}"}))
        return str(made["id"])

    def checkout(self, *, customer: str, user_id: uuid.UUID, success_url: str,
                 cancel_url: str) -> dict[str, Any]:
        """A subscription-mode Checkout Session for the Pro price."""
        price = self.settings.stripe_price_id
        return self._call(lambda: self._client.v1.checkout.sessions.create(params={
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": str(user_id),
            "line_items": [{"price": str(price), "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"user_id": str(user_id)},
            "subscription_data": {"metadata": {"user_id": str(user_id)}},
        }))

    def checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._call(lambda: self._client.v1.checkout.sessions.retrieve(session_id))

    def portal(self, *, customer: str, return_url: str) -> dict[str, Any]:
        return self._call(lambda: self._client.v1.billing_portal.sessions.create(
            params={"customer": customer, "return_url": return_url}))

    def subscriptions(self, customer: str) -> list[Subscription]:
        """Every subscription of the customer, canceled ones included (the newest 20).

        The worker's call for every webhook event: read as the raw answer's JSON, since turning
        it into the SDK's objects and back into dicts was a fifth of the call's CPU, taken from
        the webhook's answers in a one-process server. Same request, retries and errors."""
        found = self._call(lambda: self._client.raw_request(
            "get", "/v1/subscriptions", customer=customer, status="all", limit=20).data)
        return [Subscription.from_stripe(s) for s in found["data"]]

    def _call(self, call: Callable[[], stripe.StripeObject | dict[str, Any]]) -> dict[str, Any]:
        """The answer as plain dicts and lists (the SDK's objects are neither)."""
        try:
            made = call()
            return made.to_dict() if isinstance(made, stripe.StripeObject) else made
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise StripeDown(f"Stripe did not answer: {_said(exc)}") from None
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status == 0:
                raise StripeDown(f"Stripe answered {status or 'nothing'}: {_said(exc)}") from None
            raise StripeRefused(f"Stripe refused the call ({status}): {_said(exc)}") from None


def _said(exc: stripe.StripeError) -> str:
    text = str(getattr(exc, "user_message", None) or exc).replace("\n", " ")
    return redact(text)[:300]


@functools.lru_cache(maxsize=4)
def gateway(settings: Settings) -> Gateway:
    """The gateway for these settings, built once (the SDK client holds connection pools)."""
    return Gateway(settings)
