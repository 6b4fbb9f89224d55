"""Hostile tails and commands: every channel sends a valid request that shows them literally.

Each case goes to the stand-in, which parses the request the way the provider does (Telegram's
HTML entities, Discord's mention rules, Feishu's ``<at>`` tags, Twilio's form encoding) and
records what would have been displayed.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser

import pytest
from standins.discord import DiscordStandIn
from standins.feishu import FeishuStandIn
from standins.kit import (
    deliver,
    discord,
    event,
    feishu,
    message,
    provider_settings,
    telegram,
    twilio_api,
)
from standins.telegram import TelegramStandIn
from standins.twilio import TwilioStandIn

from claude_notify.cloud.server.channels.email import build_email
from claude_notify.cloud.server.settings import Settings

__all__ = ["discord", "feishu", "telegram", "twilio_api"]

HOSTILE = {
    "html": "<b>bold?</b> <a href='javascript:alert(1)'>x</a> &amp; </pre><script>",
    "markdown": "**not bold** _x_ `tick` ```fence``` [link](http://evil) ~~s~~ \\ | > # -",
    "everyone": "@everyone @here <@123> <@&456> hello",
    "at_all": '<at user_id="all"></at> <at id=all></at> ping',
    "emoji": "🔥" * 5000 + "end",
    "invalid_utf8": b"ok \xff\xfe bytes \xc3(".decode("utf-8", "surrogateescape") + "\x00\x1b[31m",
}


def _expected(tail: str) -> str:
    """What a reader should see: undecodable bytes as U+FFFD, control characters gone."""
    valid = tail.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return valid.replace("\x00", "").replace("\x1b", "")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_telegram_shows_hostile_tails_literally(name: str, telegram: TelegramStandIn) -> None:
    tail = HOSTILE[name]
    settings = Settings(**provider_settings(telegram=telegram.base_url))
    result = deliver(settings, message("telegram", {"chat_id": 9}, event(tail=tail)))
    assert result.ok, result.detail
    shown = telegram.accepted()[0].displayed
    pre = [e for e in shown["entities"] if e["type"] == "pre"]
    assert len(pre) == 1 and {e["type"] for e in shown["entities"]} <= {"b", "pre"}
    if name == "emoji":
        assert shown["text"].endswith("🔥end") and "characters trimmed]" in shown["text"]
    else:
        assert shown["text"].endswith(_expected(tail))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_discord_shows_hostile_tails_literally(name: str, discord: DiscordStandIn) -> None:
    tail = HOSTILE[name]
    settings = Settings(**provider_settings(discord=discord.base_url))
    payload = event(tail=tail, command=f"run {tail[:100]}")
    result = deliver(settings, message("discord", {"webhook_url": discord.url()}, payload))
    assert result.ok, result.detail
    shown = discord.accepted()[0].displayed
    assert shown["pings"] == []  # allowed_mentions: nothing pings, even @everyone
    description = shown["body"]["embeds"][0]["description"]
    assert description.startswith("```\n") and description.endswith("\n```")
    inner = description[4:-4]
    assert "```" not in inner  # the fence cannot be closed early by the tail
    if name != "emoji":
        assert inner.replace("\u200b", "") == _expected(tail)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_feishu_shows_hostile_tails_literally(name: str, feishu: FeishuStandIn) -> None:
    tail = HOSTILE[name]
    settings = Settings(**provider_settings(feishu=feishu.base_url))
    payload = event(tail=tail, command=f"run {tail[:100]}", message=tail[:200])
    result = deliver(settings, message("feishu", {"webhook_url": feishu.url()}, payload))
    assert result.ok, result.detail
    shown = feishu.accepted()[0].displayed
    assert shown["mentions"] == []  # no <at> tag reaches lark_md; the text shows it literally
    if name != "emoji":
        assert shown["text"].replace("\u200b", "").endswith(_expected(tail))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sms_sends_hostile_commands_as_plain_text(name: str, twilio_api: TwilioStandIn) -> None:
    settings = Settings(**provider_settings(twilio=twilio_api.base_url))
    payload = event(command=HOSTILE[name], tail=HOSTILE[name])
    result = deliver(settings, message("sms", {"number": "+14155550100"}, payload))
    assert result.ok, result.detail
    assert twilio_api.accepted()[0].displayed["segments"] <= 2


class _Tags(HTMLParser):
    """The tags of an HTML body, their attributes, and the text a mail client would show."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.pre = ""
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs
        self._in_pre = tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre += data


@pytest.mark.parametrize("headed_by", ["command", "title"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_default_email_shows_hostile_values_literally(name: str, headed_by: str) -> None:
    value = HOSTILE[name]
    payload = event(command="", title="", message=value[:200], tail=value, cwd=value[:300])
    payload[headed_by] = f"run {value[:100]}"  # the subject and headline name it
    mail = build_email(message("email", {"address": "dev@example.com"}, payload),
                       sender="notify@example.com")  # fmt: skip
    wire = mail.as_bytes()  # the MIME as sent: headers folded and encoded by the library
    parsed = BytesParser(policy=policy.default).parsebytes(wire)
    assert isinstance(parsed, EmailMessage)
    assert "\n" not in str(parsed["Subject"]) and set(parsed) >= {"From", "To", "Subject"}
    text, page = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and page is not None
    plain = str(text.get_content()).replace("\r\n", "\n")
    assert plain.startswith("✅ run ") and "\nLast output:\n" in plain
    assert plain.rstrip("\n").endswith(_expected(value))
    shown = _Tags()
    shown.feed(str(page.get_content()))
    # Only the writer's own tags, and the one attribute the footer carries: no value made markup.
    assert shown.tags <= {"html", "body", "div", "strong", "br", "pre", "code", "p"}
    assert shown.attrs == [("style", "color:#888")]
    assert shown.pre.replace("\r\n", "\n") == _expected(value)
