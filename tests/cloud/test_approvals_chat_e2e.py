"""Permission requests answered from Discord and Feishu, end to end with real processes: the
server (`claude-notify server`, its Discord application and Feishu app pointed at the
stand-ins), the agent (`claude-notify agent`, approvals on) and Claude Code's permission hook
(`claude-notify hook` fed a ``PermissionRequest``), the owner linked on Telegram, Discord and
Feishu at once.

What each test proves: the hook prints exactly what the owner pressed on Discord or Feishu, a
stranger's press there leaves it waiting, and the cards in the other apps then show the
outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_kit import (
    DiscordApp,
    FeishuApp,
    component_press,
    discord_post,
    feishu_card_action,
    feishu_message,
    interaction,
)
from cloud_kit import Mailbox, wait_for
from relay_kit import Server, api
from sqlalchemy import select
from standins.discord import BOT_TOKEN, DiscordStandIn
from standins.feishu import APP_ID, APP_SECRET, FeishuStandIn, app_card_text, card_buttons
from standins.telegram import TOKEN, TelegramStandIn
from test_approvals_e2e import HOOK_SECRET, Phone, finished
from test_relay_feishu import KEY as FEISHU_KEY
from test_relay_feishu import TOKEN as FEISHU_TOKEN

from claude_notify.cloud.server.db.engine import make_engine
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.settings import Settings

DISCORD_STRANGER = "80351110224678999"
FEISHU_STRANGER = "ou_stranger00000000000000000000002"


@pytest.fixture(scope="module")
def standins(module_db_url: str) -> Iterator[tuple[TelegramStandIn, DiscordStandIn,
                                                   FeishuStandIn]]:
    made = (TelegramStandIn(per_chat_interval_s=0), DiscordStandIn(), FeishuStandIn())
    for standin in made:
        standin.start()
    yield made
    for standin in made:
        standin.stop()


@pytest.fixture(scope="module")
def discord_app() -> DiscordApp:
    return DiscordApp()


@pytest.fixture(scope="module")
def chat_server(module_db_url: str, module_smtp: Mailbox, discord_app: DiscordApp,
                standins: tuple[TelegramStandIn, DiscordStandIn, FeishuStandIn]
                ) -> Iterator[Server]:
    telegram, discord, feishu = standins
    srv = Server.make(
        module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN=TOKEN,
        CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE=telegram.base_url,
        CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=HOOK_SECRET,
        CLAUDE_NOTIFY_SERVER_DISCORD_API_BASE=discord.base_url,
        CLAUDE_NOTIFY_SERVER_DISCORD_PUBLIC_KEY=discord_app.public_key,
        CLAUDE_NOTIFY_SERVER_DISCORD_BOT_TOKEN=BOT_TOKEN,
        CLAUDE_NOTIFY_SERVER_FEISHU_API_BASE=feishu.base_url,
        CLAUDE_NOTIFY_SERVER_FEISHU_VERIFICATION_TOKEN=FEISHU_TOKEN,
        CLAUDE_NOTIFY_SERVER_FEISHU_ENCRYPT_KEY=FEISHU_KEY,
        CLAUDE_NOTIFY_SERVER_FEISHU_APP_ID=APP_ID,
        CLAUDE_NOTIFY_SERVER_FEISHU_APP_SECRET=APP_SECRET)
    srv.start()
    yield srv
    srv.stop()


class Owner:
    """A :class:`Phone` (Telegram) whose owner also linked a Discord and a Feishu account."""

    def __init__(self, server: Server, standins: tuple[TelegramStandIn, DiscordStandIn,
                                                       FeishuStandIn],
                 discord_app: DiscordApp, home: Path) -> None:
        telegram, self.discord, self.feishu = standins
        self.phone = Phone(server, telegram, home)
        self.server, self.discord_app = server, discord_app
        self.feishu_app = FeishuApp(FEISHU_TOKEN, FEISHU_KEY)
        # Accounts of their own: the stand-ins are shared by the module's tests.
        self.discord_user = str(uuid.uuid4().int)[:18]
        self.feishu_user = f"ou_{uuid.uuid4().hex}"
        code = self._code("discord", self.discord.url())
        linked = discord_post(server.url, discord_app,
                              interaction(name="link", user_id=self.discord_user, code=code))
        assert linked.json()["data"]["content"].startswith("Linked"), linked.text
        code = self._code("feishu", self.feishu.url())
        before = len(self.feishu.said())
        assert self._feishu(feishu_message(f"/link {code}", open_id=self.feishu_user,
                                           token=FEISHU_TOKEN)).status_code == 200
        said = wait_for(lambda: self.feishu.said()[before:], what="the Feishu link")
        assert said[0]["text"].startswith("Linked"), said

    def _code(self, kind: str, url: str) -> str:
        made = api(self.server, self.phone.token, "POST", "/v1/channels",
                   json={"type": kind, "config": {"webhook_url": url}})
        assert made.status_code == 201, made.text
        code: str = api(self.server, self.phone.token, "POST",
                        f"/v1/channels/{made.json()['id']}/link").json()["code"]
        return code

    def _feishu(self, payload: dict[str, Any]) -> httpx.Response:
        body, headers = self.feishu_app.request(payload)
        return httpx.post(f"{self.server.url}/v1/feishu/events", content=body, headers=headers,
                          timeout=10)

    def discord_card(self) -> dict[str, Any]:
        [card] = wait_for(lambda: self.discord.bot_messages(self.discord_user), timeout=30,
                          what="the Discord card")
        return card

    def feishu_card(self) -> str:
        [message_id] = wait_for(lambda: self.feishu.cards_to(self.feishu_user), timeout=30,
                                what="the Feishu card")
        return message_id

    def press_discord(self, card: dict[str, Any], label: str, *, user: str | None = None,
                      guild: bool = False) -> dict[str, Any]:
        custom_id = next(b["custom_id"] for row in card["components"]
                         for b in row["components"] if b["label"] == label)
        # a card the server has not recorded yet is not one of its cards: a person is slower
        wait_for(lambda: self._recorded(card["id"]), what="the card to be recorded")
        answered = discord_post(self.server.url, self.discord_app, component_press(
            self.discord.message(card["id"]), custom_id, user_id=user or self.discord_user,
            guild=guild))
        assert answered.status_code == 200, answered.text
        response: dict[str, Any] = answered.json()
        self.discord.apply(card["id"], response)
        return response

    def press_feishu(self, message_id: str, label: str, *,
                     open_id: str | None = None) -> dict[str, Any]:
        held = self.feishu.card(message_id)
        wait_for(lambda: self._recorded(message_id), what="the card to be recorded")
        answered = self._feishu(feishu_card_action(
            card_buttons(held["card"])[label]["value"], open_id=open_id or self.feishu_user,
            message_id=message_id,
            chat_id=held["chat_id"], token=FEISHU_TOKEN))
        assert answered.status_code == 200, answered.text
        answer: dict[str, Any] = answered.json()
        self.feishu.apply(message_id, answer)
        return answer

    def _recorded(self, message_id: str) -> bool:
        """Whether the server wrote the card down (read from its database)."""
        engine = make_engine(Settings(database_url=self.server.env["DATABASE_URL"])
                             .sqlalchemy_url)
        try:
            with engine.connect() as db:
                found = db.execute(select(Approval.cards)).scalars().all()
        finally:
            engine.dispose()
        return any(c.get("message") == message_id for cards in found for c in cards or [])


@pytest.fixture
def owner(chat_server: Server, standins: tuple[TelegramStandIn, DiscordStandIn, FeishuStandIn],
          discord_app: DiscordApp, tmp_path: Path) -> Iterator[Owner]:
    made = Owner(chat_server.running(), standins, discord_app, tmp_path)
    made.phone.start_agent()
    yield made
    made.phone.agent.stop()


def test_deny_on_discord_reaches_the_hook_and_a_stranger_cannot(owner: Owner) -> None:
    hook = owner.phone.ask("make deploy")
    [telegram_card] = owner.phone.cards()
    card = owner.discord_card()
    said = owner.press_discord(card, "Allow", user=DISCORD_STRANGER, guild=True)
    assert said["data"]["content"] == (
        "Not answered: only the account the owner linked can answer.")
    assert hook.poll() is None  # still waiting: the stranger answered nothing
    assert owner.press_discord(card, "Deny")["type"] == 7
    assert json.loads(finished(hook)[1])["hookSpecificOutput"]["decision"] == {
        "behavior": "deny", "message": "Denied from Discord by the owner"}
    assert owner.phone.edited(telegram_card).endswith("⛔ Denied")
    message_id = owner.feishu_card()
    wait_for(lambda: "⛔ Denied" in app_card_text(owner.feishu.card(message_id)["card"])[0],
             what="the Feishu card to show the outcome")
    assert owner.discord.message(card["id"])["components"] == []


def test_allow_on_feishu_reaches_the_hook_and_a_stranger_cannot(owner: Owner) -> None:
    hook = owner.phone.ask("make test")
    [telegram_card] = owner.phone.cards()
    message_id = owner.feishu_card()
    refused = owner.press_feishu(message_id, "Allow", open_id=FEISHU_STRANGER)
    assert refused == {"toast": {"type": "error", "content": "Not answered: only the account "
                                 "the owner linked can answer."}}
    assert hook.poll() is None
    assert owner.press_feishu(message_id, "Allow")["toast"]["content"] == "Allowed."
    assert finished(hook)[1] == json.dumps({"hookSpecificOutput": {
        "hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}) + "\n"
    assert owner.phone.edited(telegram_card).endswith("✅ Allowed")
    card = owner.discord_card()
    wait_for(lambda: owner.discord.edits(card["id"]), what="the Discord card to be edited")
    assert owner.discord.message(card["id"])["embeds"][0]["description"].endswith(
        "**✅ Allowed**")
    audit = api(owner.server, owner.phone.token, "GET", "/v1/audit").json()
    assert [(a["outcome"], a["actor"]) for a in reversed(audit) if a["source"] == "approval"] \
        == [("asked", "agent"), ("refused", f"feishu:{FEISHU_STRANGER}"),
            ("allowed", f"feishu:{owner.feishu_user}")]
