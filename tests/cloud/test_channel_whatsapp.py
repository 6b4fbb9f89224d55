"""WhatsApp through Twilio against the Twilio stand-in (the Messages endpoint, ``whatsapp:``
addresses, templates) and through the real app: a number confirmed by a code sent on WhatsApp,
pro only, and only on a server whose operator has a WhatsApp sender."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins import twilio
from standins.kit import deliver, event, message, notice, provider_settings, twilio_api
from standins.twilio import WHATSAPP_SENDER, TwilioStandIn

from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError

__all__ = ["twilio_api"]
NUMBER = "+14155550100"
TEMPLATE = "HX" + "0123456789abcdef" * 2


def _settings(standin: TwilioStandIn, **changes: object) -> Settings:
    return Settings(**provider_settings(twilio=standin.base_url),
                    twilio_whatsapp_from=WHATSAPP_SENDER).replace(**changes)


def test_a_task_is_a_whatsapp_message_on_the_messages_endpoint(twilio_api: TwilioStandIn) -> None:
    result = deliver(_settings(twilio_api), message("whatsapp", {"number": NUMBER},
                                                     event(status="failure", exit_code=2)))
    assert result.ok and result.provider_id and result.provider_id.startswith("SM"), result.detail
    [req] = twilio_api.accepted()
    assert req.path == f"/2010-04-01/Accounts/{twilio.SID}/Messages.json"
    form = {k: v[0] for k, v in req.form().items()}
    assert (form["To"], form["From"]) == (f"whatsapp:{NUMBER}", f"whatsapp:{WHATSAPP_SENDER}")
    assert form["Body"] == ("❌ make test failed (exit 2, 3m12s) on build-1\n\n"
                            "collected 120 items\n120 passed in 190.1s\n\n"
                            "https://app.example/t/7f3a")
    # Free-form text reaches only a number that wrote in the last 24 hours (63016 otherwise).
    assert req.displayed["delivered"] is False
    twilio_api.wrote_within_24h.add(NUMBER)
    assert deliver(_settings(twilio_api), notice("whatsapp", {"number": NUMBER})).ok
    assert twilio_api.accepted()[-1].displayed["delivered"] is True


def test_with_an_approved_template_every_message_is_that_template(
    twilio_api: TwilioStandIn,
) -> None:
    settings = _settings(twilio_api, twilio_whatsapp_content_sid=TEMPLATE)
    huge = "🚀 line\n" * 3000 + "THE END"
    assert deliver(settings, message("whatsapp", {"number": NUMBER}, event(tail=huge))).ok
    [req] = twilio_api.accepted()
    form = {k: v[0] for k, v in req.form().items()}
    assert "Body" not in form and form["ContentSid"] == TEMPLATE
    text = json.loads(form["ContentVariables"])["1"]
    assert len(text) <= 1500 and "THE END" in text and text.startswith("✅ make test")
    assert req.displayed == {"to": NUMBER, "text": text, "template": TEMPLATE,
                             "delivered": True}


def test_a_messaging_service_and_the_documented_errors(twilio_api: TwilioStandIn) -> None:
    service = "MG" + "1" * 32
    assert deliver(_settings(twilio_api, twilio_whatsapp_from=service),
                   notice("whatsapp", {"number": NUMBER})).ok
    form = twilio_api.accepted()[0].form()
    assert "From" not in form and form["MessagingServiceSid"] == [service]

    wrong = deliver(_settings(twilio_api, twilio_whatsapp_from="+15550001111"),
                    notice("whatsapp", {"number": NUMBER}))
    assert (wrong.ok, wrong.retryable, wrong.disable_channel) == (False, False, False)
    assert wrong.detail.startswith("Twilio 63007")
    twilio_api.stopped.add(NUMBER)
    stop = deliver(_settings(twilio_api), notice("whatsapp", {"number": NUMBER}))
    assert stop.disable_channel and stop.detail.startswith("Twilio 21610")
    twilio_api.answer((429, {"code": 63018, "message": "Rate limit exceeded"}, {}))
    busy = deliver(_settings(twilio_api), notice("whatsapp", {"number": "+14155550101"}))
    assert (busy.ok, busy.retryable) == (False, True)
    off = deliver(_settings(twilio_api, twilio_whatsapp_from=None),
                  notice("whatsapp", {"number": NUMBER}))
    assert off.detail == "WhatsApp is not configured on this server"


def test_the_sender_settings_are_checked_at_start() -> None:
    for name, value in (("TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886"),
                        ("TWILIO_WHATSAPP_CONTENT_SID", "HX123")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({f"CLAUDE_NOTIFY_SERVER_{name}": value}).validate()


@pytest.fixture
def settings(settings: Settings, twilio_api: TwilioStandIn) -> Settings:
    return settings.replace(**provider_settings(twilio=twilio_api.base_url),
                            twilio_whatsapp_from=WHATSAPP_SENDER)


def test_a_number_is_confirmed_by_a_code_sent_on_whatsapp_then_gets_tasks(
    client: TestClient, twilio_api: TwilioStandIn, make_user: Callable[..., Account],
) -> None:
    free = make_user(plan="free")
    refused = client.post("/v1/channels", headers=free.headers,
                          json={"type": "whatsapp", "config": {"number": NUMBER}})
    assert refused.status_code == 403 and "needs pro" in refused.text

    user = make_user(plan="pro")
    made = client.post("/v1/channels", headers=user.headers,
                       json={"type": "whatsapp", "config": {"number": NUMBER}})
    assert made.status_code == 201 and made.json()["verified"] is False, made.text
    channel = made.json()["id"]
    [sent] = wait_for(twilio_api.accepted, what="the code on WhatsApp")
    assert sent.form()["To"] == [f"whatsapp:{NUMBER}"]
    code = re.search(r"code: ([A-Z0-9]{8})", sent.displayed["text"])
    assert code is not None, sent.displayed
    assert client.post(f"/v1/channels/{channel}/test", headers=user.headers).status_code == 409
    done = client.post(f"/v1/channels/{channel}/verify", headers=user.headers,
                       json={"code": code.group(1).lower()})  # typed in any case
    assert done.status_code == 200, done.text
    assert client.post("/v1/events", headers=user.headers,
                       json=event(task_id="t-wa")).status_code == 202
    wait_for(lambda: len(twilio_api.accepted()) == 2, what="the task on WhatsApp")
    assert "https://app.example/t/t-wa" in twilio_api.accepted()[-1].displayed["text"]


def test_a_server_without_a_whatsapp_sender_refuses_the_channel_and_says_why() -> None:
    from claude_notify.cloud.server.api.errors import ApiError
    from claude_notify.cloud.server.channels import manage

    with pytest.raises(ApiError, match="TWILIO_WHATSAPP_FROM") as refused:
        manage.check_usable(Settings(**provider_settings()), "pro", "whatsapp")
    assert refused.value.status == 422
