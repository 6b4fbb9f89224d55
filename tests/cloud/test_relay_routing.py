"""Where a relayed command goes, through the real app, worker and database (SQLite and
PostgreSQL) with the Telegram stand-in: a reply, a "Run again" press or a reply token runs on the
machine and in the directory of the task its notification was about. An events-only token (which
a CI job or a shared machine holds) can write later events for the same session, from another
machine or directory; they steer nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select
from standins.kit import event, provider_settings, telegram
from standins.telegram import TelegramStandIn
from tg_kit import MACHINE, OWNER, Chat, buttons, reply_token, update

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.relay.models import RelayCommand
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]
CWD = "/srv/app"
"""The directory of the task the notifications are about (``standins.kit.event``)."""


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


def _events_only(runtime: Runtime, chat: Chat) -> dict[str, str]:
    """The headers of a token that can only write events (what ``claude-notify login`` keeps
    on a CI machine)."""
    with runtime.sessions.begin() as session:
        user = session.get(User, chat.user.user_id)
        assert user is not None
        issued = auth.issue_token(session, user, scopes=["events:write"], name="ci")
        return {"Authorization": f"Bearer {issued.secret}"}


def _steer(chat: Chat, headers: dict[str, str], session_id: str = "session-a") -> None:
    """A later event of the session from another machine and directory, by the events token."""
    body = event(task_id=uuid.uuid4().hex, session_id=session_id, machine_id="machine-evil-01",
                 cwd="/tmp/elsewhere", command="true")
    body.pop("event_id")
    sent = chat.client.post("/v1/events", json=body, headers=headers)
    assert sent.status_code in (200, 201, 202), sent.text


def _queued(runtime: Runtime) -> list[tuple[str, str, str | None, str]]:
    with runtime.sessions() as session:
        rows = session.scalars(select(RelayCommand).order_by(RelayCommand.created_at)).all()
        return [(r.session_id, r.machine_id, r.cwd, r.command) for r in rows]


def test_a_reply_runs_where_the_replied_task_ran_whatever_came_later(
    chat: Chat, runtime: Runtime
) -> None:
    shown = chat.notify("session-a", command="./train.sh")
    _steer(chat, _events_only(runtime, chat))
    assert chat.send(update("./next.sh", chat=chat.chat, reply_to=shown["message_id"])) == 200
    assert chat.audit()[0]["outcome"] == "queued", chat.audit()
    assert _queued(runtime) == [("session-a", MACHINE, CWD, "./next.sh")]


def test_run_again_runs_where_the_task_ran_whatever_came_later(
    chat: Chat, runtime: Runtime
) -> None:
    shown = chat.notify("session-a", command="./train.sh")
    _steer(chat, _events_only(runtime, chat))
    pressed = chat.telegram.callback_query(shown["message_id"],
                                           buttons(shown)["Run again"]["callback_data"],
                                           sender=OWNER)
    assert chat.send(pressed) == 200
    wait_for(lambda: chat.telegram.answers_for(pressed), what="answerCallbackQuery")
    assert chat.audit()[0]["outcome"] == "queued", chat.audit()
    assert _queued(runtime) == [("session-a", MACHINE, CWD, "./train.sh")]


def test_a_reply_token_runs_where_its_task_ran_whatever_came_later(
    chat: Chat, runtime: Runtime
) -> None:
    token = reply_token(chat.notify("session-a"))
    _steer(chat, _events_only(runtime, chat))
    sent = chat.client.post("/v1/commands", json={"command": "./next.sh"},
                            headers={"Authorization": f"Bearer {token}"})
    assert sent.status_code == 202, sent.text
    assert _queued(runtime) == [("session-a", MACHINE, CWD, "./next.sh")]


def test_a_task_without_a_directory_is_refused_with_the_reason(
    chat: Chat, runtime: Runtime
) -> None:
    shown = chat.notify("session-a", cwd="")
    assert chat.send(update("./next.sh", chat=chat.chat, reply_to=shown["message_id"])) == 200
    [row] = chat.audit()
    assert (row["outcome"], row["reason"]) == ("refused",
                                               "the directory that task ran in is unknown")
    assert _queued(runtime) == []
    answers: list[Any] = wait_for(
        lambda: [m for m in chat.telegram.sent() if "Not run" in m["text"]],
        what="the refusal in the chat")
    assert "directory that task ran in is unknown" in answers[0]["text"]
