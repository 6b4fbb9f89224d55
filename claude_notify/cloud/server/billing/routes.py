"""``POST /v1/billing/checkout``, ``POST /v1/billing/portal`` and ``POST /v1/stripe/webhook``.

The webhook answers as soon as the event is in the ledger (a verified body, one row per event
id, written in a group commit with the deliveries beside it) and wakes the delivery worker,
which handles it (:func:`.service.due`, :func:`.service.process`): in a deployment with worker
processes of their own, the re-read from Stripe never shares the API's CPU. Stripe times out
slow endpoints and retries, and a Stripe call made while it waits would put our latency at the
mercy of its own. An event that cannot be written gets a 5xx, so Stripe retries it; one whose
handling fails stays in the ledger, unprocessed, for Stripe's retry, the hourly sweep and
``server billing-sync``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from claude_notify.cloud.server.api.deps import RuntimeDep, TaskReader
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.billing import service
from claude_notify.cloud.server.billing.errors import (
    AlreadyPro,
    BadSignature,
    BillingOff,
    BillingProblem,
    StripeDown,
    StripeProblem,
)

router = APIRouter(tags=["billing"])


class UrlOut(BaseModel):
    url: str
    """Where to send the user's browser (Stripe's own pages)."""


def _answer(exc: BillingProblem) -> ApiError:
    """The API's answer to each of billing's problems (see :mod:`.errors`)."""
    if isinstance(exc, BillingOff):
        return ApiError(404, str(exc), code="billing_off")
    if isinstance(exc, AlreadyPro):
        return ApiError(409, "this account is on Pro already: manage it with "
                             "`claude-notify billing` or on the web app's billing page")
    if isinstance(exc, StripeDown):
        return ApiError(503, f"{exc}; nothing was charged or changed, try again shortly",
                        code="stripe_unavailable", headers={"Retry-After": "30"})
    if isinstance(exc, StripeProblem):
        return ApiError(502, str(exc), code="stripe_refused")
    return ApiError(409, str(exc))


@router.post("/v1/billing/checkout", summary="Start a Stripe Checkout to upgrade to Pro")
def checkout(caller: TaskReader, runtime: RuntimeDep) -> UrlOut:
    try:
        return UrlOut(url=service.start_checkout(runtime.sessions, runtime.settings,
                                                 caller.workspace_id))
    except BillingProblem as exc:
        raise _answer(exc) from None


@router.post("/v1/billing/portal", summary="Open Stripe's Billing Portal for this account")
def portal(caller: TaskReader, runtime: RuntimeDep) -> UrlOut:
    try:
        return UrlOut(url=service.start_portal(runtime.sessions, runtime.settings,
                                               caller.workspace_id))
    except BillingProblem as exc:
        raise _answer(exc) from None


@router.post("/v1/stripe/webhook", summary="Stripe's webhook (signed with Stripe-Signature)",
             include_in_schema=False)
async def webhook(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    settings = runtime.settings
    if not settings.billing_enabled or not settings.stripe_webhook_secret:
        raise ApiError(404, "billing is not offered by this server", code="billing_off")
    from claude_notify.cloud.server.billing.gateway import verify  # imports stripe

    body = await request.body()  # the raw bytes: re-serialised JSON would not verify
    try:
        verify(body, request.headers.get("stripe-signature"), settings.stripe_webhook_secret)
    except BadSignature as exc:
        raise ApiError(400, f"signature: {exc}", code="bad_signature") from None
    service.ARRIVALS.mark()  # signed: an embedded worker's handling steps aside meanwhile
    try:
        event = json.loads(body)
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise ApiError(400, "the body is not a Stripe event")
    if event.get("type") not in service.HANDLED:
        return {"received": True, "handled": False}
    received = await runtime.writes.run(lambda session, _memo: service.record(session, event))
    if received.handle and not (settings.embedded_worker and service.ARRIVALS.recorded()):
        runtime.waker.wake()  # workers of their own (or none listening here yet)
    return {"received": True, "handled": received.handle}
