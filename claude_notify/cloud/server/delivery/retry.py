"""The retry policy: what a finished send makes of its notification.

Adapters classify each failure (``SendResult.retryable``: timeouts, 429, 5xx, a provider's own
transient codes); this module decides the rest. A retryable failure is tried again while attempts
remain (``settings.max_attempts``), after the schedule's step for that attempt
(``settings.retry_delays_s``, its last step repeating) with ±25 % jitter, and never sooner than
the provider's ``retry_after`` (itself capped at :data:`MAX_RETRY_AFTER_S`). A permanent failure,
or a retryable one out of attempts, makes a dead letter that says why.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Final

from claude_notify.cloud.server.channels.base import SendResult
from claude_notify.cloud.server.db.models import DeliveryStatus
from claude_notify.cloud.server.settings import Settings

MAX_RETRY_AFTER_S: Final = 86_400.0
"""A receiver cannot park a delivery for longer than a day by answering a huge Retry-After."""


def retry_delay(
    attempts: int, settings: Settings, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds until the next try: the schedule's step with ±25 % jitter, at least retry_after."""
    schedule = settings.retry_delays_s
    base = schedule[min(attempts - 1, len(schedule) - 1)]
    jittered = base * rng.uniform(0.75, 1.25)
    return max(jittered, min(retry_after or 0.0, MAX_RETRY_AFTER_S))


def next_status(
    number: int, result: SendResult, settings: Settings, rng: random.Random, now: datetime
) -> tuple[DeliveryStatus, dict[str, object]]:
    """The row's status after attempt ``number`` and the columns that go with it."""
    if result.ok:
        return DeliveryStatus.SENT, {
            "sent_at": now, "provider_id": result.provider_id, "reason": None,
        }
    if result.retryable and number < settings.max_attempts:
        delay = retry_delay(number, settings, result.retry_after, rng)
        return DeliveryStatus.PENDING, {
            "next_attempt_at": now + timedelta(seconds=delay),
            "reason": result.detail,
        }
    reason = result.detail if not result.retryable else f"gave up after {number} attempts: "
    if result.retryable:
        reason += result.detail
    return DeliveryStatus.DEAD, {"reason": reason}


def attempt_outcome(result: SendResult, status: DeliveryStatus) -> str:
    """The attempt row's outcome: ``ok``, ``retry`` (another try is scheduled) or ``permanent``."""
    return "ok" if result.ok else ("retry" if status == DeliveryStatus.PENDING else "permanent")
