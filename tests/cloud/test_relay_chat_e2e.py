"""Discord and Feishu replies end to end with real processes, on SQLite and PostgreSQL: the server
(`claude-notify server`) with the operator's Discord public key and Feishu app secrets, the agent
(`claude-notify agent`), and the Discord and Feishu stand-ins receiving the notifications. A
``/run`` from the linked account runs on the agent exactly once, and the command's own completion
notification reaches the same chat; a forged request and a stranger run nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_kit import DiscordApp, FeishuApp, discord_post, feishu_message, interaction
from cloud_kit import Mailbox, Receiver, wait_for
from relay_kit import Server, api, cli
from standins.discord import DiscordStandIn
from standins.feishu import FeishuStandIn
from test_relay_e2e import SESSION, Setup

APP = DiscordApp()
FEISHU = FeishuApp("e2e-verification-token", "e2e-encrypt-key")
OWNER = "80351110224678912"
OPEN_ID = "ou_e2e_owner_000000000000000000001"


@pytest.fixture(scope="module")
def discord(module_db_url: str) -> Iterator[DiscordStandIn]:
    """The module's shared server's Discord, one per database; only the Discord test uses it."""
    standin = DiscordStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def feishu(module_db_url: str) -> Iterator[FeishuStandIn]:
    """Likewise Feishu, for the Feishu test alone."""
    standin = FeishuStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox, discord: DiscordStandIn,
                  feishu: FeishuStandIn) -> Iterator[Server]:
    """One server per database for the module; each test signs up a user of its own."""
    prefix = "CLAUDE_NOTIFY_SERVER_"
    srv = Server.make(module_db_url, module_smtp, **{
        prefix + "DISCORD_PUBLIC_KEY": APP.public_key,
        prefix + "DISCORD_API_BASE": discord.base_url,
        prefix + "FEISHU_VERIFICATION_TOKEN": FEISHU.token,
        prefix + "FEISHU_ENCRYPT_KEY": str(FEISHU.encrypt_key),
        prefix + "FEISHU_API_BASE": feishu.base_url})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def setup(server: Server, tmp_path: Path, receiver: Receiver) -> Iterator[Setup]:
    made = Setup(server, tmp_path, receiver)
    yield made
    made.agent.stop()


def _channel(setup: Setup, kind: str, url: str) -> str:
    """Add a ``kind`` channel; the link command to send, from ``claude-notify channels link``."""
    made = api(setup.server, setup.token, "POST", "/v1/channels",
               json={"type": kind, "config": {"webhook_url": url}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    out = cli(["channels", "link", made.json()["id"]], setup.env).stdout.decode()
    assert out.startswith("send this to the bot: /link "), out
    return out.removeprefix("send this to the bot: ").strip()


def _notified_in_session(setup: Setup, kind: str) -> None:
    """A command runs in the session; its notification on ``kind`` is recorded as sent."""
    cli(["run", "--exec", "--", "true"], {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION},
        cwd=setup.project)
    wait_for(lambda: any(n["channel_type"] == kind and n["status"] == "sent" and
                         n["kind"] == "event" for n in
                         api(setup.server, setup.token, "GET", "/v1/notifications")
                         .json()["items"]), timeout=30, what=f"the {kind} notification")


def _ran_once(setup: Setup, actor: str) -> list[dict[str, Any]]:
    audit: list[dict[str, Any]] = wait_for(
        lambda: (rows := api(setup.server, setup.token, "GET", "/v1/audit").json())
        and rows[0]["outcome"] == "done" and rows, timeout=30, what="the command to run")
    assert [(a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("queued", actor), ("started", "agent"), ("done", "agent")]
    assert setup.runs() == 1
    return audit


def test_a_discord_run_runs_once_on_the_agent_and_is_notified_on_discord(
    setup: Setup, server: Server, discord: DiscordStandIn
) -> None:
    link = _channel(setup, "discord", discord.url())
    code = link.removeprefix("/link code:")
    linked = discord_post(server.url, APP, interaction(name="link", user_id=OWNER, code=code))
    assert linked.json()["data"]["content"].startswith("Linked")
    _notified_in_session(setup, "discord")
    setup.agent.start()

    forged = discord_post(server.url, DiscordApp(), interaction(command="./count.sh"))
    assert forged.status_code == 401
    stranger = discord_post(server.url, APP, interaction(user_id="1234", command="./count.sh"))
    assert "not linked" in stranger.json()["data"]["content"]
    queued = discord_post(server.url, APP, interaction(user_id=OWNER, command="./count.sh"))
    assert queued.json()["data"]["content"].startswith("Queued on")
    assert queued.json()["data"]["flags"] == 64

    _ran_once(setup, f"discord:{OWNER}")
    done = wait_for(lambda: [r for r in discord.accepted()
                             if "./count.sh" in r.displayed["body"]["embeds"][0]["title"]],
                    timeout=30, what="the relayed command's own notification on Discord")
    assert len(done) == 1


def test_a_feishu_run_runs_once_on_the_agent_and_is_notified_on_feishu(
    setup: Setup, server: Server, feishu: FeishuStandIn
) -> None:
    def send(payload: dict[str, Any], app: FeishuApp = FEISHU) -> int:
        body, headers = app.request(payload)
        return httpx.post(f"{server.url}/v1/feishu/events", content=body, headers=headers,
                          timeout=10).status_code

    link = _channel(setup, "feishu", feishu.url())
    assert send(feishu_message(link, token=FEISHU.token, open_id=OPEN_ID)) == 200
    wait_for(lambda: any("Linked" in r.displayed["text"] for r in feishu.accepted()),
             what="the link confirmation")
    _notified_in_session(setup, "feishu")
    setup.agent.start()

    forged = FeishuApp(FEISHU.token, "someone-elses-key")
    assert send(feishu_message("/run ./count.sh", token=FEISHU.token, open_id=OPEN_ID),
                forged) == 401
    assert send(feishu_message("/run ./count.sh", token=FEISHU.token, open_id="ou_x")) == 200
    assert send(feishu_message("/run ./count.sh", token=FEISHU.token, open_id=OPEN_ID)) == 200

    _ran_once(setup, f"feishu:{OPEN_ID}")
    texts = wait_for(lambda: [r.displayed["text"] for r in feishu.accepted()
                              if "./count.sh" in r.displayed["text"]
                              and "Queued" not in r.displayed["text"]],
                     timeout=30, what="the relayed command's own notification on Feishu")
    assert len(texts) == 1
    assert any("Queued on" in r.displayed["text"] for r in feishu.accepted())
