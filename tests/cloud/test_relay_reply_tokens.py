"""Reply tokens through the real app, worker and database (SQLite and PostgreSQL): a Telegram
task notification's link carries one; ``POST /v1/commands`` with it as the bearer queues for that
notification's session and nothing else; wrong, expired, other-session, moved-machine and
wrong-endpoint uses are refused (and audited where the token names an owner); only its hash is
stored."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standins.kit import provider_settings, telegram
from standins.telegram import TelegramStandIn
from starlette.websockets import WebSocketDisconnect
from tg_kit import MACHINE, Chat, buttons, reply_token

from claude_notify.cloud.server.db.models import Channel, Delivery, DeliveryAttempt
from claude_notify.cloud.server.relay.models import RelayReplyToken
from claude_notify.cloud.server.relay.queue import RelayPolicy
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

__all__ = ["telegram"]


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn,
             request: pytest.FixtureRequest) -> Settings:
    """The Telegram stand-in's, and a test's own values (indirect parameters) on top."""
    own: dict[str, Any] = getattr(request, "param", {})
    return settings.replace(**provider_settings(telegram=telegram.base_url), **own)


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


def _post(client: TestClient, token: str, json: dict[str, object]) -> tuple[int, dict[str, object]]:
    answer = client.post("/v1/commands", json=json,
                         headers={"Authorization": f"Bearer {token}"})
    body: dict[str, object] = answer.json()
    return answer.status_code, body


def test_the_token_in_the_task_link_queues_for_its_session_only(
    chat: Chat, runtime: Runtime
) -> None:
    token = reply_token(chat.notify("session-a"))
    other = reply_token(chat.notify("session-b"))
    status, body = _post(chat.client, token, {"command": "./next.sh"})
    assert status == 202, body
    assert (body["session_id"], body["machine_id"], body["command"]) == ("session-a", MACHINE,
                                                                         "./next.sh")
    status, body = _post(chat.client, other, {"command": "make", "session_id": "session-b"})
    assert status == 202, body
    audited = chat.audit()
    assert [(r["outcome"], r["source"]) for r in audited] == [("queued", "reply-token")] * 2
    first = audited[1]
    assert first["actor"].startswith("reply token ") and token not in first["actor"]
    with runtime.sessions() as session:
        rows = session.scalars(select(RelayReplyToken)).all()
    assert len(rows) == 2  # one per notification
    secret = token.partition(".")[2]
    mine = next(r for r in rows if r.id.hex in token)
    assert mine.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in (r.token_hash, r.session_id, r.machine_id) for r in rows)
    assert mine.last_used_at is not None and mine.session_id == "session-a"


def _lifetimes(runtime: Runtime) -> list[int]:
    with runtime.sessions() as session:
        return sorted(round((r.expires_at - r.created_at).total_seconds())
                      for r in session.scalars(select(RelayReplyToken)))


def test_the_token_lasts_a_day_by_default(chat: Chat, runtime: Runtime) -> None:
    chat.notify()
    assert _lifetimes(runtime) == [86_400]
    assert RelayPolicy.from_env({}).reply_token_ttl_s == 86_400


@pytest.mark.parametrize("settings", [{"relay_reply_token_ttl_s": 60}], indirect=True)
def test_the_token_lasts_as_configured_and_is_refused_once_expired(
    chat: Chat, runtime: Runtime
) -> None:
    short = reply_token(chat.notify())
    assert _lifetimes(runtime) == [60]
    with runtime.sessions.begin() as session:
        session.execute(update(RelayReplyToken).where(RelayReplyToken.id == uuid.UUID(
            short[4:36])).values(expires_at=utcnow() - timedelta(seconds=1)))
    status, body = _post(chat.client, short, {"command": "./next.sh"})
    assert status == 401 and "expired" in str(body)
    [row] = chat.audit()
    assert (row["outcome"], row["reason"], row["command_id"]) == (
        "refused", "the reply token has expired", None)


def test_wrong_other_session_and_moved_machine_are_refused_and_audited(chat: Chat) -> None:
    token = reply_token(chat.notify("session-a"))
    chat.notify("session-b")
    head, _, secret = token.partition(".")
    wrong_secret = head + "." + ("A" if secret[0] != "A" else "B") + secret[1:]
    assert _post(chat.client, wrong_secret, {"command": "./next.sh"})[0] == 401
    status, body = _post(chat.client, token, {"command": "./next.sh", "session_id": "session-b"})
    assert status == 403 and "another session" in str(body)
    # The session later runs a task on another machine: the token stays with its own machine.
    chat.notify("session-a", machine_id="machine-other-99")
    status, body = _post(chat.client, token, {"command": "./next.sh"})
    assert status == 202 and body["machine_id"] == MACHINE, body
    assert [(r["outcome"], r["reason"]) for r in chat.audit()] == [
        ("queued", None),
        ("refused", "this reply token is for another session"),
        ("refused", "wrong reply token")]


def test_a_token_queues_one_command_only(chat: Chat) -> None:
    token = reply_token(chat.notify("session-a"))
    assert _post(chat.client, token, {"command": "./next.sh"})[0] == 202
    status, body = _post(chat.client, token, {"command": "./again.sh"})
    assert status == 401 and "already used" in str(body), body
    assert [(r["outcome"], r["reason"], r["command"]) for r in chat.audit()] == [
        ("refused", "the reply token was already used", "./again.sh"),
        ("queued", None, "./next.sh")]


def test_a_refused_command_does_not_use_the_token_up(chat: Chat) -> None:
    token = reply_token(chat.notify("session-a"))
    status, body = _post(chat.client, token, {"command": "sudo reboot"})
    assert status == 403 and "banned" in str(body), body
    assert _post(chat.client, token, {"command": "./next.sh"})[0] == 202


@pytest.mark.parametrize("chat_id", [-100555, -4001])
def test_a_group_chat_gets_no_reply_token_even_with_group_replies_on(
    client: TestClient, make_user: Callable[..., Account], telegram: TelegramStandIn,
    runtime: Runtime, chat_id: int
) -> None:
    group = Chat(client, make_user(plan="pro"), telegram, chat=chat_id)
    patched = client.patch(f"/v1/channels/{group.channel_id}",
                           json={"config": {"allow_group_replies": True}},
                           headers=group.user.headers)
    assert patched.status_code == 200, patched.text
    shown = group.notify("session-a", command="./train.sh")
    found = buttons(shown)
    assert list(found) == ["Open task", "Run again", "Show log"]  # the owner's buttons stay
    assert "#reply=" not in found["Open task"]["url"]
    assert "cnr_" not in str(shown)
    with runtime.sessions() as session:
        assert session.scalars(select(RelayReplyToken)).all() == []


def test_a_token_already_in_a_group_chat_queues_nothing(chat: Chat, runtime: Runtime) -> None:
    """A token sent into a group before tokens were kept out of them (recorded here by making
    the chat a group after the token went out): its chat is checked again at each use."""
    token = reply_token(chat.notify("session-a"))
    with runtime.sessions.begin() as session:
        channel = session.get(Channel, uuid.UUID(chat.channel_id))
        assert channel is not None
        channel.config = {**channel.config, "chat_type": "supergroup"}
    status, body = _post(chat.client, token, {"command": "./next.sh"})
    assert status == 403 and "not sent to a private chat" in str(body), body
    [row] = chat.audit()
    assert (row["outcome"], row["reason"]) == ("refused",
                                               "this reply token was not sent to a private chat")


def test_a_chat_whose_type_was_not_recorded_gets_no_reply_token(
    chat: Chat, runtime: Runtime
) -> None:
    """A chat linked before its type was recorded: unknown counts as not private."""
    with runtime.sessions.begin() as session:
        channel = session.get(Channel, uuid.UUID(chat.channel_id))
        assert channel is not None and channel.config["chat_type"] == "private"
        channel.config = {k: v for k, v in channel.config.items() if k != "chat_type"}
    assert "#reply=" not in buttons(chat.notify("session-a"))["Open task"]["url"]


@pytest.mark.parametrize("presented", ["cnr_", "cnr_nothex.secret", "cnr_" + "0" * 32 + ".x",
                                       "cnr_" + "a" * 300])
def test_a_malformed_or_unknown_token_is_a_401(chat: Chat, presented: str) -> None:
    status, body = _post(chat.client, presented, {"command": "./next.sh"})
    assert status == 401 and body["error"] == {"code": "unauthorized",
                                               "message": "invalid or expired reply token"}
    assert chat.audit() == []


def test_the_token_works_nowhere_else(chat: Chat, runtime: Runtime) -> None:
    token = reply_token(chat.notify("session-a"))
    bearer = {"Authorization": f"Bearer {token}"}
    assert chat.client.get("/v1/tasks", headers=bearer).status_code == 401
    assert chat.client.get("/v1/audit", headers=bearer).status_code == 401
    assert chat.client.post("/v1/events", json={}, headers=bearer).status_code == 401
    assert chat.client.post("/v1/agents", json={"machine_id": MACHINE},
                            headers=bearer).status_code == 401
    with pytest.raises(WebSocketDisconnect) as refused, chat.client.websocket_connect(
            "/v1/agent", headers=bearer) as ws:
        ws.receive_json()
    assert refused.value.code == 1008
    # An API token without commands:write is still refused; one with it still needs a session.
    assert chat.client.post("/v1/commands", json={"command": "x"},
                            headers=chat.user.headers).status_code == 422


def test_sending_again_rotates_the_token(chat: Chat, runtime: Runtime) -> None:
    from claude_notify.cloud.server.delivery import engine

    token = reply_token(chat.notify("session-a"))
    with runtime.sessions.begin() as session:
        notification = session.scalars(select(Delivery).where(
            Delivery.kind == "event")).one()
        # As a worker would claim it for a re-send; "sent" keeps the real worker off it.
        notification.claim_token = claim = uuid.uuid4()
        notification.status = "sent"
    [prepared] = engine.prepare_many(runtime.sessions, [engine.Claim(notification.id, claim)],
                                     reply_token_ttl_s=runtime.settings.relay_reply_token_ttl_s)
    assert prepared.message.actions is not None
    fresh = prepared.message.actions.reply_token
    assert fresh is not None and fresh != token and fresh[:36] == token[:36]
    assert _post(chat.client, token, {"command": "./next.sh"})[0] == 401
    assert _post(chat.client, fresh, {"command": "./next.sh"})[0] == 202


def test_long_expired_tokens_are_cleared_when_the_next_is_issued(
    chat: Chat, runtime: Runtime
) -> None:
    old, recent = reply_token(chat.notify()), reply_token(chat.notify())
    with runtime.sessions.begin() as session:
        for token, age in ((old, timedelta(days=8)), (recent, timedelta(days=2))):
            session.execute(update(RelayReplyToken).where(
                RelayReplyToken.id == uuid.UUID(token[4:36])).values(expires_at=utcnow() - age))
    chat.notify()
    with runtime.sessions() as session:
        left = {r.id.hex for r in session.scalars(select(RelayReplyToken))}
    assert old[4:36] not in left and recent[4:36] in left and len(left) == 2
    status, _ = _post(chat.client, recent, {"command": "./next.sh"})
    assert status == 401 and chat.audit()[0]["reason"] == "the reply token has expired"


def test_the_token_stays_out_of_the_logs_and_the_delivery_records(
    chat: Chat, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = reply_token(chat.notify("session-a"))
    assert _post(chat.client, token, {"command": "./next.sh"})[0] == 202
    assert _post(chat.client, token + "x", {"command": "./next.sh"})[0] == 401
    secret = token.partition(".")[2]
    assert caplog.records and secret not in caplog.text
    with runtime.sessions() as session:
        stored = [str(v) for row in session.execute(select(DeliveryAttempt.detail)).all()
                  for v in row]
        stored += [str(v) for row in session.execute(
            select(Delivery.reason, Delivery.payload, Delivery.provider_id)).all()
            for v in row]
    assert stored and not any(secret in v for v in stored)
