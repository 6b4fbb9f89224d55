"""Microsoft Teams workflows against the stand-in: an Adaptive Card whose every piece of task
output is a plain text run (nothing Teams reads as Markdown carries it), within 28 KB; only
Microsoft-hosted workflow URLs are taken, and their signature is never shown again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.kit import deliver, event, message, notice, provider_settings, teams
from standins.teams import TeamsStandIn

from claude_notify.cloud.server.settings import Settings

__all__ = ["teams"]
HOSTILE = "[click me](https://evil.example) **bold** <at>everyone</at> \x1b[31mred"


def _settings(standin: TeamsStandIn) -> Settings:
    return Settings(**provider_settings(), teams_api_base=standin.base_url)


def test_a_task_is_a_card_with_its_facts_tail_and_a_button(teams: TeamsStandIn) -> None:
    result = deliver(_settings(teams), message("teams", {"webhook_url": teams.url()},
                                               event(status="failure", exit_code=2)))
    assert result.ok, result.detail
    [req] = teams.accepted()
    card = req.displayed["card"]
    runs = [[i["text"] for i in block["inlines"]] for block in card["body"]]
    assert runs[0] == ["❌ make test failed (exit 2, 3m12s)"]
    assert runs[1][0].startswith("Exit code: 2   Took: 3m12s")
    assert runs[-1] == ["collected 120 items\n120 passed in 190.1s"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open task",
                                "url": "https://app.example/t/7f3a"}]
    assert req.displayed["markdown"] == []  # nothing goes where Markdown is read


def test_hostile_output_is_text_and_a_huge_tail_fits_with_its_end(teams: TeamsStandIn) -> None:
    huge = HOSTILE + "\n" + "y" * 200_000 + "THE END"
    payload = event(status="failure", exit_code=1, tail=huge, message=HOSTILE, command=HOSTILE)
    assert deliver(_settings(teams), message("teams", {"webhook_url": teams.url()}, payload)).ok
    [req] = teams.accepted()
    assert req.displayed["links"] == [] and req.displayed["markdown"] == []
    assert len(req.body) < 28 * 1024
    tail = req.displayed["card"]["body"][-1]["inlines"][0]["text"]
    assert tail.endswith("THE END") and "\x1b" not in tail


@pytest.mark.parametrize(("answer", "retryable", "off"), [
    ((429, None, {"Retry-After": "2"}), True, False),
    ((502, None, {}), True, False),
    ((401, {"error": {"code": "DirectApiInvalidAuthorizationSignature"}}, {}), False, False),
    ((404, {"error": {"code": "WorkflowNotFound"}}, {}), False, True),
])
def test_teams_answers_are_classified(teams: TeamsStandIn, answer: tuple[int, object,
                                      dict[str, str]], retryable: bool, off: bool) -> None:
    teams.answer(answer)  # type: ignore[arg-type]
    result = deliver(_settings(teams), notice("teams", {"webhook_url": teams.url()}))
    assert (result.ok, result.retryable, result.disable_channel) == (False, retryable, off)


@pytest.fixture
def settings(settings: Settings, teams: TeamsStandIn) -> Settings:
    return settings.replace(**provider_settings(), teams_api_base=teams.base_url)


def test_only_a_microsoft_workflow_url_is_taken_and_its_signature_is_not_shown(
    client: TestClient, teams: TeamsStandIn, make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    for url in (teams.url(host="evil.example"), teams.url(host="logic.azure.com.evil.example"),
                teams.url().split("&sig=")[0], "https://prod-00.westus.logic.azure.com/other"):
        refused = client.post("/v1/channels", headers=user.headers,
                              json={"type": "teams", "config": {"webhook_url": url}})
        assert refused.status_code == 422, url
    made = client.post("/v1/channels", headers=user.headers,
                       json={"type": "teams", "config": {"webhook_url": teams.url()}})
    assert made.status_code == 201, made.text
    channel = made.json()["id"]
    read = client.get(f"/v1/channels/{channel}", headers=user.headers).json()
    assert "S1GnAtUrE" not in str(read) and read["config"]["webhook_url"].endswith("/invoke")
    assert "S1GnAtUrE" not in str(client.get("/v1/channels", headers=user.headers).json())
    assert client.post(f"/v1/channels/{channel}/test", headers=user.headers).status_code == 202
    wait_for(lambda: teams.accepted(), what="the test card")
