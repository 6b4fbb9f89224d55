"""Commands from Telegram through the real app, worker and database (SQLite and PostgreSQL), the
Telegram stand-in as the far end: a reply to a task's notification or ``/run`` from the linked
owner's private chat is queued for that task's session; anyone else, a group, or a forged webhook
gets nothing queued, and every attempt is audited."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloud_kit import Account, register_agent, wait_for
from fastapi.testclient import TestClient
from standins.kit import event, provider_settings, telegram
from standins.telegram import TelegramStandIn

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]
_UPDATE_IDS = itertools.count(10001)
SECRET = "hook-secret_123"  # noqa: S105 - the test bot's webhook secret
HOOK = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
OWNER, STRANGER, CHAT = 777, 888, 555


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


def _limits(client: TestClient, **changes: Any) -> None:
    """Change this app's relay limits (its settings' ``relay_*`` values) from now on."""
    relay = relay_of(client.app.state)
    relay.policy = dataclasses.replace(relay.policy, **changes)

def _update(text: str, *, reply_to: int | None = None, sender: int = OWNER,
            chat_type: str = "private") -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": 50, "date": 1, "text": text,
        "chat": {"id": CHAT, "type": chat_type, "first_name": "Ada"},
        "from": {"id": sender, "is_bot": False, "first_name": "Ada"}}
    if reply_to is not None:
        message["reply_to_message"] = {"message_id": reply_to, "date": 1, "text": "make test ✓",
                                       "chat": message["chat"],
                                       "from": {"id": 1, "is_bot": True, "first_name": "bot"}}
    return {"update_id": next(_UPDATE_IDS), "message": message}


class Linked:
    def __init__(self, client: TestClient, user: Account, telegram: TelegramStandIn) -> None:
        self.client, self.user, self.telegram = client, user, telegram
        made = client.post("/v1/channels", json={"type": "telegram", "config": {}},
                           headers=user.headers).json()
        code = client.post(f"/v1/channels/{made['id']}/link", headers=user.headers).json()
        assert client.post("/v1/telegram/webhook", json=_update(code["command"]),
                           headers=HOOK).status_code == 200
        telegram.wait(1)  # "linked"
        register_agent(client, user, "machine-1234567")

    def notify(self, session_id: str) -> int:
        """A task of ``session_id`` finishes; the Telegram message id of its notification."""
        before = self.telegram.count()
        body = event(task_id=uuid.uuid4().hex, session_id=session_id, machine_id="machine-1234567")
        body.pop("event_id")
        sent = self.client.post("/v1/events", json=body, headers=self.user.headers)
        [planned] = sent.json()["notifications"]
        self.telegram.wait(before + 1)
        message_id: int = self.telegram.accepted()[-1].displayed["message_id"]
        wait_for(lambda: self.client.get(f"/v1/notifications/{planned['id']}",
                                         headers=self.user.headers).json()["status"] == "sent",
                 what="the notification to be recorded as sent")
        return message_id

    def send(self, update: dict[str, Any], headers: dict[str, str] = HOOK) -> int:
        status: int = self.client.post("/v1/telegram/webhook", json=update,
                                       headers=headers).status_code
        return status

    def audit(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.get("/v1/audit", headers=self.user.headers).json()
        return rows

    def command(self, command_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self.client.get(f"/v1/commands/{command_id}",
                                              headers=self.user.headers).json()
        return row

    def answer(self, n: int) -> str:
        self.telegram.wait(n)
        text: str = self.telegram.accepted()[n - 1].displayed["text"]
        return text


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account],
           telegram: TelegramStandIn) -> Linked:
    return Linked(client, make_user(plan="pro"), telegram)


def test_a_reply_to_a_notification_queues_for_that_tasks_session(linked: Linked) -> None:
    first = linked.notify("session-a")
    linked.notify("session-b")
    assert linked.send(_update("./next.sh --fast", reply_to=first)) == 200
    [row] = linked.audit()
    assert (row["outcome"], row["source"], row["actor"]) == ("queued", "telegram",
                                                             f"telegram:{OWNER}")
    queued = linked.command(row["command_id"])
    assert (queued["session_id"], queued["command"], queued["state"]) == (
        "session-a", "./next.sh --fast", "queued")
    assert linked.answer(4).startswith("claude-notify relay")
    assert "./next.sh --fast" in linked.answer(4)


def test_run_in_the_bot_chat_goes_to_the_latest_task_session(linked: Linked) -> None:
    linked.notify("session-a")
    linked.notify("session-b")
    assert linked.send(_update("/run make test")) == 200
    [row] = linked.audit()
    assert linked.command(row["command_id"])["session_id"] == "session-b"
    assert linked.command(row["command_id"])["command"] == "make test"


@pytest.mark.parametrize(("sender", "chat_type"), [(STRANGER, "private"), (STRANGER, "group"),
                                                   (OWNER, "group"), (OWNER, "supergroup")])
def test_only_the_owner_in_the_private_chat_is_heard(linked: Linked, sender: int,
                                                     chat_type: str) -> None:
    message_id = linked.notify("session-a")
    assert linked.send(_update("./next.sh", reply_to=message_id, sender=sender,
                               chat_type=chat_type)) == 200
    [row] = linked.audit()
    assert (row["outcome"], row["command_id"]) == ("refused", None)
    assert row["actor"] == f"telegram:{sender}"
    assert linked.telegram.count() == 2  # "linked" and the notification: strangers get no answer


def test_a_reply_to_something_else_is_refused_with_an_answer(linked: Linked) -> None:
    linked.notify("session-a")
    assert linked.send(_update("./next.sh", reply_to=424242)) == 200
    [row] = linked.audit()
    assert row["outcome"] == "refused" and "not a reply to a task" in row["reason"]
    assert "Not run" in linked.answer(3)


def test_a_forged_webhook_queues_nothing_and_plain_messages_are_ignored(linked: Linked) -> None:
    message_id = linked.notify("session-a")
    forged = _update("./next.sh", reply_to=message_id)
    assert linked.send(forged, {}) == 403
    assert linked.send(forged, {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}) == 403
    assert linked.send(_update("just chatting")) == 200  # not a reply, not /run
    assert linked.audit() == []


def test_telegram_commands_count_against_the_rate_limit(
    linked: Linked, monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(linked.client, per_minute=2)
    message_id = linked.notify("session-a")
    for _ in range(3):
        assert linked.send(_update("./next.sh", reply_to=message_id)) == 200
    assert [r["outcome"] for r in linked.audit()] == ["refused", "queued", "queued"]
    wait_for(lambda: linked.telegram.count() == 5, what="three answers")
    # The answers are sent side by side, so they may reach the chat in any order.
    answers = sorted(linked.answer(n).splitlines()[-1] for n in (3, 4, 5))
    assert answers == ["Not run: more than 2 commands in a minute: try again later.",
                       *["Queued on machine-1234: ./next.sh"] * 2]


@contextlib.contextmanager
def _replica(settings: Settings) -> Iterator[TestClient]:
    """A second app (its own runtime and worker) on the same database."""
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


def test_an_update_delivered_again_queues_once_whichever_replica_gets_it(
    linked: Linked, settings: Settings
) -> None:
    """Telegram re-sends an update it got no answer for in time: its ``update_id`` is kept in
    the database, so neither this replica nor another one queues it a second time."""
    message_id = linked.notify("session-a")
    again = _update("./next.sh", reply_to=message_id)
    pressed = linked.telegram.callback_query(message_id, _run_again(linked, message_id),
                                             sender=OWNER)
    with _replica(settings) as other:
        for client in (linked.client, other, linked.client):
            for update in (again, pressed):
                assert client.post("/v1/telegram/webhook", json=update,
                                   headers=HOOK).status_code == 200
    assert sorted((r["outcome"], r["command"]) for r in linked.audit()) == [
        ("queued", "./next.sh"), ("queued", "make test")]
    assert len(linked.telegram.answers_for(pressed)) == 1


def _run_again(linked: Linked, message_id: int) -> str:
    shown = next(r.displayed for r in linked.telegram.accepted()
                 if r.displayed.get("message_id") == message_id)
    rows = shown["reply_markup"]["inline_keyboard"]
    data: str = next(b["callback_data"] for row in rows for b in row
                     if b["text"] == "Run again")
    return data
