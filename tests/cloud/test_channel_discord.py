"""Discord adapter against the execute-webhook stand-in."""

from __future__ import annotations

from standins.discord import DiscordStandIn
from standins.kit import deliver, discord, event, message, notice, provider_settings

from claude_notify.cloud.server.settings import Settings

__all__ = ["discord"]


def _settings(standin: DiscordStandIn) -> Settings:
    return Settings(**provider_settings(discord=standin.base_url))


def test_embed_carries_title_colour_fields_tail_and_host(discord: DiscordStandIn) -> None:
    config = {"webhook_url": discord.url()}
    result = deliver(
        _settings(discord), message("discord", config, event(status="failure", exit_code=2))
    )
    assert result.ok, result.detail
    [req] = discord.accepted()
    assert req.path == "/api/webhooks/111/tok-en_1" and req.query == {"wait": ["true"]}
    body = req.json()
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == "❌ make test failed (exit 2, 3m12s)"
    assert embed["color"] == 0xE74C3C
    assert embed["url"] == "https://app.example/t/7f3a"
    assert embed["fields"][:2] == [
        {"name": "Exit code", "value": "2", "inline": True},
        {"name": "Duration", "value": "3m12s", "inline": True},
    ]
    assert embed["footer"] == {"text": "build-1"}
    assert embed["description"] == "```\ncollected 120 items\n120 passed in 190.1s\n```"
    assert result.provider_id is not None and result.provider_id.isdigit()


def test_every_embed_limit_holds_for_huge_values(discord: DiscordStandIn) -> None:
    huge = event(command="c" * 5000, cwd="/d" * 3000, host="h" * 3000, tail="t" * 20000,
                 message="m" * 5000)  # fmt: skip
    result = deliver(_settings(discord), message("discord", {"webhook_url": discord.url()}, huge))
    assert result.ok, result.detail  # the stand-in answers 400 for any broken limit


def test_rate_limit_prefers_the_retry_after_header(discord: DiscordStandIn) -> None:
    settings = _settings(discord)
    config = {"webhook_url": discord.url()}
    discord.answer(DiscordStandIn.rate_limited(2.5))
    limited = deliver(settings, message("discord", config))
    assert limited.retryable and limited.retry_after == 2.5
    # discord-api-docs #4722: a body value in milliseconds is clamped, not obeyed for hours
    status, body, _ = DiscordStandIn.rate_limited(64570.0, header=False)
    discord.answer((status, body, {}))
    clamped = deliver(settings, message("discord", config))
    assert clamped.retryable and clamped.retry_after == 3600.0


def test_deleted_webhook_is_permanent_and_disables(discord: DiscordStandIn) -> None:
    gone = "https://discord.com/api/webhooks/999/nope"
    result = deliver(_settings(discord), message("discord", {"webhook_url": gone}))
    assert not result.ok and not result.retryable and result.disable_channel
    assert result.detail == "Discord 404: Unknown Webhook"


def test_broken_limits_are_permanent_with_the_field(discord: DiscordStandIn) -> None:
    errors = {"embeds.0.title": "Must be 256 or fewer in length."}
    discord.answer((400, {"code": 50035, "message": "Invalid Form Body", "errors": errors}, {}))
    result = deliver(_settings(discord), message("discord", {"webhook_url": discord.url()}))
    assert not result.ok and not result.retryable and not result.disable_channel
    assert "Invalid Form Body" in result.detail and "embeds.0.title" in result.detail


def test_5xx_retries(discord: DiscordStandIn) -> None:
    discord.answer((503, {"message": "upstream"}, {}))
    result = deliver(_settings(discord), message("discord", {"webhook_url": discord.url()}))
    assert result.retryable


def test_only_the_path_of_the_stored_url_is_used(discord: DiscordStandIn) -> None:
    # Whatever host a stored URL names, the request goes to the operator's Discord base.
    odd = "https://discordapp.com/api/webhooks/111/tok-en_1"
    assert deliver(_settings(discord), message("discord", {"webhook_url": odd})).ok
    bad = deliver(_settings(discord), message("discord", {"webhook_url": "https://discord.com/x"}))
    assert bad.detail == "not a Discord webhook URL"


def test_test_message_shows_its_subject_once(discord: DiscordStandIn) -> None:
    config = {"webhook_url": discord.url()}
    result = deliver(_settings(discord), notice("discord", config, "It works: *not bold* @here"))
    assert result.ok, result.detail
    [embed] = discord.accepted()[0].json()["embeds"]
    assert embed["title"] == "claude-notify test message"
    assert embed["description"] == r"It works\: \*not bold\* \@here"
    assert "test message" not in embed["description"]
    assert "fields" not in embed and "url" not in embed
