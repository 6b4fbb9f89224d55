"""Self-serve billing with Stripe: Checkout to upgrade, the Billing Portal to manage, webhooks
to follow, and a ledger so that no event is applied twice.

Off unless the operator sets ``CLAUDE_NOTIFY_SERVER_STRIPE_SECRET_KEY``. The design in one line:
every handled webhook is reduced to "re-read this customer's subscriptions from Stripe and derive
the plan" (:func:`.service.sync_customer`), so neither the order nor the repetition of Stripe's
events can leave a wrong plan. :mod:`.gateway` is the only module that imports ``stripe``;
:mod:`.state` is the pure rule from a subscription to a plan.
"""
