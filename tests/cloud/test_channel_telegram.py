"""Telegram adapter against the Bot API stand-in: what a chat would display, and how every
documented answer is classified."""

from __future__ import annotations

from standins.kit import deliver, event, message, notice, provider_settings, telegram
from standins.telegram import TelegramStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]


def _settings(standin: TelegramStandIn) -> Settings:
    return Settings(**provider_settings(telegram=standin.base_url))


def test_event_is_html_with_the_tail_in_pre_and_a_button_to_the_task(
    telegram: TelegramStandIn,
) -> None:
    result = deliver(_settings(telegram), message("telegram", {"chat_id": 42}))
    assert result.ok, result.detail
    [req] = telegram.accepted()
    assert req.path == f"/bot{telegram.token}/sendMessage"
    assert req.headers["content-type"] == "application/json"
    shown = req.displayed
    assert shown["chat_id"] == 42
    assert shown["text"].startswith("✅ make test finished (exit 0, 3m12s)\nHost: build-1")
    assert shown["text"].endswith("collected 120 items\n120 passed in 190.1s")
    kinds = {e["type"] for e in shown["entities"]}
    assert {"b", "pre"} <= kinds
    assert shown["reply_markup"] == {
        "inline_keyboard": [[{"text": "Open task", "url": "https://app.example/t/7f3a"}]]
    }
    assert req.json()["link_preview_options"] == {"is_disabled": True}
    assert result.provider_id == "1000"


def test_long_tail_is_trimmed_from_the_top_with_a_marker(telegram: TelegramStandIn) -> None:
    lines = [f"line {i:05d} " + "x" * 40 for i in range(2000)]
    payload = event(tail="\n".join(lines))
    result = deliver(_settings(telegram), message("telegram", {"chat_id": 1}, payload))
    assert result.ok, result.detail
    text = telegram.accepted()[0].displayed["text"]
    assert len(text.encode("utf-16-le")) // 2 <= 4096
    assert "characters trimmed]" in text
    assert text.endswith(lines[-1])  # the end of the log survives
    assert lines[0] not in text
    assert text.startswith("✅ make test finished")  # the headline is never cut


def test_rate_limit_answers_retry_after(telegram: TelegramStandIn) -> None:
    telegram.per_chat_interval_s = 30
    settings = _settings(telegram)
    assert deliver(settings, message("telegram", {"chat_id": 5})).ok
    second = deliver(settings, message("telegram", {"chat_id": 5}))
    assert not second.ok and second.retryable
    assert second.retry_after is not None and 25 <= second.retry_after <= 30
    assert second.detail.startswith("Telegram 429: Too Many Requests: retry after")


def test_migrated_group_is_followed(telegram: TelegramStandIn) -> None:
    telegram.migrated[-100] = -1001234567890
    result = deliver(_settings(telegram), message("telegram", {"chat_id": -100}))
    assert result.ok, result.detail
    assert [r.status for r in telegram.requests] == [400, 200]
    assert telegram.accepted()[0].displayed["chat_id"] == -1001234567890
    assert result.channel_update == {"chat_id": -1001234567890}  # for the engine to keep
    again = deliver(_settings(telegram), message("telegram", {"chat_id": -1001234567890}))
    assert again.ok and again.channel_update is None


def test_blocked_bot_and_missing_chat_are_permanent_and_disable(
    telegram: TelegramStandIn,
) -> None:
    telegram.blocked.add(7)
    telegram.missing.add(8)
    settings = _settings(telegram)
    blocked = deliver(settings, message("telegram", {"chat_id": 7}))
    missing = deliver(settings, message("telegram", {"chat_id": 8}))
    for result in (blocked, missing):
        assert not result.ok and not result.retryable and result.disable_channel
    assert blocked.detail == "Telegram 403: Forbidden: bot was blocked by the user"
    assert missing.detail == "Telegram 400: Bad Request: chat not found"


def test_server_errors_and_outages_retry(telegram: TelegramStandIn) -> None:
    settings = _settings(telegram)
    telegram.answer((502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, {}))
    assert deliver(settings, message("telegram", {"chat_id": 1})).retryable
    down = Settings(**provider_settings(telegram="http://127.0.0.1:9"))
    result = deliver(down, message("telegram", {"chat_id": 1}))
    assert result.retryable and "ConnectError" in result.detail


def test_wrong_token_is_permanent_without_disabling_the_users_channel(
    telegram: TelegramStandIn,
) -> None:
    settings = _settings(telegram).replace(telegram_bot_token="999:wrong")  # noqa: S106
    result = deliver(settings, message("telegram", {"chat_id": 1}))
    assert not result.ok and not result.retryable and not result.disable_channel
    assert result.detail == "Telegram 401: Unauthorized"


def test_unlinked_chat_and_unconfigured_bot_send_nothing(telegram: TelegramStandIn) -> None:
    assert "no Telegram chat linked" in deliver(_settings(telegram), notice("telegram", {})).detail
    bare = _settings(telegram).replace(telegram_bot_token=None)
    assert deliver(bare, notice("telegram", {"chat_id": 1})).detail.startswith("Telegram is not")
    assert telegram.count() == 0


def test_test_message_is_shown_literally(telegram: TelegramStandIn) -> None:
    result = deliver(_settings(telegram), notice("telegram", {"chat_id": 3}, "a <b>c</b> & d"))
    assert result.ok, result.detail
    shown = telegram.accepted()[0].displayed
    assert shown["text"] == "claude-notify test message\na <b>c</b> & d"
    assert "reply_markup" not in telegram.accepted()[0].json()
