"""Slack slash commands through the real app, worker and database (SQLite and PostgreSQL), the
Slack webhook stand-in receiving the notifications: requests are checked against the app's
signing secret (``v0`` HMAC, five-minute window) before anything is read; ``link`` records the
Slack user (in its workspace); ``run`` from that user in the direct chat is queued for the
latest Slack-notified session; strangers, other workspaces, shared channels without group
replies, forgeries and replays queue nothing."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from cloud_kit import Account, register_agent, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select
from standins.kit import event, provider_settings, slack
from standins.slack import SlackStandIn

from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["slack"]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - the test app's signing secret
MACHINE = "machine-1234567"


@pytest.fixture
def settings(settings: Settings, slack: SlackStandIn) -> Settings:
    return settings.replace(slack_signing_secret=SECRET,
                            **provider_settings(slack=slack.base_url))


def _signed(body: bytes, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body,
                      hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded"}


def _command(text: str, *, user: str = "U0OWNER", team: str = "T0001",
             channel: str = "D0DIRECT") -> bytes:
    return urlencode({"token": "deprecated", "team_id": team, "user_id": user,
                      "channel_id": channel, "command": "/claude-notify", "text": text,
                      "trigger_id": uuid.uuid4().hex, "response_url": "https://hooks.slack.com/x"
                      }).encode()


class Linked:
    def __init__(self, client: TestClient, user: Account, standin: SlackStandIn) -> None:
        self.client, self.user, self.standin = client, user, standin
        made = client.post("/v1/channels", headers=user.headers, json={
            "type": "slack", "config": {"webhook_url": standin.url()}})
        assert made.status_code == 201, made.text
        self.channel_id = made.json()["id"]
        code = client.post(f"/v1/channels/{self.channel_id}/link", headers=user.headers)
        assert code.status_code == 201, code.text
        self.code = code.json()
        assert self.code["command"] == f"/claude-notify link {self.code['code']}"
        register_agent(client, user, MACHINE)

    def say(self, body: bytes) -> str:
        answered = self.client.post("/v1/slack/commands", content=body, headers=_signed(body))
        assert answered.status_code == 200, answered.text
        assert answered.json()["response_type"] == "ephemeral"
        text: str = answered.json()["text"]
        return text

    def notify(self, session_id: str) -> None:
        before = self.standin.count()
        body = event(task_id=uuid.uuid4().hex, session_id=session_id, machine_id=MACHINE)
        body.pop("event_id")
        [planned] = self.client.post("/v1/events", json=body,
                                     headers=self.user.headers).json()["notifications"]
        self.standin.wait(before + 1)
        wait_for(lambda: self.client.get(f"/v1/notifications/{planned['id']}",
                                         headers=self.user.headers).json()["status"] == "sent",
                 what="the notification to be recorded as sent")


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account],
           slack: SlackStandIn) -> Linked:
    return Linked(client, make_user(plan="pro"), slack)


def _commands(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as db:
        return [(c, s) for c, s in db.execute(select(RelayCommand.command,
                                                     RelayCommand.session_id))]


def test_only_slack_signed_recent_requests_are_read(linked: Linked, runtime: Runtime) -> None:
    assert linked.say(_command(f"link {linked.code['code']}")).startswith("Linked")
    linked.notify("session-a")
    body = _command("run ./next.sh")
    good = _signed(body)
    cases = [
        {},
        {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]},
        {**good, "X-Slack-Signature": good["X-Slack-Signature"][:-1]
         + ("1" if good["X-Slack-Signature"].endswith("0") else "0")},  # always a changed byte
        _signed(body, secret="another-apps-secret"),  # noqa: S106
        # validly signed six minutes either side of now: a minute clear of the five-minute
        # window, so a slow request cannot carry a future stamp back inside it
        _signed(body, at=int(time.time()) - 360),
        _signed(body, at=int(time.time()) + 360),
        {**good, "X-Slack-Request-Timestamp": "not a number"},
    ]
    for headers in cases:
        refused = linked.client.post("/v1/slack/commands", content=body, headers=headers)
        assert refused.status_code == 401, headers
    tampered = body.replace(b"next.sh", b"evil.sh")
    assert linked.client.post("/v1/slack/commands", content=tampered,
                              headers=good).status_code == 401
    assert _commands(runtime) == []


def test_the_linked_user_runs_in_the_direct_chat_and_nobody_else_runs_anything(
    linked: Linked, runtime: Runtime,
) -> None:
    assert linked.say(_command("link wrong-code")).startswith("Not linked")
    assert linked.say(_command(f"link {linked.code['code']}")).startswith("Linked")
    linked.notify("session-a")
    queued = linked.say(_command("run ./next.sh <!channel>"))
    assert queued.startswith(f"Queued on {MACHINE[:12]}")
    assert "&lt;!channel&gt;" in queued and "<!channel>" not in queued
    stranger = linked.say(_command("run ./evil.sh", user="U0STRANGER"))
    other_team = linked.say(_command("run ./evil.sh", team="T0OTHER"))
    assert stranger.startswith("Not run") and other_team.startswith("Not run")
    shared = linked.say(_command("run ./next.sh", channel="C0SHARED"))
    assert shared == "Not run: commands are taken only in the direct chat with the bot."
    assert _commands(runtime) == [("./next.sh <!channel>", "session-a")]

    body = _command("run ./again.sh")
    first = linked.client.post("/v1/slack/commands", content=body, headers=_signed(body))
    replayed = linked.client.post("/v1/slack/commands", content=body, headers=_signed(body))
    assert first.json()["text"].startswith("Queued")
    assert replayed.json()["text"] == "This command was already handled."
    assert [c for c, _ in _commands(runtime)].count("./again.sh") == 1


def test_group_replies_once_turned_on_still_count_only_the_owner(
    linked: Linked, runtime: Runtime,
) -> None:
    linked.say(_command(f"link {linked.code['code']}"))
    linked.notify("session-b")
    allowed = linked.client.patch(f"/v1/channels/{linked.channel_id}", headers=linked.user.headers,
                                  json={"config": {"webhook_url": linked.standin.url(),
                                                   "allow_group_replies": True}})
    assert allowed.status_code == 200, allowed.text
    assert linked.say(_command("run make", channel="C0SHARED")).startswith("Queued")
    assert linked.say(_command("run make", channel="C0SHARED",
                               user="U0COLLEAGUE")).startswith("Not run")
    assert _commands(runtime) == [("make", "session-b")]


def test_without_a_signing_secret_there_is_no_endpoint(
    client: TestClient, settings: Settings, runtime: Runtime,
) -> None:
    from claude_notify.cloud.server.app import create_app
    from claude_notify.cloud.server.runtime import Runtime as Built

    off = Built.build(settings.replace(slack_signing_secret=None))
    try:
        with TestClient(create_app(runtime=off)) as c:
            body = _command("run make")
            assert c.post("/v1/slack/commands", content=body,
                          headers=_signed(body)).status_code == 404
    finally:
        off.close()
