"""Linking and confirming chat and SMS recipients through the real app, worker and database
(SQLite and PostgreSQL), with the provider stand-ins as the far end.

Nothing reaches a recipient before it is confirmed; a Telegram chat is learnt from the bot's
``/start CODE`` update (secret header checked), an SMS number from the code texted to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.discord import DiscordStandIn
from standins.feishu import FeishuStandIn
from standins.kit import discord, event, feishu, provider_settings, telegram, twilio_api
from standins.telegram import TelegramStandIn
from standins.twilio import TwilioStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["discord", "feishu", "telegram", "twilio_api"]
SECRET = "hook-secret_123"  # noqa: S105 - the test bot's webhook secret


@pytest.fixture
def settings(
    settings: Settings,
    telegram: TelegramStandIn,
    discord: DiscordStandIn,
    feishu: FeishuStandIn,
    twilio_api: TwilioStandIn,
) -> Settings:
    """The suite's settings with every provider pointed at its stand-in."""
    bases = {"telegram": telegram.base_url, "discord": discord.base_url,
             "feishu": feishu.base_url, "twilio": twilio_api.base_url}  # fmt: skip
    return settings.replace(**provider_settings(**bases))


def _post_event(client: TestClient, user: Account, **fields: Any) -> dict[str, Any]:
    payload = event(**fields)
    payload.pop("event_id")
    response = client.post("/v1/events", json=payload, headers=user.headers)
    assert response.status_code in (200, 201, 202), response.text
    [planned] = response.json()["notifications"]
    return dict(planned)


def _settled(client: TestClient, user: Account, notification_id: str, status: str) -> Any:
    def check() -> Any:
        row = client.get(f"/v1/notifications/{notification_id}", headers=user.headers).json()
        return row if row["status"] == status else None

    return wait_for(check, what=f"notification {notification_id} to be {status}")


def _update(text: str, chat_id: int = 555, user_id: int = 777) -> dict[str, Any]:
    chat = {"id": chat_id, "type": "private", "first_name": "Ada"}
    sender = {"id": user_id, "is_bot": False, "first_name": "Ada"}
    return {"update_id": 10000, "message": {"message_id": 1, "date": 1, "chat": chat,
                                            "from": sender, "text": text}}  # fmt: skip


