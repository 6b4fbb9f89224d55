"""The relay's limits and the confirmation limits are server settings like the others: read from
``CLAUDE_NOTIFY_SERVER_*`` by ``Settings.from_env``, checked at start (the error names the
variable) and taken from the app's settings, never from the environment per request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.relay.queue import RelayPolicy
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import RELAY_BANNED, Settings
from claude_notify.errors import ConfigError

PREFIX = "CLAUDE_NOTIFY_SERVER_"


def test_the_relay_settings_are_read_from_the_environment() -> None:
    env = {PREFIX + "RELAY_TTL_S": "0", PREFIX + "RELAY_PER_MINUTE": "3",
           PREFIX + "RELAY_BANNED": " Sudo , ,curl|sh", PREFIX + "RELAY_POLL_S": "0.5",
           PREFIX + "RELAY_IDLE_S": "7", PREFIX + "RELAY_REPLY_TOKEN_TTL_S": "60",
           PREFIX + "VERIFICATIONS_PER_HOUR": "2", PREFIX + "LINK_TTL_S": "120"}
    settings = Settings.from_env(env).validate()
    assert (settings.verifications_per_hour, settings.link_ttl_s) == (2, 120.0)
    assert RelayPolicy.of(settings) == RelayPolicy(
        ttl_s=0.0, per_minute=3, banned=("sudo", "curl|sh"), poll_s=0.5, idle_s=7.0,
        reply_token_ttl_s=60.0)
    assert RelayPolicy.from_env(env) == RelayPolicy.of(settings)
    assert RelayPolicy.of(Settings()).banned == RELAY_BANNED
    assert RelayPolicy.of(Settings.from_env({PREFIX + "RELAY_BANNED": ""})).banned == ()


@pytest.mark.parametrize(("name", "value"), [
    ("RELAY_PER_MINUTE", "many"), ("RELAY_PER_MINUTE", "0"), ("RELAY_TTL_S", "-1"),
    ("RELAY_POLL_S", "0"), ("RELAY_IDLE_S", "soon"), ("RELAY_REPLY_TOKEN_TTL_S", "-5"),
    ("VERIFICATIONS_PER_HOUR", "0"), ("LINK_TTL_S", "0"),
])
def test_a_bad_value_fails_at_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        create_app(Settings.from_env({PREFIX + name: value, "DATABASE_URL": "sqlite://"}))


@pytest.fixture
def started(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """The app on the suite's database with some settings changed."""
    opened: list[tuple[Runtime, TestClient]] = []

    def start(**changes: object) -> TestClient:
        runtime = Runtime.build(settings.replace(**changes))
        client = TestClient(create_app(runtime=runtime))
        opened.append((runtime, client.__enter__()))
        return client

    yield start
    for runtime, client in opened:
        client.__exit__(None, None, None)
        runtime.close()


def test_the_relay_takes_its_limits_from_the_apps_settings_not_the_environment(
    started: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX + "RELAY_PER_MINUTE", "50")
    client = started(relay_per_minute=3, relay_idle_s=4.0)
    policy = relay_of(client.app.state).policy
    assert (policy.per_minute, policy.idle_s) == (3, 4.0)


def test_confirmation_messages_are_limited_by_the_setting(
    started: Callable[..., TestClient], make_user: Callable[..., Account]
) -> None:
    client, user = started(verifications_per_hour=2), make_user()
    made = client.post("/v1/channels", json={"type": "email", "config": {
        "address": "ada@example.com"}}, headers=user.headers)
    assert made.status_code == 201, made.text
    again = f"/v1/channels/{made.json()['id']}/verification"
    assert client.post(again, headers=user.headers).status_code == 202
    refused = client.post(again, headers=user.headers)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"


def test_a_link_code_lives_as_long_as_the_setting(
    started: Callable[..., TestClient], make_user: Callable[..., Account]
) -> None:
    client, user = started(link_ttl_s=120.0, discord_public_key="ab" * 32), make_user(plan="pro")
    made = client.post("/v1/channels", json={"type": "discord", "config": {
        "webhook_url": "https://discord.com/api/webhooks/1/abc"}}, headers=user.headers)
    assert made.status_code == 201, made.text
    asked = datetime.now(timezone.utc)
    link = client.post(f"/v1/channels/{made.json()['id']}/link", headers=user.headers)
    assert link.status_code == 201, link.text
    expires = datetime.fromisoformat(link.json()["expires_at"].replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    assert 110 <= (expires - asked).total_seconds() <= 130
