"""Slack notification buttons through the real app, worker and database (SQLite and PostgreSQL):
the Slack stand-in receives the notification (its buttons within Block Kit's limits) and the
answers posted to each press's ``response_url``. A press is read only when Slack's ``v0``
signature is good and recent; only the Slack account linked to the notification's channel
(``team:user``) queues anything; a replayed press does nothing again; the answer goes only to
Slack."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.kit import deliver, message, provider_settings, slack
from standins.slack import SlackStandIn
from test_relay_slack import MACHINE, SECRET, Linked, _command, _commands, _signed

from claude_notify.cloud.server.channels.base import Actions
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["slack"]


@pytest.fixture
def settings(settings: Settings, slack: SlackStandIn) -> Settings:
    return settings.replace(slack_signing_secret=SECRET,
                            **provider_settings(slack=slack.base_url))


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account],
           slack: SlackStandIn) -> Linked:
    made = Linked(client, make_user(plan="pro"), slack)
    assert made.say(_command(f"link {made.code['code']}")).startswith("Linked")
    made.notify("session-a")
    return made


def _buttons(standin: SlackStandIn) -> dict[str, dict[str, Any]]:
    """The last notification's buttons, by action_id."""
    body = [r for r in standin.accepted() if r.path.startswith("/services/")][-1].json()
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    return {e["action_id"]: e for e in actions["elements"]}


