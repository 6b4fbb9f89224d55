"""The Telegram buttons and the reply token end to end with real processes, on SQLite and
PostgreSQL: the server (`claude-notify server`), the agent (`claude-notify agent`), the CLI a user
runs, and the Telegram stand-in. A task's notification arrives with "Run again" and "Show log";
the owner's press runs the task's command again on the agent, once, and its own completion
reaches Telegram; the reply token from the task link queues the next command from a "phone";
a stranger's press runs nothing.

One server per database serves the module: each test signs up its own user and links a chat of
its own, and counts only that chat's messages on the shared stand-in."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, Receiver, wait_for
from relay_kit import Server, api, cli
from standins.telegram import TOKEN, TelegramStandIn
from test_relay_e2e import SESSION, Setup
from tg_kit import OWNER, STRANGER, buttons, update

HOOK_SECRET = "buttons-hook-secret_1"  # noqa: S105 - the test bot's webhook secret
HOOK = {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
_CHATS = itertools.count(4242)
"""A chat id for each test (negated for a group): the chat is what a test counts messages in."""


@pytest.fixture(scope="module")
def telegram(module_db_url: str) -> Iterator[TelegramStandIn]:
    """The stand-in the module's shared server talks to, one per database."""
    standin = TelegramStandIn(per_chat_interval_s=0)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox,
                  telegram: TelegramStandIn) -> Iterator[Server]:
    """One server per database for the module; each test signs up a user of its own."""
    srv = Server.make(module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN=TOKEN,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE=telegram.base_url,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=HOOK_SECRET,
                      CLAUDE_NOTIFY_SERVER_APP_URL="https://app.example")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


@pytest.fixture
def setup(server: Server, tmp_path: Path, receiver: Receiver) -> Iterator[Setup]:
    made = Setup(server, tmp_path, receiver)
    yield made
    made.agent.stop()


def _hook(server: Server, body: dict[str, Any]) -> int:
    return httpx.post(f"{server.url}/v1/telegram/webhook", json=body, headers=HOOK,
                      timeout=10).status_code


def _linked(telegram: TelegramStandIn, chat: int) -> None:
    wait_for(lambda: len(telegram.sent_to(chat)) == 1, what=f"chat {chat} to be told it is linked")


def _count_notified(telegram: TelegramStandIn, chat: int, n: int) -> list[dict[str, Any]]:
    """The first ``n`` Telegram notifications of ``./count.sh`` runs in ``chat``."""
    found: list[dict[str, Any]] = wait_for(
        lambda: len(shown := [m for m in telegram.sent_to(chat) if "./count.sh" in m["text"]
                              and "Queued" not in m["text"] and "Log of" not in m["text"]])
        >= n and shown, timeout=30, what=f"{n} ./count.sh notification(s) on Telegram")
    return found


