"""SMS adapter against the Twilio stand-in: form encoding, Basic auth, segments, error codes."""

from __future__ import annotations

from standins import twilio
from standins.kit import deliver, event, message, notice, provider_settings, twilio_api
from standins.twilio import TwilioStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["twilio_api"]
NUMBER = "+14155550100"


def _settings(standin: TwilioStandIn) -> Settings:
    return Settings(**provider_settings(twilio=standin.base_url))


def test_event_is_a_short_gsm7_text_with_basic_auth(twilio_api: TwilioStandIn) -> None:
    result = deliver(_settings(twilio_api), message("sms", {"number": NUMBER}))
    assert result.ok, result.detail
    [req] = twilio_api.accepted()
    assert req.path == f"/2010-04-01/Accounts/{twilio.SID}/Messages.json"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    shown = req.displayed
    assert shown["body"] == (
        "make test finished (exit 0, 3m12s) on build-1 https://app.example/t/7f3a"
    )
    assert (shown["encoding"], shown["segments"]) == ("GSM-7", 1)
    assert req.form()["From"] == [twilio.SENDER]
    assert result.provider_id is not None and result.provider_id.startswith("SM")


def test_long_or_unicode_text_stays_within_two_segments(twilio_api: TwilioStandIn) -> None:
    settings = _settings(twilio_api)
    for command in ("x" * 1000, "デプロイ" * 200, "{[~]}" * 200, "build 🚀" * 100):
        result = deliver(settings, message("sms", {"number": NUMBER}, event(command=command)))
        assert result.ok, result.detail
    for req in twilio_api.accepted():
        assert req.displayed["segments"] <= 2, req.displayed


def test_messaging_service_sid_replaces_from(twilio_api: TwilioStandIn) -> None:
    settings = _settings(twilio_api).replace(twilio_from="MG" + "1" * 32)
    assert deliver(settings, notice("sms", {"number": NUMBER})).ok
    form = twilio_api.accepted()[0].form()
    assert "From" not in form and form["MessagingServiceSid"] == ["MG" + "1" * 32]


def test_documented_codes_are_classified(twilio_api: TwilioStandIn) -> None:
    settings = _settings(twilio_api)
    twilio_api.stopped.add(NUMBER)
    stop = deliver(settings, notice("sms", {"number": NUMBER}))
    assert not stop.retryable and stop.disable_channel
    assert stop.detail == "Twilio 21610: Attempt to send to unsubscribed recipient"
    invalid = deliver(settings, notice("sms", {"number": "+1"}))
    assert not invalid.retryable and invalid.detail.startswith("Twilio 21211")
    wrong = settings.replace(twilio_auth_token="nope")  # noqa: S106 - a deliberately bad one
    auth = deliver(wrong, notice("sms", {"number": "+1555"}))
    assert not auth.retryable and not auth.disable_channel
    assert auth.detail == "Twilio 20003: Authenticate"
    twilio_api.answer((429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                       {"Retry-After": "3"}))  # fmt: skip
    busy = deliver(settings, notice("sms", {"number": "+14155550101"}))
    assert busy.retryable and busy.retry_after == 3.0
    twilio_api.answer((500, {"code": 20500, "message": "Internal Server Error", "status": 500}, {}))
    assert deliver(settings, notice("sms", {"number": "+14155550101"})).retryable


def test_unconfigured_sms_sends_nothing(twilio_api: TwilioStandIn) -> None:
    settings = _settings(twilio_api).replace(twilio_account_sid=None)
    assert deliver(settings, notice("sms", {"number": NUMBER})).detail.startswith("SMS is not")
    assert twilio_api.count() == 0
