"""The interface every channel implements: ``await send(message) -> SendResult``.

Adapters never raise for a failed delivery: they classify it. ``retryable`` failures (timeouts,
429, 5xx, a provider's own transient codes) are retried with backoff; anything else is permanent
and ends as a dead letter with the provider's reason. ``disable_channel`` says the destination is
gone for good (webhook 410, a bot blocked by the user) so nothing more is queued for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Actions:
    """What a chat that takes replies can offer under a task notification (the relay)."""

    run_again: str | None = None
    """Button payload that queues the task's own command again (never the command itself)."""
    show_log: str | None = None
    """Button payload that answers with the task's stored log tail."""
    reply_token: str | None = None
    """A reply token for the task's session, for the task link (never logged)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One rendered notification for one channel; adapters only encode it for their transport."""

    id: str
    """The notification id: stable across retries, so receivers can de-duplicate on it."""
    channel_type: str
    config: dict[str, Any]
    """The channel's user-level values (address, URL, secret)."""
    kind: str
    """``event``, ``verify`` or ``test``."""
    subject: str
    """One line of plain text, already stripped of control characters."""
    text: str
    """Plain-text body; untrusted parts (command, tail) are included verbatim."""
    html: str | None = None
    """HTML body, every untrusted part escaped, for channels that render HTML."""
    event: dict[str, Any] | None = field(default=None)
    """The task event as the webhook payload (``TaskEvent.to_dict``), for event messages."""
    actions: Actions | None = field(default=None, repr=False)
    """Relay buttons and the reply token, for channels that take replies (Telegram)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """How one attempt at a provider went (not :class:`claude_notify.notifiers.base.
    DeliveryResult`, a desktop backend's answer)."""

    ok: bool
    detail: str = ""
    """One line, safe to show the user: the provider's reason or its message id."""
    retryable: bool = False
    provider_id: str | None = None
    retry_after: float | None = None
    """Seconds the provider asked us to wait (``Retry-After``, Telegram's ``retry_after``)."""
    disable_channel: bool = False
    channel_update: dict[str, Any] | None = None
    """Values to merge into the channel's config when the result is settled, whatever the
    outcome: what the provider taught us about the destination (a Telegram group that became a
    supergroup has a new chat id), so the next message goes straight there."""


class ChannelAdapter(Protocol):
    type: ClassVar[str]

    async def send(self, message: Message) -> SendResult: ...


def json_object(response: Any) -> dict[str, Any]:
    """A provider's JSON answer as a dict; ``{}`` for an empty, non-JSON or non-object body."""
    try:
        decoded = response.json()
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
