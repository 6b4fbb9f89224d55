"""Fixtures and helpers for the channel tests: stand-ins started per test, adapters pointed at
them by base URL, messages built from task events as the delivery engine builds them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.channels.registry import load_adapter
from claude_notify.cloud.server.channels.render import headline
from claude_notify.cloud.server.delivery.http import delivery_client
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent
from standins import twilio
from standins.discord import DiscordStandIn
from standins.feishu import FeishuStandIn
from standins.ntfy import NtfyStandIn
from standins.slack import SlackStandIn
from standins.teams import TeamsStandIn
from standins.telegram import TOKEN, TelegramStandIn
from standins.twilio import TwilioStandIn

APP_URL = "https://app.example"


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn(per_chat_interval_s=0)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def discord() -> Iterator[DiscordStandIn]:
    standin = DiscordStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def ntfy() -> Iterator[NtfyStandIn]:
    standin = NtfyStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def teams() -> Iterator[TeamsStandIn]:
    standin = TeamsStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    standin = SlackStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def feishu() -> Iterator[FeishuStandIn]:
    standin = FeishuStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def twilio_api() -> Iterator[TwilioStandIn]:
    standin = TwilioStandIn()
    standin.start()
    yield standin
    standin.stop()


def provider_settings(**bases: str) -> dict[str, Any]:
    """Settings values pointing every provider at its stand-in (those given) with test creds."""
    values: dict[str, Any] = {
        "app_url": APP_URL,
        "provider_timeout_s": 5.0,
        "telegram_bot_token": TOKEN,
        "telegram_bot_username": "claude_notify_test_bot",
        "telegram_webhook_secret": "hook-secret_123",
        "twilio_account_sid": twilio.SID,
        "twilio_auth_token": twilio.TOKEN,
        "twilio_from": twilio.SENDER,
    }
    values.update({f"{provider}_api_base": url for provider, url in bases.items()})
    return values


def event(**overrides: Any) -> dict[str, Any]:
    base = TaskEvent(
        type="finished",
        source="run",
        task_id="7f3a",
        machine_id="m-1",
        status="success",
        command="make test",
        cwd="/srv/app",
        host="build-1",
        duration_s=192.0,
        exit_code=0,
        tail="collected 120 items\n120 passed in 190.1s",
    ).to_dict()
    base.update(overrides)
    return base


def message(kind: str, config: dict[str, Any], payload: dict[str, Any] | None = None) -> Message:
    """An event message exactly as the delivery engine renders one."""
    payload = payload or event()
    subject = headline(payload)
    return Message(
        id=str(uuid.uuid4()),
        channel_type=kind,
        config=config,
        kind="event",
        subject=subject,
        text=subject,
        html=None,
        event=payload,
    )


def notice(kind: str, config: dict[str, Any], text: str = "This channel works.") -> Message:
    return Message(
        id=str(uuid.uuid4()),
        channel_type=kind,
        config=config,
        kind="test",
        subject="claude-notify test message",
        text=text,
    )


def deliver(settings: Settings, msg: Message) -> SendResult:
    """One adapter call over a real HTTP client, as the worker makes it."""

    async def go() -> SendResult:
        async with delivery_client() as http:
            return await load_adapter(msg.channel_type, settings, http).send(msg)

    return asyncio.run(go())
