"""A linked Telegram chat driven through the in-process app and the Telegram stand-in: tasks
notify it, the owner (or a stranger) replies or presses a notification's buttons, and the tests
read back the audit log, the queued commands and what the stand-in was asked to show."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.kit import event
from standins.telegram import TelegramStandIn

SECRET = "hook-secret_123"  # noqa: S105 - the test bot's webhook secret (standins.kit)
HOOK = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
OWNER, STRANGER = 777, 888
MACHINE = "machine-1234567"
_UPDATE_IDS = itertools.count(10001)
"""Telegram numbers every update; the server handles each number once."""


def update(text: str, *, chat: int, reply_to: int | None = None, sender: int = OWNER,
           chat_type: str = "private") -> dict[str, Any]:
    """A message update as Telegram posts it to the webhook."""
    message: dict[str, Any] = {
        "message_id": 50, "date": 1, "text": text,
        "chat": {"id": chat, "type": chat_type, "title": "ops"},
        "from": {"id": sender, "is_bot": False, "first_name": "Ada"}}
    if reply_to is not None:
        message["reply_to_message"] = {"message_id": reply_to, "date": 1, "text": "…",
                                       "chat": message["chat"],
                                       "from": {"id": 1, "is_bot": True, "first_name": "bot"}}
    return {"update_id": next(_UPDATE_IDS), "message": message}


class Chat:
    """One user's Telegram channel, linked from ``chat`` (a group when negative)."""

    def __init__(self, client: TestClient, user: Account, telegram: TelegramStandIn, *,
                 chat: int = 555) -> None:
        self.client, self.user, self.telegram, self.chat = client, user, telegram, chat
        made = client.post("/v1/channels", json={"type": "telegram", "config": {}},
                           headers=user.headers).json()
        self.channel_id: str = made["id"]
        code = client.post(f"/v1/channels/{made['id']}/link", headers=user.headers).json()
        kind = "private" if chat > 0 else "group"
        assert self.send(update(code["command"], chat=chat, chat_type=kind)) == 200
        telegram.wait(1)  # "linked"
        # The relay queues only for a machine with an agent registered (a free plan may not).
        registered = client.post("/v1/agents", json={"machine_id": MACHINE}, headers=user.headers)
        assert registered.status_code in (201, 403), registered.text

    def notify(self, session_id: str | None = "session-a", **fields: Any) -> dict[str, Any]:
        """A task finishes; what the stand-in displayed for its notification."""
        before = len(self.telegram.sent())
        body = event(task_id=fields.pop("task_id", uuid.uuid4().hex), session_id=session_id,
                     machine_id=fields.pop("machine_id", MACHINE), **fields)
        body.pop("event_id")
        sent = self.client.post("/v1/events", json=body, headers=self.user.headers)
        assert sent.status_code in (200, 201, 202), sent.text
        [planned] = sent.json()["notifications"]
        wait_for(lambda: len(self.telegram.sent()) > before, what="the notification")
        wait_for(lambda: self.client.get(f"/v1/notifications/{planned['id']}",
                                         headers=self.user.headers).json()["status"] == "sent",
                 what="the notification to be recorded as sent")
        shown: dict[str, Any] = self.telegram.sent()[before]
        shown["task_id"] = body["task_id"]
        return shown

    def send(self, body: dict[str, Any], headers: dict[str, str] = HOOK) -> int:
        status: int = self.client.post("/v1/telegram/webhook", json=body,
                                       headers=headers).status_code
        return status

    def audit(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.get("/v1/audit", headers=self.user.headers).json()
        return rows

    def command(self, command_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self.client.get(f"/v1/commands/{command_id}",
                                              headers=self.user.headers).json()
        return row


def buttons(shown: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A displayed message's inline buttons by their text."""
    rows = (shown.get("reply_markup") or {}).get("inline_keyboard") or []
    return {b["text"]: b for row in rows for b in row}


def reply_token(shown: dict[str, Any]) -> str:
    """The reply token in a notification's task link."""
    url = buttons(shown)["Open task"]["url"]
    link, _, fragment = url.partition("#reply=")
    assert link.endswith("/t/" + shown["task_id"]), url
    return fragment
