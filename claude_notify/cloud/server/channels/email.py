"""E-mail over the operator's SMTP relay: STARTTLS when offered (or required), text + HTML.

SMTP replies are classified by their code: 4xx and connection trouble are retryable, 5xx is
permanent (a refused recipient will not start accepting on a retry).
"""

from __future__ import annotations

import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import ClassVar

import aiosmtplib
import httpx

from claude_notify.cloud.server.channels.base import DeliveryResult, Message
from claude_notify.cloud.server.settings import Settings


def build_email(message: Message, *, sender: str) -> EmailMessage:
    """The MIME message: multipart/alternative, headers encoded by the library, never by hand."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = Address(addr_spec=str(message.config["address"]))
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=message.id, domain="claude-notify")
    mail["X-Claude-Notify-Id"] = message.id
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail


class EmailChannel:
    type: ClassVar[str] = "email"

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.tls_context = ssl.create_default_context(cafile=settings.smtp_ca_file)

    async def send(self, message: Message) -> DeliveryResult:
        s = self.settings
        mail = build_email(message, sender=s.smtp_from)
        try:
            errors, reply = await aiosmtplib.send(
                mail,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=None if s.smtp_starttls == "auto" else s.smtp_starttls == "require",
                tls_context=self.tls_context,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return DeliveryResult(
                ok=False, retryable=400 <= exc.code < 500, detail=f"SMTP {exc.code}: {exc.message}"
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult(ok=False, retryable=True, detail=f"SMTP: {exc}")
        if errors:
            code, text = next(iter(errors.values()))
            return DeliveryResult(
                ok=False, retryable=400 <= code < 500, detail=f"SMTP {code}: {text}"
            )
        return DeliveryResult(ok=True, detail=reply[:200], provider_id=str(mail["Message-ID"]))
