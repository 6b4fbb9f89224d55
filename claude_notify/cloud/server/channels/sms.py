"""SMS through the operator's Twilio account: a short text that fits one or two segments.

Twilio bills per segment: 160 GSM-7 characters (153 each when split) or 70 UCS-2 (67 when
split); one character outside GSM-7, an emoji say, switches the whole text to UCS-2. The text is
measured that way and trimmed to two segments. The pro plan's 30 SMS a day are taken when the
notification is queued (``quota.take``), before any call. The number receives nothing until its
owner confirmed it with the code sent to it.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import (
    HttpChannel,
    Message,
    Post,
    SendResult,
    json_object,
)
from claude_notify.cloud.server.channels.text import clean, utf16_len

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
"""Each costs two septets (an escape and the character)."""
MAX_SEGMENTS = 2
PERMANENT_CODES = frozenset({21211, 21610, 20003, 21614, 21408, 21612})
GONE_CODES = frozenset({21610, 21211, 21614})
"""The recipient replied STOP, or the number is invalid or cannot receive SMS."""

SMS_TEMPLATE = (
    "{{ command or title or 'task' }} {{ outcome }}"
    "{% if exit_code != '' %} (exit {{ exit_code }}{% if duration %}, {{ duration }}{% endif %})"
    "{% elif duration %} ({{ duration }}){% endif %}{% if host %} on {{ host }}{% endif %}"
    "{% if link %} {{ link }}{% endif %}"
)


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def segments(text: str) -> int:
    """How many segments Twilio will bill for ``text``."""
    if is_gsm7(text):
        units, single, multi = sum(2 if c in GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = utf16_len(text), 70, 67
    return 1 if units <= single else -(-units // multi)


def sms_units(text: str) -> int:
    """A length on one scale for both encodings, so that ≤ 306 means "two segments at most"."""
    if is_gsm7(text):
        return sum(2 if c in GSM7_EXTENDED else 1 for c in text)
    return -(-utf16_len(text) * 153 // 67)


def build_text(message: Message, *, app_url: str | None) -> str:
    if message.event is not None:
        template, fields = templates.body_fields(message, app_url=app_url, default=SMS_TEMPLATE)
    else:
        template = templates.cached("{{ message }}")
        fields = {**dict.fromkeys(templates.FIELDS, ""), "message": clean(message.text)}
    text = template.render_fitted(fields, "text", limit=153 * MAX_SEGMENTS, measure=sms_units)
    return " ".join(text.split()) or "claude-notify"


class SmsChannel(HttpChannel):
    type: ClassVar[str] = "sms"
    label: ClassVar[str] = "SMS"

    def sender(self) -> str | None:
        """The operator's number or messaging service this channel sends from."""
        return self.settings.twilio_from

    def form(self, message: Message) -> dict[str, str]:
        sender = str(self.sender())
        key = "MessagingServiceSid" if sender.startswith("MG") else "From"
        text = build_text(message, app_url=self.settings.dashboard_url)
        return {"To": str(message.config["number"]), key: sender, "Body": text}

    async def request(self, message: Message) -> Post | SendResult:
        s = self.settings
        if not (s.twilio_account_sid and s.twilio_auth_token and self.sender()):
            return SendResult(ok=False, detail=f"{self.label} is not configured on this server")
        base = s.twilio_api_base.rstrip("/")
        return Post(f"{base}/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json", {
            "data": self.form(message),
            "auth": (s.twilio_account_sid, s.twilio_auth_token),
            "timeout": s.provider_timeout_s,
            "follow_redirects": False,
        })

    def classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        if 200 <= status < 300:
            sid = str(body["sid"]) if body.get("sid") else None
            count = body.get("num_segments")
            return SendResult(ok=True, detail=f"{sid} queued, {count} segment(s)", provider_id=sid)
        code = body.get("code")
        reason = clean(str(body.get("message") or response.reason_phrase or ""))[:200]
        detail = f"Twilio {code or status}: {reason}"
        if status == 429 or code == 20429 or status >= 500:
            wait = response.headers.get("retry-after", "")
            retry_after = float(wait) if wait.replace(".", "", 1).isdigit() else None
            return SendResult(ok=False, retryable=True, detail=detail, retry_after=retry_after)
        return SendResult(ok=False, detail=detail, disable_channel=code in GONE_CODES)
