"""Slack incoming webhooks against the stand-in (which checks Block Kit's limits), and through
the real app: only hooks.slack.com URLs are taken, hostile output shows as text and pings
nobody, a gone webhook switches the channel off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.kit import deliver, event, message, notice, provider_settings, slack
from standins.slack import SlackStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["slack"]
HOSTILE = ("<!channel> <@U12345> <https://evil.example|click> & ``` breakout ```\n"
           "*bold* \x1b[31mred\x1b[0m")


def _settings(standin: SlackStandIn) -> Settings:
    return Settings(**provider_settings(slack=standin.base_url))


def test_a_task_is_a_header_its_facts_the_tail_in_a_code_block_and_a_button(
    slack: SlackStandIn,
) -> None:
    result = deliver(_settings(slack), message("slack", {"webhook_url": slack.url()},
                                               event(status="failure", exit_code=2)))
    assert result.ok, result.detail
    [req] = slack.accepted()
    assert req.path == "/services/T0001/B0001/Xsecret42"
    body = req.json()
    header, context, tail, actions = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                 "text": "❌ make test failed (exit 2, 3m12s)"}}
    facts = [e["text"] for e in context["elements"]]
    assert facts[:2] == ["*Exit code:* 2", "*Took:* 3m12s"]
    assert tail["text"]["text"] == "```\ncollected 120 items\n120 passed in 190.1s\n```"
    [button] = actions["elements"]
    assert (button["text"]["text"], button["url"]) == ("Open task", "https://app.example/t/7f3a")
    assert body["text"] == "❌ make test failed (exit 2, 3m12s)"


def test_hostile_output_pings_nobody_links_nothing_and_stays_in_its_block(
    slack: SlackStandIn,
) -> None:
    payload = event(status="failure", exit_code=1, tail=HOSTILE, message=HOSTILE,
                    command="<!here> deploy", cwd="<@U999>")
    assert deliver(_settings(slack), message("slack", {"webhook_url": slack.url()},
                                             payload)).ok
    [req] = slack.accepted()
    assert req.displayed["pings"] == [] and req.displayed["links"] == []
    tail = req.json()["blocks"][-2]["text"]["text"]
    assert tail.startswith("```\n") and tail.endswith("\n```")
    assert tail[3:-3].count("```") == 0  # the output's fences cannot close the block
    assert "&lt;!channel&gt;" in tail and "\x1b" not in tail


def test_every_block_kit_limit_holds_for_huge_values(slack: SlackStandIn) -> None:
    huge = "x" * 50_000
    payload = event(status="failure", exit_code=1, tail=huge, message=huge, command=huge,
                    cwd=huge, host=huge)
    result = deliver(_settings(slack), message("slack", {"webhook_url": slack.url()}, payload))
    assert result.ok, result.detail  # the stand-in refuses anything over a limit
    tail = slack.accepted()[0].json()["blocks"][-2]["text"]["text"]
    assert tail.endswith("x\n```")  # the tail's end is what was kept


@pytest.mark.parametrize(("answer", "retryable", "off"), [
    ((429, b"rate_limited", {"Retry-After": "3"}), True, False),
    ((500, b"rollup_error", {}), True, False),
    ((400, b"invalid_payload", {}), False, False),
    ((404, b"no_service", {}), False, True),
    ((410, b"channel_is_archived", {}), False, True),
    ((403, b"action_prohibited", {}), False, False),
])
def test_slacks_answers_are_classified(slack: SlackStandIn, answer: tuple[int, bytes,
                                       dict[str, str]], retryable: bool, off: bool) -> None:
    slack.answer(answer)
    result = deliver(_settings(slack), notice("slack", {"webhook_url": slack.url()}))
    assert (result.ok, result.retryable, result.disable_channel) == (False, retryable, off)
    assert answer[1].decode() in result.detail
    if answer[0] == 429:
        assert result.retry_after == 3.0


@pytest.fixture
def settings(settings: Settings, slack: SlackStandIn) -> Settings:
    return settings.replace(**provider_settings(slack=slack.base_url))


def test_only_a_slack_webhook_url_is_taken_and_an_archived_channel_turns_it_off(
    client: TestClient, slack: SlackStandIn, make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    for url in ("https://evil.example/services/T0001/B0001/Xsecret42",
                "https://hooks.slack.com/other/path", "https://hooks.slack.com.evil/services/T/B/x",
                "https://hooks.slack.com/services/../../api/evil"):
        refused = client.post("/v1/channels", headers=user.headers, json={
            "type": "slack", "config": {"webhook_url": url}})
        assert refused.status_code == 422, url
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "slack", "config": {"webhook_url": slack.url()}})
    assert made.status_code == 201 and made.json()["verified"] is True
    channel = made.json()["id"]
    assert client.post(f"/v1/channels/{channel}/test", headers=user.headers).status_code == 202
    wait_for(lambda: slack.accepted(), what="the test message")
    slack.archived.add("T0001/B0001")
    assert client.post(f"/v1/channels/{channel}/test", headers=user.headers).status_code == 202
    off = wait_for(lambda: (lambda c: c if not c["enabled"] else None)(
        client.get(f"/v1/channels/{channel}", headers=user.headers).json()),
        what="the channel to be switched off")
    assert "channel_is_archived" in (off["disabled_reason"] or "")
