"""E-mail over the operator's SMTP relay: STARTTLS when offered (or required), text + HTML.

An event e-mail's two bodies come from one template, the user's own (pro) or
:data:`EMAIL_TEMPLATE`: the text part in the plain dialect, the HTML part in the HTML dialect with
every value escaped. Sign-in, confirmation and test mails were rendered when queued.

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

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.settings import Settings


def build_email(message: Message, *, sender: str, app_url: str | None = None) -> EmailMessage:
    """The MIME message: multipart/alternative, headers encoded by the library, never by hand."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = Address(addr_spec=str(message.config["address"]))
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=message.id, domain="claude-notify")
    mail["X-Claude-Notify-Id"] = message.id
    text, html = bodies(message, app_url=app_url)
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail


EMAIL_TEMPLATE = """\
**{{ headline }}**

{% if host %}**Host:** {{ host }}
{% endif %}{% if cwd %}**Directory:** {{ cwd }}
{% endif %}{% if message %}**Message:** {{ message }}
{% endif %}{% if match %}**Matched:** `{{ match }}`
{% endif %}{% if tail %}
**Last output:**
```
{{ tail }}
```
{% endif %}"""
"""The headline, a fact a line, then the output as written: the text part many mail clients
show reads as a plain note, the HTML part bolds the labels and keeps the output preformatted."""


def bodies(message: Message, *, app_url: str | None) -> tuple[str, str | None]:
    """Text and HTML: an event's from the channel's template, anything else as queued."""
    if message.event is None:
        return message.text, message.html
    template, fields = templates.body_fields(message, app_url=app_url, default=EMAIL_TEMPLATE)
    text = template.render(fields, "text")
    page = (
        "<!doctype html><html><body>"
        + template.render(fields, "html")
        + "<p style='color:#888'>Sent by claude-notify.</p></body></html>"
    )
    return text or message.text, page


class EmailChannel:
    type: ClassVar[str] = "email"

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.tls_context = ssl.create_default_context(cafile=settings.smtp_ca_file)

    async def send(self, message: Message) -> SendResult:
        s = self.settings
        mail = build_email(message, sender=s.smtp_from, app_url=s.dashboard_url)
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
            return SendResult(
                ok=False, retryable=400 <= exc.code < 500, detail=f"SMTP {exc.code}: {exc.message}"
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, retryable=True, detail=f"SMTP: {exc}")
        if errors:
            code, text = next(iter(errors.values()))
            return SendResult(
                ok=False, retryable=400 <= code < 500, detail=f"SMTP {code}: {text}"
            )
        return SendResult(ok=True, detail=reply[:200], provider_id=str(mail["Message-ID"]))
