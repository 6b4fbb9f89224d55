"""Twilio Messages API stand-in: ``POST /2010-04-01/Accounts/{Sid}/Messages.json``.

Form-encoded body, HTTP Basic ``AccountSid:AuthToken``; answers 201 with a message resource
(``sid``, ``status: queued``, ``num_segments`` counted here, GSM-7 or UCS-2) or Twilio's error
shape (``code``, ``message``, ``more_info``, ``status``): 20003 bad credentials, 21211 invalid
``To``, 21610 a recipient who replied STOP, 21617 a body over 1,600 characters.

WhatsApp on the same endpoint: ``To=whatsapp:+…`` with ``From=whatsapp:+…`` (the account's
WhatsApp sender, :data:`WHATSAPP_SENDER`) or a messaging service; a WhatsApp ``To`` with an SMS
``From`` (or the reverse) is 21910, a sender that is not the account's WhatsApp sender 63007.
A message is ``Body`` text or an approved template: ``ContentSid`` (``HX`` and 32 hex digits)
with ``ContentVariables``, a JSON object of strings. WhatsApp delivers free-form text only within
24 hours of the person's last message (:attr:`TwilioStandIn.wrote_within_24h`); Twilio still
answers 201 and the message fails later with 63016: recorded as ``delivered: False``.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from email.utils import formatdate
from typing import Any

from standins import Answer, Request, StandIn

SID = "AC" + "0" * 31 + "1"
TOKEN = "twilio-auth-token"  # noqa: S105 - the stand-in's own test credential
SENDER = "+15017122661"
WHATSAPP_SENDER = "+14155238886"
_PATH = re.compile(r"^/2010-04-01/Accounts/(AC\w{32})/Messages\.json$")
# GSM 03.38: the basic table (one septet each) and the extension table (two septets each).
_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXT = set("\f^{}\\[~]|€")


def count_segments(text: str) -> tuple[str, int]:
    """Encoding and segment count the way carriers split a message."""
    if all(c in _BASIC or c in _EXT for c in text):
        septets = sum(2 if c in _EXT else 1 for c in text)
        return "GSM-7", 1 if septets <= 160 else (septets + 152) // 153
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else (units + 66) // 67


def error(status: int, code: int, message: str) -> Answer:
    body = {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}  # fmt: skip
    return status, body, {}


class TwilioStandIn(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.stopped: set[str] = set()
        self.wrote_within_24h: set[str] = set()
        """WhatsApp numbers that wrote to the sender in the last 24 hours."""
        self._ids = itertools.count(1)

    def handle(self, request: Request) -> Answer:
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if match.group(1) != SID or request.headers.get("authorization") != expected:
            return error(401, 20003, "Authenticate")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return error(400, 21620, "Invalid media type")
        form: dict[str, Any] = {k: v[0] for k, v in request.form().items()}
        if form.get("To", "").startswith("whatsapp:") or form.get("From", "").startswith(
                "whatsapp:"):
            return self._whatsapp(request, form)
        to, body = form.get("To", ""), form.get("Body", "")
        if not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not body:
            return error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return error(400, 21617, "The concatenated message body exceeds the 1600 limit")
        if to in self.stopped:
            return error(400, 21610, "Attempt to send to unsubscribed recipient")
        encoding, segments = count_segments(body)
        sid = f"SM{next(self._ids):032x}"
        request.displayed = {"to": to, "body": body, "encoding": encoding, "segments": segments}
        return 201, self._resource(sid, to, form, body, segments), {}

    def _whatsapp(self, request: Request, form: dict[str, Any]) -> Answer:
        to, sender = form.get("To", ""), form.get("From", "")
        if not to.startswith("whatsapp:") or (sender and not sender.startswith("whatsapp:")):
            return error(400, 21910, "Invalid From and To pair. From and To should be of the "
                                     "same channel")
        if sender and sender != f"whatsapp:{WHATSAPP_SENDER}":
            return error(400, 63007, "Twilio could not find a Channel with the specified From "
                                     "address")
        if not sender and not form.get("MessagingServiceSid"):
            return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        number = to.removeprefix("whatsapp:")
        if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if number in self.stopped:
            return error(400, 21610, "Attempt to send to unsubscribed recipient")
        content, body = form.get("ContentSid"), form.get("Body", "")
        if content is not None:
            try:
                variables = json.loads(form.get("ContentVariables", "{}"))
            except ValueError:
                return error(400, 21656, "The ContentVariables Parameter is invalid")
            if not re.fullmatch(r"HX[0-9a-fA-F]{32}", content) or not isinstance(
                    variables, dict) or not all(isinstance(v, str) for v in variables.values()):
                return error(400, 21656, "The ContentVariables Parameter is invalid")
            text = str(variables.get("1", ""))
        elif not body:
            return error(400, 21602, "Message body is required.")
        else:
            text = body
        if len(text) > 1600:
            return error(400, 21617, "The concatenated message body exceeds the 1600 limit")
        sid = f"SM{next(self._ids):032x}"
        delivered = content is not None or number in self.wrote_within_24h
        request.displayed = {"to": number, "text": text, "template": content,
                             "delivered": delivered}
        return 201, self._resource(sid, to, form, text, 1), {}

    def _resource(self, sid: str, to: str, form: dict[str, Any], body: str,
                  segments: int) -> dict[str, Any]:
        return {
            "sid": sid,
            "status": "queued",
            "to": to,
            "from": form.get("From"),
            "body": body,
            "num_segments": str(segments),
            "price": None,
            "error_code": None,
            "date_created": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
        }
