"""Commands from Discord through the real app, worker and database (SQLite and PostgreSQL), the
Discord webhook stand-in receiving the notifications: interactions are Ed25519-verified (a fresh
key per test, and once a signature made by the RFC 8032 reference algorithm), ``/link`` records
the invoking Discord user, ``/run`` from that user is queued for the latest Discord-notified
session; strangers and forgeries queue nothing; the owner's refusals are audited."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_kit import (
    RFC8032_VECTORS,
    DiscordApp,
    ed25519_public,
    ed25519_sign,
    interaction,
)
from click.testing import CliRunner
from cloud_kit import Account, register_agent, wait_for
from fastapi.testclient import TestClient
from standins.discord import APPLICATION_ID, BOT_TOKEN, DiscordStandIn
from standins.kit import discord, event, provider_settings

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.cli import server
from claude_notify.cloud.server.db.models import Workspace
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError

__all__ = ["discord"]
OWNER, STRANGER = "80351110224678912", "80351110224678999"


@pytest.fixture
def app_key() -> DiscordApp:
    return DiscordApp()


@pytest.fixture
def settings(settings: Settings, discord: DiscordStandIn, app_key: DiscordApp) -> Settings:
    return settings.replace(discord_public_key=app_key.public_key,
                            **provider_settings(discord=discord.base_url))


def _post(client: TestClient, app: DiscordApp, payload: dict[str, Any], *,
          headers: dict[str, str] | None = None, body: bytes | None = None) -> Any:
    raw = json.dumps(payload).encode() if body is None else body
    sent = app.headers(json.dumps(payload).encode()) if headers is None else headers
    return client.post("/v1/discord/interactions", content=raw, headers=sent)


class Linked:
    def __init__(self, client: TestClient, user: Account, app: DiscordApp,
                 standin: DiscordStandIn) -> None:
        self.client, self.user, self.app, self.standin = client, user, app, standin
        made = client.post("/v1/channels", json={"type": "discord",
                                                 "config": {"webhook_url": standin.url()}},
                           headers=user.headers)
        assert made.status_code == 201, made.text
        self.channel_id = made.json()["id"]
        code = client.post(f"/v1/channels/{self.channel_id}/link", headers=user.headers)
        assert code.status_code == 201, code.text
        self.code = code.json()
        assert self.code["command"] == f"/link code:{self.code['code']}"
        register_agent(client, user, "machine-1234567")

    def link(self, user_id: str = OWNER) -> str:
        return self.say(interaction(name="link", user_id=user_id, code=self.code["code"]))

    def say(self, payload: dict[str, Any]) -> str:
        answered = _post(self.client, self.app, payload)
        assert answered.status_code == 200, answered.text
        body = answered.json()
        assert body["type"] == 4 and body["data"]["flags"] == 64  # ephemeral
        assert body["data"]["allowed_mentions"] == {"parse": []}
        text: str = body["data"]["content"]
        return text

    def run(self, command: str, user_id: str = OWNER, **options: str) -> str:
        return self.say(interaction(name="run", user_id=user_id, command=command, **options))

    def notify(self, session_id: str) -> None:
        """A task of ``session_id`` finishes and its Discord notification is recorded as sent."""
        before = self.standin.count()
        body = event(task_id=uuid.uuid4().hex, session_id=session_id, machine_id="machine-1234567")
        body.pop("event_id")
        sent = self.client.post("/v1/events", json=body, headers=self.user.headers)
        [planned] = sent.json()["notifications"]
        self.standin.wait(before + 1)
        wait_for(lambda: self.client.get(f"/v1/notifications/{planned['id']}",
                                         headers=self.user.headers).json()["status"] == "sent",
                 what="the notification to be recorded as sent")

    def audit(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.get("/v1/audit", headers=self.user.headers).json()
        return rows

    def command(self, command_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self.client.get(f"/v1/commands/{command_id}",
                                              headers=self.user.headers).json()
        return row


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account], app_key: DiscordApp,
           discord: DiscordStandIn) -> Linked:
    return Linked(client, make_user(plan="pro"), app_key, discord)


def test_a_ping_is_answered_with_a_pong(client: TestClient, app_key: DiscordApp) -> None:
    answered = _post(client, app_key, interaction(1))
    assert (answered.status_code, answered.json()) == (200, {"type": 1})


def test_bad_signatures_get_401_and_queue_nothing(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    payload = interaction(command="./next.sh")
    raw = json.dumps(payload).encode()
    good = linked.app.headers(raw)
    other = DiscordApp()  # someone else's key
    stale = str(int(time.time()) - 3600)
    flipped = good["X-Signature-Ed25519"][:-2] + ("00" if good["X-Signature-Ed25519"][-2:] != "00"
                                                   else "01")
    cases = [
        {},  # no headers at all
        {"X-Signature-Timestamp": good["X-Signature-Timestamp"]},
        {"X-Signature-Ed25519": good["X-Signature-Ed25519"]},
        {**good, "X-Signature-Ed25519": flipped},
        {**good, "X-Signature-Ed25519": "not hex"},
        other.headers(raw),
        linked.app.headers(raw, timestamp=stale),  # validly signed, but an hour old
        {**good, "X-Signature-Timestamp": str(int(good["X-Signature-Timestamp"]) + 1)},
    ]
    for headers in cases:
        assert _post(linked.client, linked.app, payload, headers=headers).status_code == 401
    tampered = raw.replace(b"./next.sh", b"./evil.sh")
    assert _post(linked.client, linked.app, payload, headers=good,
                 body=tampered).status_code == 401
    assert linked.audit() == []
    assert _post(linked.client, linked.app, payload, headers=good).status_code == 200


def test_a_signature_by_the_rfc8032_reference_algorithm_is_accepted(settings: Settings) -> None:
    for secret, public, message, signature in RFC8032_VECTORS:  # the signer itself is right
        assert ed25519_public(bytes.fromhex(secret)).hex() == public
        assert ed25519_sign(bytes.fromhex(secret), bytes.fromhex(message)).hex() == signature
    reference = DiscordApp(secret=bytes.fromhex(RFC8032_VECTORS[0][0]))
    assert reference.public_key == RFC8032_VECTORS[0][1]
    with _client(settings.replace(discord_public_key=reference.public_key)) as client:
        assert _post(client, reference, interaction(1)).json() == {"type": 1}
        assert _post(client, DiscordApp(), interaction(1)).status_code == 401


def test_link_then_run_goes_to_the_latest_discord_notified_session(linked: Linked) -> None:
    assert linked.link().startswith("Linked")
    channel = linked.client.get(f"/v1/channels/{linked.channel_id}",
                                headers=linked.user.headers).json()
    assert channel["config"]["discord_user_id"] == OWNER
    linked.notify("session-a")
    linked.notify("session-b")
    assert linked.run("make test") == "Queued on machine-1234: make test"
    assert linked.run("make lint", session="session-a").startswith("Queued on")
    first, second = reversed(linked.audit())
    assert (first["outcome"], first["source"], first["actor"]) == ("queued", "discord",
                                                                   f"discord:{OWNER}")
    assert linked.command(first["command_id"])["session_id"] == "session-b"
    assert linked.command(second["command_id"])["session_id"] == "session-a"
    assert linked.command(first["command_id"])["command"] == "make test"
    # from a DM with the application, the same account counts
    dm = interaction(name="run", user_id=OWNER, guild=False, command="make docs")
    assert linked.say(dm).startswith("Queued on")


def test_a_link_code_works_once_and_only_for_its_channel_type(linked: Linked) -> None:
    assert linked.link().startswith("Linked")
    assert linked.link(STRANGER).startswith("Not linked")  # used up: the stranger gains nothing
    assert linked.say(interaction(name="link", code="x" * 32)).startswith("Not linked")
    channel = linked.client.get(f"/v1/channels/{linked.channel_id}",
                                headers=linked.user.headers).json()
    assert channel["config"]["discord_user_id"] == OWNER
    # a user's own edit keeps the link, and cannot set it
    edited = linked.client.patch(f"/v1/channels/{linked.channel_id}",
                                 json={"config": {"webhook_url": linked.standin.url()}},
                                 headers=linked.user.headers)
    assert edited.json()["config"]["discord_user_id"] == OWNER
    forged = linked.client.patch(
        f"/v1/channels/{linked.channel_id}",
        json={"config": {"webhook_url": linked.standin.url(), "discord_user_id": STRANGER}},
        headers=linked.user.headers)
    assert forged.status_code == 422


def test_strangers_get_a_generic_refusal_and_nothing_is_queued(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    answer = linked.run("./next.sh", user_id=STRANGER)
    assert answer == "Not run: this account is not linked to claude-notify."
    assert linked.say(interaction(name="run", user_id=STRANGER, session="session-a",
                                  command="./next.sh")) == answer
    assert linked.audit() == []


def test_the_owners_refusals_are_audited_and_answered(linked: Linked) -> None:
    linked.link()
    assert linked.run("make test") == (
        "Not run: no task of a session was notified on this channel yet.")
    linked.notify("session-a")
    assert "banned keyword" in linked.run("sudo shutdown -h now")
    assert "no task of that session was notified on this channel" in linked.run(
        "ls", session="someone-elses")
    outcomes = [(a["outcome"], a["actor"], a["command_id"]) for a in linked.audit()]
    assert outcomes == [("refused", f"discord:{OWNER}", None)] * 3


def test_an_account_no_longer_pro_cannot_relay(linked: Linked, runtime: Runtime) -> None:
    linked.link()
    linked.notify("session-a")
    with runtime.sessions.begin() as session:
        workspace = session.get(Workspace, linked.user.user_id)  # the account's own
        assert workspace is not None
        workspace.plan = "free"
    assert linked.run("make test") == "Not run: the command relay needs the pro plan."
    assert [a["outcome"] for a in linked.audit()] == ["refused"]


def test_unknown_interactions_get_a_hint_and_bad_bodies_a_400(linked: Linked) -> None:
    assert "/link" in linked.say(interaction(name="weather", city="Paris"))
    assert "/link" in linked.say(interaction(3, name="button"))
    raw = b"not json"
    assert _post(linked.client, linked.app, {}, headers=linked.app.headers(raw),
                 body=raw).status_code == 400


@contextlib.contextmanager
def _client(settings: Settings) -> Iterator[TestClient]:
    """The app on other settings (the same database)."""
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


@pytest.fixture
def plain_client(client: TestClient, settings: Settings) -> Iterator[TestClient]:
    with _client(settings.replace(discord_public_key=None)) as plain:
        yield plain


def test_off_without_a_public_key(plain_client: TestClient, make_user: Callable[..., Account],
                                  app_key: DiscordApp, discord: DiscordStandIn) -> None:
    assert _post(plain_client, app_key, interaction(1)).status_code == 404
    user = make_user(plan="pro")
    made = plain_client.post("/v1/channels", json={"type": "discord",
                                                   "config": {"webhook_url": discord.url()}},
                             headers=user.headers).json()
    refused = plain_client.post(f"/v1/channels/{made['id']}/link", headers=user.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "not_configured"
    assert refused.json()["error"]["message"] == (
        "Discord replies are not enabled on this server: its operator has not set "
        "CLAUDE_NOTIFY_SERVER_DISCORD_PUBLIC_KEY")


def test_a_bad_public_key_setting_fails_at_start(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="DISCORD_PUBLIC_KEY"):
        settings.replace(discord_public_key="abc").validate()


def test_server_discord_commands_registers_link_and_run(tmp_path: Path) -> None:
    with DiscordStandIn() as standin:
        env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
               "CLAUDE_NOTIFY_SERVER_DISCORD_API_BASE": standin.base_url,
               "CLAUDE_NOTIFY_SERVER_DISCORD_APPLICATION_ID": APPLICATION_ID,
               "CLAUDE_NOTIFY_SERVER_DISCORD_BOT_TOKEN": BOT_TOKEN}
        runner = CliRunner()
        done = runner.invoke(server, ["discord-commands"], env=env)
        assert (done.exit_code, done.output) == (0, "Discord: registered /link, /run\n")
        [call] = standin.accepted()
        path = f"/api/v10/applications/{APPLICATION_ID}/commands"
        assert (call.method, call.path) == ("PUT", path)
        registered = {c["name"]: [o["name"] for o in c["options"]] for c in call.displayed}
        assert registered == {"link": ["code"], "run": ["command", "session"]}
        wrong = runner.invoke(server, ["discord-commands"],
                              env={**env, "CLAUDE_NOTIFY_SERVER_DISCORD_BOT_TOKEN": "nope"})
        assert (wrong.exit_code, str(wrong.exception)) == (1, "Discord 401: 401: Unauthorized")
    gone = runner.invoke(server, ["discord-commands"], env=env)
    assert gone.exit_code == 1 and "ConnectError" in str(gone.exception)
    unset = runner.invoke(server, ["discord-commands"],
                          env={**env, "CLAUDE_NOTIFY_SERVER_DISCORD_BOT_TOKEN": ""})
    assert isinstance(unset.exception, ConfigError)
    assert str(unset.exception) == "set CLAUDE_NOTIFY_SERVER_DISCORD_BOT_TOKEN first"


def test_discord_has_no_group_switch(linked: Linked) -> None:
    config = {"webhook_url": linked.standin.url(), "allow_group_replies": True}
    refused = linked.client.patch(f"/v1/channels/{linked.channel_id}", json={"config": config},
                                  headers=linked.user.headers)
    assert refused.status_code == 422  # the sender's own ephemeral answer: no group to guard


def test_a_replayed_interaction_runs_nothing_again(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    payload = interaction(command="make test")
    raw = json.dumps(payload).encode()
    headers = linked.app.headers(raw)  # one signed request, captured and sent again
    first = _post(linked.client, linked.app, payload, headers=headers, body=raw).json()
    again = _post(linked.client, linked.app, payload, headers=headers, body=raw).json()
    assert first["data"]["content"].startswith("Queued on")
    assert again["data"]["content"] == "This interaction was already handled."
    assert [a["outcome"] for a in linked.audit()] == ["queued"]
