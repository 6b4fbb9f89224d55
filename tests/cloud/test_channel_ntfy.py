"""ntfy topics against the publish stand-in, and through the real app: the JSON publish with
priority, tags and the task link; a protected topic's token sent and never shown again; a
topic URL that is not one, or that points at a private address, refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.kit import deliver, event, message, notice, ntfy, provider_settings
from standins.ntfy import NtfyStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["ntfy"]


def _settings() -> Settings:
    return Settings(**provider_settings(), webhook_allow_private=True)


def test_a_failed_task_is_published_loud_with_its_tail_and_link(ntfy: NtfyStandIn) -> None:
    result = deliver(_settings(), message("ntfy", {"url": ntfy.url()},
                                          event(status="failure", exit_code=2)))
    assert result.ok and result.provider_id == "m1", result.detail
    [req] = ntfy.accepted()
    body = req.displayed["body"]
    assert (body["topic"], body["priority"], body["tags"]) == ("builds", 4, ["x"])
    assert body["title"] == "❌ make test failed (exit 2, 3m12s)"
    assert body["message"].endswith("120 passed in 190.1s")
    assert body["click"] == "https://app.example/t/7f3a"


def test_a_success_is_default_priority_and_a_huge_tail_keeps_its_end_inline(
    ntfy: NtfyStandIn,
) -> None:
    huge = "line\n" * 5000 + "THE END"
    assert deliver(_settings(), message("ntfy", {"url": ntfy.url()},
                                        event(status="success", tail=huge))).ok
    [req] = ntfy.accepted()
    assert req.displayed["body"]["priority"] == 3 and req.displayed["attachment"] is False
    assert req.displayed["body"]["message"].endswith("THE END")


def test_a_protected_topic_gets_its_token_and_a_wrong_one_is_final(ntfy: NtfyStandIn) -> None:
    ntfy.protected["secret-topic"] = "tk_right"
    ok = deliver(_settings(), notice("ntfy", {"url": ntfy.url("secret-topic"),
                                              "secret": "tk_right"}))
    assert ok.ok
    wrong = deliver(_settings(), notice("ntfy", {"url": ntfy.url("secret-topic"),
                                                 "secret": "tk_wrong"}))
    assert (wrong.ok, wrong.retryable) == (False, False) and "ntfy 403: forbidden" in wrong.detail
    ntfy.answer((503, {"error": "busy"}, {}))
    busy = deliver(_settings(), notice("ntfy", {"url": ntfy.url()}))
    assert (busy.ok, busy.retryable) == (False, True)


def test_a_private_address_is_refused_unless_the_operator_allows_it(ntfy: NtfyStandIn) -> None:
    closed = Settings(**provider_settings())
    refused = deliver(closed, notice("ntfy", {"url": ntfy.url()}))
    assert refused.ok is False and "private or loopback" in refused.detail
    assert ntfy.count() == 0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(**provider_settings())


def test_topics_are_checked_when_added_and_the_token_never_shown_again(
    client: TestClient, ntfy: NtfyStandIn, make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    for url in ("https://ntfy.sh/", "https://ntfy.sh/a/b", "https://ntfy.sh/topic?x=1",
                "ftp://ntfy.sh/topic", "https://ntfy.sh/to pic"):
        refused = client.post("/v1/channels", headers=user.headers,
                              json={"type": "ntfy", "config": {"url": url}})
        assert refused.status_code == 422, url
    ntfy.protected["builds"] = "tk_abc123"
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "ntfy", "config": {"url": ntfy.url(), "secret": "tk_abc123"}})
    assert made.status_code == 201, made.text
    channel = made.json()["id"]
    listed = client.get(f"/v1/channels/{channel}", headers=user.headers).json()
    assert "secret" not in listed["config"] and listed["verified"] is True
    assert client.post(f"/v1/channels/{channel}/test", headers=user.headers).status_code == 202
    wait_for(lambda: ntfy.accepted(), what="the test message on the topic")