def _press(standin: SlackStandIn, value: str, *, user: str = "U0OWNER", team: str = "T0001",
           response_url: str | None = None, action_id: str = "cn_run") -> bytes:
    payload = {"type": "block_actions", "team": {"id": team, "domain": "acme"},
               "user": {"id": user, "username": "someone", "team_id": team},
               "api_app_id": "A0APP", "trigger_id": uuid.uuid4().hex,
               "response_url": response_url or standin.response_url(team),
               "container": {"type": "message", "channel_id": "C0SHARED", "message_ts": "1.2"},
               "channel": {"id": "C0SHARED", "name": "builds"},
               "actions": [{"type": "button", "action_id": action_id, "block_id": "b1",
                            "value": value, "action_ts": str(time.time())}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


def _send(client: TestClient, body: bytes, headers: dict[str, str] | None = None) -> int:
    """Post a press; TestClient runs the answer's background task before it returns, so what
    was posted to a response URL is there once this returns."""
    return client.post("/v1/slack/interactions", content=body,
                       headers=headers or _signed(body)).status_code


def _answers(standin: SlackStandIn, n: int) -> list[str]:
    found = wait_for(lambda: len(standin.answers()) >= n and standin.answers(),
                     what=f"{n} answer(s) at the response URLs")
    assert all(a["response_type"] == "ephemeral" and a["replace_original"] is False
               for a in found)
    return [str(a["text"]) for a in found]


def test_the_owners_presses_run_again_and_show_the_log(
    linked: Linked, runtime: Runtime, slack: SlackStandIn,
) -> None:
    buttons = _buttons(slack)
    assert set(buttons) == {"open_task", "cn_run", "cn_log"}
    run, log = buttons["cn_run"]["value"], buttons["cn_log"]["value"]
    assert run.startswith("run:") and log.startswith("log:") and len(run) == 36

    assert _send(linked.client, _press(slack, run)) == 200
    [queued] = _answers(slack, 1)
    assert queued == f"Queued on {MACHINE[:12]}: make test"
    assert _commands(runtime) == [("make test", "session-a")]
    assert _send(linked.client, _press(slack, log, action_id="cn_log")) == 200
    shown = _answers(slack, 2)[1]
    assert shown.startswith("```\n") and "120 passed in 190.1s" in shown
    # "Open task" is a link: Slack reports its press too, and it gets no answer.
    assert _send(linked.client, _press(slack, "", action_id="open_task")) == 200
    assert len(slack.answers()) == 2 and len(_commands(runtime)) == 1


def test_strangers_other_workspaces_and_forged_handles_queue_nothing(
    linked: Linked, runtime: Runtime, slack: SlackStandIn,
) -> None:
    run = _buttons(slack)["cn_run"]["value"]
    presses = [_press(slack, run, user="U0STRANGER"),  # another member of the shared channel
               _press(slack, run, team="T0666"),  # the owner's user id in another workspace
               _press(slack, "run:" + uuid.uuid4().hex),  # a handle of no notification
               _press(slack, "rm -rf /")]  # not a handle at all
    for body in presses:
        assert _send(linked.client, body) == 200
    answers = _answers(slack, len(presses))
    assert answers[:2] == ["Not run: only the Slack account linked to this channel can press "
                           "its buttons."] * 2
    assert answers[2:] == ["Not run: this is not a button of a task notification."] * 2
    assert _commands(runtime) == []
    audit = linked.client.get("/v1/audit", headers=linked.user.headers).json()
    refused = [a for a in audit if a["outcome"] == "refused"]
    assert {a["actor"] for a in refused} == {"slack:T0001:U0STRANGER", "slack:T0666:U0OWNER"}


def test_only_signed_recent_presses_are_read_and_a_replay_does_nothing(
    linked: Linked, runtime: Runtime, slack: SlackStandIn,
) -> None:
    body = _press(slack, _buttons(slack)["cn_run"]["value"])
    good = _signed(body)
    sig = good["X-Slack-Signature"]
    broken = sig[:-1] + ("1" if sig.endswith("0") else "0")  # always another signature
    for headers in ({}, _signed(body, secret="another-apps-secret"),  # noqa: S106
                    _signed(body, at=int(time.time()) - 301),
                    {**good, "X-Slack-Signature": broken}):
        assert _send(linked.client, body, headers or {"Content-Type": "x"}) == 401
    tampered = body.replace(b"U0OWNER", b"U0OTHER")
    assert _send(linked.client, tampered, good) == 401
    assert _commands(runtime) == [] and slack.answers() == []
    assert _send(linked.client, body, good) == 200
    assert _send(linked.client, body, good) == 200  # the same signed press, again
    assert _answers(slack, 2)[1] == "This press was already handled."
    assert len(_commands(runtime)) == 1


def test_answers_go_only_to_slack(linked: Linked, runtime: Runtime, slack: SlackStandIn) -> None:
    run = _buttons(slack)["cn_run"]["value"]
    elsewhere = slack.response_url().replace("hooks.slack.com", "evil.example")
    not_actions = "https://hooks.slack.com/services/T0001/B0001/Xsecret42"
    for url in (elsewhere, not_actions):
        assert _send(linked.client, _press(slack, run, response_url=url)) == 200
    assert len(_commands(runtime)) == 2  # the presses were the owner's: both queued
    assert slack.answers() == [] and slack.count() == 1  # the notification, nothing else


def test_buttons_only_where_the_server_takes_presses(slack: SlackStandIn) -> None:
    """Without the Slack app's signing secret a press would reach nobody: no relay buttons."""
    pressed = Actions(run_again="run:" + "a" * 32, show_log="log:" + "a" * 32)
    msg = dataclasses.replace(message("slack", {"webhook_url": slack.url()}), actions=pressed)
    for secret, expected in ((None, {"open_task"}), (SECRET, {"open_task", "cn_run", "cn_log"})):
        settings = Settings(**provider_settings(slack=slack.base_url),
                            slack_signing_secret=secret)
        assert deliver(settings, msg).ok
        assert set(_buttons(slack)) == expected


def test_a_permission_request_is_a_slack_card_only_its_owner_answers(
    linked: Linked, runtime: Runtime, slack: SlackStandIn,
) -> None:
    from standins.webpush import WebPushStandIn
    from test_approvals import agent, ask, quiet

    # Someone who can be asked (a browser with notifications on); the card goes to Slack too.
    service = WebPushStandIn()
    with service:  # only its subscription's keys are needed: no push is sent (no VAPID key)
        browser = service.subscribe("BNotUsedHere")
    made = linked.client.post("/v1/channels", headers=linked.user.headers,
                              json={"type": "webpush", "config": browser.config})
    assert made.status_code == 201, made.text
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws, "<!channel> rm -rf build ```", suggestions=("Bash(rm:*)",))
        [shown] = wait_for(lambda: [r for r in slack.accepted() if r.path.startswith(
            "/services/") and r.json()["text"] == "Claude wants to use Bash"],
            what="the permission request's card in Slack")
        assert shown.displayed["pings"] == []  # the command cannot mention anyone
        body = shown.json()
        assert "rm -rf build" in json.dumps(body["blocks"][2])
        [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
        ident = asked["id"].replace("-", "")
        assert {e["action_id"]: e["value"] for e in actions["elements"]} == {
            "cn_ap_allow": f"ap:{ident}:a", "cn_ap_deny": f"ap:{ident}:d",
            "cn_ap_session": f"ap:{ident}:s"}

        for stranger in (_press(slack, f"ap:{ident}:a", user="U0STRANGER",
                                action_id="cn_ap_allow"),
                         _press(slack, f"ap:{ident}:a", team="T0666",
                                action_id="cn_ap_allow")):
            assert _send(linked.client, stranger) == 200
        assert _answers(slack, 2) == ["Not answered: only the Slack account linked to the "
                                      "owner's channel can answer."] * 2
        quiet(ws)  # no decision went to the agent
        assert _send(linked.client, _press(slack, f"ap:{ident}:a",
                                           action_id="cn_ap_allow")) == 200
        assert _answers(slack, 3)[2] == "✅ Allowed"
        got = ws.receive_json()
        assert (got["type"], got["id"], got["state"]) == ("decision", asked["id"], "allowed")
        assert _send(linked.client, _press(slack, f"ap:{ident}:d",
                                           action_id="cn_ap_deny")) == 200
        assert _answers(slack, 4)[3] == "Already answered."
    audit = linked.client.get("/v1/audit", headers=linked.user.headers).json()
    assert {(a["actor"], a["outcome"]) for a in audit if a["source"] == "approval"} >= {
        ("slack:T0001:U0STRANGER", "refused"), ("slack:T0666:U0OWNER", "refused"),
        ("slack:T0001:U0OWNER", "allowed")}


def test_an_owner_with_slack_alone_is_asked_there(linked: Linked, runtime: Runtime,
                                                  slack: SlackStandIn) -> None:
    """No Telegram chat and no browser: the linked Slack account is who answers."""
    from test_approvals import agent, ask

    with agent(linked.client, linked.user) as ws:
        asked = ask(ws, "make deploy")
        wait_for(lambda: [r for r in slack.accepted() if r.path.startswith("/services/")
                          and r.json()["text"] == "Claude wants to use Bash"],
                 what="the permission request's card in Slack")
        ident = asked["id"].replace("-", "")
        assert _send(linked.client, _press(slack, f"ap:{ident}:d",
                                           action_id="cn_ap_deny")) == 200
        got = ws.receive_json()
        assert (got["type"], got["id"], got["state"]) == ("decision", asked["id"], "denied")