def test_run_again_show_log_and_the_reply_token_from_a_phone(
    setup: Setup, server: Server, telegram: TelegramStandIn
) -> None:
    chat = next(_CHATS)
    made = api(server, setup.token, "POST", "/v1/channels",
               json={"type": "telegram", "config": {}, "rules": {"on": ["finished"]}})
    assert made.status_code == 201, made.text
    code = api(server, setup.token, "POST", f"/v1/channels/{made.json()['id']}/link").json()
    assert _hook(server, update(code["command"], chat=chat)) == 200
    _linked(telegram, chat)
    cli(["run", "--exec", "--", "./count.sh"],
        {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION}, cwd=setup.project)
    [first] = _count_notified(telegram, chat, 1)
    assert list(buttons(first)) == ["Open task", "Run again", "Show log"]
    wait_for(lambda: any(n["provider_id"] == str(first["message_id"]) and n["status"] == "sent"
                         for n in api(server, setup.token, "GET",
                                      "/v1/notifications").json()["items"]),
             what="the Telegram notification to be recorded")
    setup.agent.start()
    assert setup.runs() == 1

    run_again = buttons(first)["Run again"]["callback_data"]
    stranger = telegram.callback_query(first["message_id"], run_again, sender=STRANGER)
    assert _hook(server, stranger) == 200
    pressed = telegram.callback_query(first["message_id"], run_again, sender=OWNER)
    assert _hook(server, pressed) == 200
    assert telegram.answers_for(stranger) == [{"callback_query_id":
                                               stranger["callback_query"]["id"]}]
    assert telegram.answers_for(pressed)[0]["text"].startswith("Queued on")
    _count_notified(telegram, chat, 2)  # the relayed run's own notification
    assert setup.runs() == 2
    audit = api(server, setup.token, "GET", "/v1/audit").json()
    assert [(a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("refused", f"telegram:{STRANGER}"), ("queued", f"telegram:{OWNER}"),
        ("started", "agent"), ("done", "agent")]

    link = buttons(first)["Open task"]["url"]
    assert link.startswith("https://app.example/t/") and "#reply=cnr_" in link
    token = link.partition("#reply=")[2]
    phone = httpx.post(f"{server.url}/v1/commands", json={"command": "./count.sh"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert phone.status_code == 202, phone.text
    assert phone.json()["session_id"] == SESSION
    _count_notified(telegram, chat, 3)
    assert setup.runs() == 3

    before = len(telegram.sent())  # of every chat: the log must go to this one
    shown = telegram.callback_query(first["message_id"], buttons(first)["Show log"]
                                    ["callback_data"], sender=OWNER)
    assert _hook(server, shown) == 200
    log = wait_for(lambda: [m for m in telegram.sent()[before:] if m["text"].startswith("Log of")],
                   what="the log message")[0]
    assert log["text"].startswith("Log of ./count.sh") and log["chat_id"] == chat
    assert telegram.answers_for(shown) == [{"callback_query_id": shown["callback_query"]["id"]}]


def test_a_group_chat_takes_the_owners_commands_only_once_switched_on(
    setup: Setup, server: Server, telegram: TelegramStandIn
) -> None:
    group = -next(_CHATS)
    made = api(server, setup.token, "POST", "/v1/channels",
               json={"type": "telegram", "config": {}, "rules": {"on": ["finished"]}})
    channel_id = made.json()["id"]
    code = api(server, setup.token, "POST", f"/v1/channels/{channel_id}/link").json()
    assert _hook(server, update(code["command"], chat=group, chat_type="group")) == 200
    _linked(telegram, group)
    cli(["run", "--exec", "--", "./count.sh"],
        {**setup.env, "CLAUDE_NOTIFY_SESSION_ID": SESSION}, cwd=setup.project)
    [first] = _count_notified(telegram, group, 1)
    setup.agent.start()
    run_again = buttons(first)["Run again"]["callback_data"]

    def press(sender: int) -> list[dict[str, Any]]:
        pressed = telegram.callback_query(first["message_id"], run_again, sender=sender,
                                          chat_type="group")
        assert _hook(server, pressed) == 200
        return telegram.answers_for(pressed)

    assert "text" not in press(OWNER)[0]  # off by default: refused, and audited
    out = cli(["channels", "group-replies", channel_id, "on"], setup.env).stdout.decode()
    assert out == "group replies on for ops (only your own Telegram account's commands count)\n"
    assert "text" not in press(STRANGER)[0]
    assert press(OWNER)[0]["text"].startswith("Queued on")
    _count_notified(telegram, group, 2)
    assert setup.runs() == 2
    assert cli(["channels", "group-replies", channel_id, "off"], setup.env).returncode == 0
    assert "text" not in press(OWNER)[0]
    not_telegram = cli(["channels", "group-replies", "nope", "on"], setup.env, check=False)
    assert not_telegram.returncode != 0
    audit = api(server, setup.token, "GET", "/v1/audit").json()
    assert [(a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("refused", f"telegram:{OWNER}"), ("refused", f"telegram:{STRANGER}"),
        ("queued", f"telegram:{OWNER}"), ("started", "agent"), ("done", "agent"),
        ("refused", f"telegram:{OWNER}")]
    assert setup.runs() == 2
