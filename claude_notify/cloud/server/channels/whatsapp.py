"""WhatsApp through the operator's Twilio account: the Messages endpoint SMS uses, with
``From=whatsapp:+…`` and ``To=whatsapp:+…`` (the operator's WhatsApp sender and the user's
number). The number receives nothing until its owner entered the code sent to it.

WhatsApp lets a business write freely only within 24 hours of the person's last message to it;
outside that window only an approved template is delivered (Twilio accepts a free-form message
and drops it later with error 63016). With ``TWILIO_WHATSAPP_CONTENT_SID`` — an approved
template whose one variable ``{{1}}`` is the text — every message goes as that template; without
it, as free-form text (Twilio's sandbox, or a number that wrote to the sender in the last day).
"""

from __future__ import annotations

import json
from typing import ClassVar, Final

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.channels.sms import SmsChannel
from claude_notify.cloud.server.channels.text import clean

MAX_CHARS: Final = 1500
"""Twilio takes 1,600 characters in a WhatsApp body (WhatsApp itself 4,096); a template's
variable is shorter still in practice, so one limit below both."""
GONE_CODES: Final = frozenset({21610, 21211, 63003, 63024})
"""STOP, an invalid number, a number not on WhatsApp, an invalid recipient: switch off."""
RETRY_CODES: Final = frozenset({20429, 63018})
"""Twilio's and WhatsApp's rate limits."""

WHATSAPP_TEMPLATE: Final = (
    "{{ headline }}{% if host %} on {{ host }}{% endif %}"
    "{% if message %}\n{{ message }}{% endif %}"
    "{% if tail %}\n\n{{ tail }}{% endif %}{% if link %}\n\n{{ link }}{% endif %}"
)


def build_text(message: Message, *, app_url: str | None) -> str:
    """Plain text: the outcome line, the end of the output, the task's link."""
    if message.event is not None:
        template, fields = templates.body_fields(message, app_url=app_url,
                                                 default=WHATSAPP_TEMPLATE)
    else:
        template = templates.cached("{{ message }}")
        fields = {**dict.fromkeys(templates.FIELDS, ""), "message": clean(message.text)}
    text = template.render_fitted(fields, "text", limit=MAX_CHARS, measure=len)
    return text.strip() or "claude-notify"


class WhatsAppChannel(SmsChannel):
    type: ClassVar[str] = "whatsapp"
    label: ClassVar[str] = "WhatsApp"

    def sender(self) -> str | None:
        return self.settings.twilio_whatsapp_from

    def form(self, message: Message) -> dict[str, str]:
        s = self.settings
        sender = str(self.sender())
        out = {"To": f"whatsapp:{message.config['number']}"}
        if sender.startswith("MG"):
            out["MessagingServiceSid"] = sender
        else:
            out["From"] = f"whatsapp:{sender}"
        text = build_text(message, app_url=s.dashboard_url)
        if s.twilio_whatsapp_content_sid:
            out["ContentSid"] = s.twilio_whatsapp_content_sid
            out["ContentVariables"] = json.dumps({"1": text}, ensure_ascii=False)
        else:
            out["Body"] = text
        return out

    def classify(self, response: httpx.Response) -> SendResult:
        result = super().classify(response)
        if result.ok or result.retryable:
            return result
        code = _code(response)
        if code in RETRY_CODES:
            return SendResult(ok=False, retryable=True, detail=result.detail)
        return SendResult(ok=False, detail=result.detail, disable_channel=code in GONE_CODES)


def _code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
