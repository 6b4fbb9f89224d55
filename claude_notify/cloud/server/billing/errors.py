"""Billing's errors, in a module that imports nothing, so callers can catch them without
loading the Stripe SDK::

    BillingProblem
    ├── BillingOff      the operator has not configured Stripe            → 404
    ├── AlreadyPro      the account is on Pro: manage, do not upgrade     → 409
    ├── NoCustomer      nothing to manage before a first Checkout         → 409
    └── StripeProblem   a Stripe call gave no usable answer
        ├── StripeDown      no answer, 5xx, 429: nothing decided, retry   → 503
        └── StripeRefused   4xx: the request or the configuration is wrong → 502

Messages are one line, safe to show, with secrets masked.
"""

from __future__ import annotations


class BillingProblem(Exception):
    """Anything billing refuses or cannot do."""


class BillingOff(BillingProblem):
    """The operator has not configured Stripe: plans are set with ``server set-plan``."""


class AlreadyPro(BillingProblem):
    """The account is on Pro already."""


class NoCustomer(BillingProblem):
    """The account has never started a Checkout."""


class StripeProblem(BillingProblem):
    """A Stripe call that did not give an answer billing can use."""


class StripeDown(StripeProblem):
    """Stripe did not answer, or answered 5xx or 429: nothing was decided; try again."""


class StripeRefused(StripeProblem):
    """Stripe refused the call (4xx)."""


class BadSignature(Exception):
    """A webhook body whose ``Stripe-Signature`` does not verify, or is too old."""
