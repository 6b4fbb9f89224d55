"""The interface every channel implements: ``await send(message) -> SendResult``.

Adapters never raise for a failed delivery: they classify it. ``retryable`` failures (timeouts,
429, 5xx, a provider's own transient codes) are retried with backoff; anything else is permanent
and ends as a dead letter with the provider's reason. ``disable_channel`` says the destination is
gone for good (webhook 410, a bot blocked by the user) so nothing more is queued for it;
``remove_channel`` that it was one browser's subscription, so the channel itself goes.

The adapters that call an HTTP API share :class:`HttpChannel`'s send: build the request (or refuse
before any call), post it, classify the answer; a call that fails on the wire is retryable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx

from claude_notify.cloud.server.delivery.http import describe
from claude_notify.cloud.server.settings import Settings


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
    remove_channel: bool = False
    """The destination no longer exists and cannot come back (a Web Push subscription the push
    service answers 404/410 for): the channel is deleted, not just turned off."""
    channel_update: dict[str, Any] | None = None
    """Values to merge into the channel's config when the result is settled, whatever the
    outcome: what the provider taught us about the destination (a Telegram group that became a
    supergroup has a new chat id), so the next message goes straight there."""


class ChannelAdapter(Protocol):
    type: ClassVar[str]

    async def send(self, message: Message) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class Post:
    """One call to a provider: the URL and httpx's options for it (body, headers, timeout…)."""

    url: str
    options: dict[str, Any]


class HttpChannel:
    """The send every HTTP adapter shares; an adapter says what to post and what the answer means.

    Subclasses define :meth:`request` and :meth:`classify`, and may word :meth:`unreachable`.
    """

    type: ClassVar[str]

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def send(self, message: Message) -> SendResult:
        request = await self.request(message)
        if isinstance(request, SendResult):  # refused before any call
            return request
        answer = await self.post(request)
        return self.unreachable(answer) if isinstance(answer, str) else self.classify(answer)

    async def post(self, request: Post) -> httpx.Response | str:
        """The provider's answer, or one line saying what failed on the wire. The line comes from
        a fixed vocabulary: an exception's own text may quote a URL holding the operator's token."""
        try:
            return await self.http.post(request.url, **request.options)
        except httpx.HTTPError as exc:
            return describe(exc)

    async def request(self, message: Message) -> Post | SendResult:
        """The call that delivers ``message``, or why none is made (a permanent failure)."""
        raise NotImplementedError

    def classify(self, response: httpx.Response) -> SendResult:
        """What the provider's answer means for the delivery."""
        raise NotImplementedError

    def unreachable(self, detail: str) -> SendResult:
        """The result of a call that failed on the wire: always worth another try."""
        return SendResult(ok=False, retryable=True, detail=detail)


def json_object(response: Any) -> dict[str, Any]:
    """A provider's JSON answer as a dict; ``{}`` for an empty, non-JSON or non-object body."""
    try:
        decoded = response.json()
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