@pytest.mark.usefixtures("settings")
def test_telegram_chat_is_linked_by_start_code_and_only_then_notified(
    client: TestClient, make_user: Callable[..., Account], telegram: TelegramStandIn
) -> None:
    user = make_user(plan="pro")
    created = client.post("/v1/channels", json={"type": "tg", "config": {}}, headers=user.headers)
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["verified"] is False
    chosen = client.post(
        "/v1/channels", json={"type": "telegram", "config": {"chat_id": 1}}, headers=user.headers
    )
    assert chosen.status_code == 422  # a chat id is never taken from the user

    early = _post_event(client, user)
    assert (early["status"], early["reason"]) == ("rejected", "recipient not verified yet")

    link = client.post(f"/v1/channels/{channel['id']}/link", headers=user.headers).json()
    assert link["url"] == f"https://t.me/claude_notify_test_bot?start={link['code']}"
    update = _update(link["command"])
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
        refused = client.post("/v1/telegram/webhook", json=update, headers=headers)
        assert refused.status_code == 403
    ok = client.post(
        "/v1/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert ok.status_code == 200
    linked = client.get(f"/v1/channels/{channel['id']}", headers=user.headers).json()
    assert linked["verified"] is True
    assert linked["config"] == {"chat_id": 555, "chat_type": "private", "tg_user_id": 777,
                                "chat_title": "Ada"}
    telegram.wait(1)  # the "linked" confirmation, through the outbox
    assert telegram.accepted()[0].displayed["text"].startswith("claude-notify linked")

    sent = _post_event(client, user)
    row = _settled(client, user, sent["id"], "sent")
    shown = telegram.accepted()[-1]
    assert row["provider_id"] == str(shown.displayed["message_id"])  # kept for reply mapping
    assert shown.displayed["chat_id"] == 555 and "make test" in shown.displayed["text"]
    assert telegram.requests[0].status == 200 and telegram.count() == 2

    replay = client.post(  # the code works once
        "/v1/telegram/webhook",
        json=_update(link["command"], chat_id=666),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert replay.status_code == 200
    again = client.get(f"/v1/channels/{channel['id']}", headers=user.headers).json()
    assert again["config"]["chat_id"] == 555


@pytest.mark.usefixtures("settings")
def test_blocked_bot_disables_the_channel(
    client: TestClient, make_user: Callable[..., Account], telegram: TelegramStandIn
) -> None:
    user = make_user(plan="pro")
    channel = client.post("/v1/channels", json={"type": "tg", "config": {}}, headers=user.headers)
    link = client.post(f"/v1/channels/{channel.json()['id']}/link", headers=user.headers).json()
    client.post(
        "/v1/telegram/webhook",
        json=_update(link["command"], chat_id=42),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    telegram.wait(1)
    telegram.blocked.add(42)
    sent = _post_event(client, user)
    dead = _settled(client, user, sent["id"], "dead")
    assert dead["reason"] == "Telegram 403: Forbidden: bot was blocked by the user"
    row = client.get(f"/v1/channels/{channel.json()['id']}", headers=user.headers).json()
    assert row["enabled"] is False and "blocked" in row["disabled_reason"]


@pytest.mark.usefixtures("settings")
def test_group_upgraded_to_a_supergroup_keeps_its_new_chat_id(
    client: TestClient, make_user: Callable[..., Account], telegram: TelegramStandIn
) -> None:
    user = make_user(plan="pro")
    made = client.post("/v1/channels", json={"type": "tg", "config": {}}, headers=user.headers)
    channel_url = f"/v1/channels/{made.json()['id']}"
    link = client.post(f"{channel_url}/link", headers=user.headers).json()
    update = _update(link["command"], chat_id=-4001)
    update["message"]["chat"] = {"id": -4001, "type": "group", "title": "Ops"}
    client.post(
        "/v1/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    telegram.wait(1)  # the "linked" confirmation, to the group
    supergroup = -1004001
    telegram.migrated[-4001] = supergroup  # the old id now answers 400 migrate_to_chat_id

    first = _settled(client, user, _post_event(client, user)["id"], "sent")
    assert [r.status for r in telegram.wait(3)[1:]] == [400, 200]
    assert telegram.requests[1].json()["chat_id"] == -4001
    assert first["provider_id"] == str(telegram.accepted()[-1].displayed["message_id"])
    channel = client.get(channel_url, headers=user.headers).json()
    assert channel["config"]["chat_id"] == supergroup and channel["enabled"] is True

    _settled(client, user, _post_event(client, user)["id"], "sent")
    requests = telegram.wait(4)
    assert len(requests) == 4  # straight to the supergroup: no second 400
    assert (requests[3].status, requests[3].json()["chat_id"]) == (200, supergroup)
    assert requests[3].displayed["chat_id"] == supergroup


@pytest.mark.usefixtures("settings")
def test_sms_number_is_confirmed_by_a_texted_code_then_fair_use_applies(
    client: TestClient, make_user: Callable[..., Account], twilio_api: TwilioStandIn
) -> None:
    user = make_user(plan="pro")
    number = "+14155550100"
    created = client.post(
        "/v1/channels", json={"type": "sms", "config": {"number": number}}, headers=user.headers
    ).json()
    [code_sms] = twilio_api.wait(1)
    body = code_sms.displayed["body"]
    assert code_sms.displayed["to"] == number and code_sms.displayed["segments"] == 1
    code = body.split("code: ")[1].split(".")[0]
    assert _post_event(client, user)["reason"] == "recipient not verified yet"
    assert twilio_api.count() == 1

    wrong = client.post(
        f"/v1/channels/{created['id']}/verify", json={"code": "AAAAAAAA"}, headers=user.headers
    )
    assert wrong.status_code == 422
    done = client.post(
        f"/v1/channels/{created['id']}/verify", json={"code": code}, headers=user.headers
    )
    assert done.status_code == 200 and done.json()["verified"] is True

    planned = [_post_event(client, user) for _ in range(31)]
    assert [p["status"] for p in planned].count("pending") == 30
    assert planned[-1]["reason"].startswith("SMS fair-use limit of 30 reached")
    twilio_api.wait(31)
    assert all(r.displayed["segments"] <= 2 for r in twilio_api.accepted())


@pytest.mark.usefixtures("settings")
def test_provider_urls_are_validated_when_added(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    for kind, url, problem in [
        ("discord", "https://discord.com/channels/1/2", "must look like https://discord.com/api"),
        ("discord", "https://discord.com.evil.io/api/webhooks/1/a", "must be under discord.com"),
        ("feishu", "https://open.feishu.cn/open-apis/other", "must look like https://open"),
        ("feishu", "http://10.0.0.1/open-apis/bot/v2/hook/x", "host must be under"),
    ]:
        response = client.post(
            "/v1/channels", json={"type": kind, "config": {"webhook_url": url}},
            headers=user.headers,
        )  # fmt: skip
        assert response.status_code == 422 and problem in response.text, (url, response.text)


@pytest.mark.usefixtures("settings")
def test_send_a_test_message_reports_the_providers_error_in_one_line(
    client: TestClient,
    make_user: Callable[..., Account],
    discord: DiscordStandIn,
    feishu: FeishuStandIn,
) -> None:
    user = make_user(plan="pro")
    checks = [
        ("discord", "https://discord.com/api/webhooks/999/deleted", "Discord 404: Unknown Webhook"),
        ("feishu", feishu.url("removed"),
         "Feishu 19001: param invalid: incoming webhook access token invalid"),
    ]  # fmt: skip
    for kind, url, reason in checks:
        channel = client.post(
            "/v1/channels", json={"type": kind, "config": {"webhook_url": url}},
            headers=user.headers,
        ).json()  # fmt: skip
        queued = client.post(f"/v1/channels/{channel['id']}/test", headers=user.headers)
        assert queued.status_code == 202
        dead = _settled(client, user, queued.json()["notification_id"], "dead")
        assert dead["reason"] == reason and "\n" not in dead["reason"]
    good = client.post(
        "/v1/channels", json={"type": "discord", "config": {"webhook_url": discord.url()}},
        headers=user.headers,
    ).json()  # fmt: skip
    queued = client.post(f"/v1/channels/{good['id']}/test", headers=user.headers).json()
    sent = _settled(client, user, queued["notification_id"], "sent")
    assert sent["provider_id"] == "1300000000000000000"  # the stand-in's first message id
