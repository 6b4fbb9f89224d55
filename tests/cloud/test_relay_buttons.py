"""A Telegram task notification's "Run again" and "Show log" buttons, and the owner's switch
for group chats, through the real app, worker and database (SQLite and PostgreSQL) with the
Telegram stand-in as the far end: a press from the linked owner queues the task's own command
for its session (through the same queue as a reply) or shows its stored log; anyone else, a
group without the switch, or a forged button gets nothing, every attempt is audited, and every
press is answered with ``answerCallbackQuery``."""

from __future__ import annotations

import dataclasses
import html
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from standins.kit import provider_settings, telegram
from standins.telegram import TOKEN, TelegramStandIn
from tg_kit import MACHINE, OWNER, STRANGER, Chat, buttons, update

from claude_notify.cloud.server import logs
from claude_notify.cloud.server.channels.telegram import TEXT_LIMIT
from claude_notify.cloud.server.db.models import Delivery, Task
from claude_notify.cloud.server.logcrypt import LogCipher
from claude_notify.cloud.server.logsetup import configure
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.relay.telegram import replied_task
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

__all__ = ["telegram"]
GROUP = -100555


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


@pytest.fixture
def group(client: TestClient, make_user: Callable[..., Account],
          telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram, chat=GROUP)


def _limits(client: TestClient, **changes: Any) -> None:
    """Change this app's relay limits (its settings' ``relay_*`` values) from now on."""
    relay = relay_of(client.app.state)
    relay.policy = dataclasses.replace(relay.policy, **changes)

def _press(chat: Chat, shown: dict[str, Any], label: str, *, sender: int = OWNER,
           chat_type: str | None = None) -> dict[str, Any]:
    """Press a button of a displayed message; the update, once the server answered it."""
    kind = chat_type or ("private" if chat.chat > 0 else "group")
    pressed = chat.telegram.callback_query(shown["message_id"], buttons(shown)[label]
                                           ["callback_data"], sender=sender, chat_type=kind)
    assert chat.send(pressed) == 200
    wait_for(lambda: chat.telegram.answers_for(pressed), what="answerCallbackQuery")
    return pressed


def test_a_shell_task_notification_has_run_again_and_show_log_next_to_its_link(
    chat: Chat,
) -> None:
    shown = chat.notify(command="./train.sh --epochs 3")
    found = buttons(shown)
    assert list(found) == ["Open task", "Run again", "Show log"]
    for label in ("Run again", "Show log"):
        data = found[label]["callback_data"]
        assert len(data.encode()) <= 64 and "train" not in data and "session" not in data
    assert found["Run again"]["callback_data"] != found["Show log"]["callback_data"]


def test_a_claude_task_or_a_task_without_a_session_gets_show_log_but_not_run_again(
    chat: Chat,
) -> None:
    claude = chat.notify(command="claude", source="claude-code")
    assert list(buttons(claude)) == ["Open task", "Show log"]
    assert "#reply=cnr_" in buttons(claude)["Open task"]["url"]  # a reply continues Claude
    no_session = chat.notify(session_id=None)
    assert list(buttons(no_session)) == ["Open task", "Show log"]
    assert "#reply=" not in buttons(no_session)["Open task"]["url"]  # nothing to reply to


def test_run_again_from_the_owner_queues_the_tasks_command_for_its_session(chat: Chat) -> None:
    shown = chat.notify("session-a", command="./train.sh --epochs 3")
    chat.notify("session-b", command="make lint")
    pressed = _press(chat, shown, "Run again")
    [row] = chat.audit()
    assert (row["outcome"], row["source"], row["actor"]) == ("queued", "telegram",
                                                             f"telegram:{OWNER}")
    queued = chat.command(row["command_id"])
    assert (queued["session_id"], queued["machine_id"], queued["command"], queued["kind"]) == (
        "session-a", MACHINE, "./train.sh --epochs 3", "shell")
    [answer] = chat.telegram.answers_for(pressed)
    assert answer["text"].startswith("Queued on") and "./train.sh --epochs 3" in answer["text"]


def test_show_log_answers_with_the_stored_tail_escaped_within_the_limit(chat: Chat) -> None:
    task_id = "t-log-1"
    head = "<b>not bold</b> & <script>alert(1)</script>\n"
    lines = "".join(f"line {i:05d} 🚀 ok\n" for i in range(600))  # well beyond 4,096 characters
    registered = chat.client.post("/v1/tasks", json={"cmd": "./train.sh", "task_id": task_id,
                                                     "session_id": "session-a",
                                                     "machine_id": MACHINE},
                                  headers=chat.user.headers)
    assert registered.status_code in (200, 201), registered.text
    stored = chat.client.post(f"/v1/tasks/{task_id}/log", content=(head + lines).encode(),
                              headers={**chat.user.headers, "Content-Type": "text/plain"})
    assert stored.status_code in (200, 201), stored.text
    shown = chat.notify(task_id=task_id, command="./train.sh", tail="short tail from the event")
    before = len(chat.telegram.sent())
    pressed = _press(chat, shown, "Show log")
    [answer] = chat.telegram.answers_for(pressed)
    assert "text" not in answer  # the log itself is the answer
    wait_for(lambda: len(chat.telegram.sent()) > before, what="the log message")
    log = chat.telegram.sent()[before]
    assert log["chat_id"] == chat.chat
    assert log["reply_parameters"]["message_id"] == shown["message_id"]
    assert log["text"].startswith("Log of ./train.sh")
    assert log["text"].rstrip().endswith("line 00599 🚀 ok")
    assert "short tail from the event" not in log["text"]
    assert len(log["text"]) <= TEXT_LIMIT
    assert [e["type"] for e in log["entities"]] == ["b", "pre"]  # the log's own tags are text
    assert [r["outcome"] for r in chat.audit()] == ["shown"]


def test_show_log_falls_back_to_the_events_tail_escaped(chat: Chat) -> None:
    shown = chat.notify(tail="done <i>&amp; ok</i>")
    before = len(chat.telegram.sent())
    _press(chat, shown, "Show log")
    wait_for(lambda: len(chat.telegram.sent()) > before, what="the log message")
    log = chat.telegram.sent()[before]
    assert "done <i>&amp; ok</i>" in log["text"]
    assert html.escape("<i>") not in log["text"]  # escaped once: Telegram shows it literally


@pytest.mark.parametrize(("sender", "chat_type"), [(STRANGER, "private"), (STRANGER, "group"),
                                                   (OWNER, "group")])
@pytest.mark.parametrize("label", ["Run again", "Show log"])
def test_only_the_owner_in_the_private_chat_can_press(chat: Chat, sender: int, chat_type: str,
                                                      label: str) -> None:
    shown = chat.notify(command="./train.sh")
    before = len(chat.telegram.sent())
    pressed = _press(chat, shown, label, sender=sender, chat_type=chat_type)
    [row] = chat.audit()
    assert (row["outcome"], row["command_id"], row["actor"]) == ("refused", None,
                                                                 f"telegram:{sender}")
    assert row["session_id"] == "session-a"
    assert chat.telegram.answers_for(pressed) == [{"callback_query_id":
                                                   pressed["callback_query"]["id"]}]
    assert len(chat.telegram.sent()) == before  # no answer, no log


def test_a_forged_or_stale_button_runs_nothing(chat: Chat) -> None:
    shown = chat.notify(command="./train.sh")
    other = "run:" + "0" * 32
    for data in (other, "run:./train.sh", "log:zz", ""):
        pressed = chat.telegram.forged_callback(chat.chat, shown["message_id"], data,
                                                sender=OWNER)
        assert chat.send(pressed) == 200
        [answer] = wait_for(lambda p=pressed: chat.telegram.answers_for(p), what="an answer")
        assert answer["show_alert"] is True and answer["text"].startswith("Not run")
    assert [r["outcome"] for r in chat.audit()] == ["refused"] * 4
    assert all(r["command_id"] is None for r in chat.audit())
    unlinked = chat.telegram.forged_callback(999, shown["message_id"], other, sender=OWNER)
    assert chat.send(unlinked) == 200
    assert chat.telegram.answers_for(unlinked) == [
        {"callback_query_id": unlinked["callback_query"]["id"]}]
    assert len(chat.audit()) == 4


def test_run_again_goes_through_the_banlist_and_a_claude_task_cannot_be_run_again(
    chat: Chat,
) -> None:
    banned = chat.notify(command="sudo reboot")
    pressed = _press(chat, banned, "Run again")
    [answer] = chat.telegram.answers_for(pressed)
    assert "banned keyword" in answer["text"] and answer["show_alert"] is True
    assert [(r["outcome"], r["command"]) for r in chat.audit()] == [("refused", "sudo reboot")]
    # A Claude task's notification has no such button; pressing one anyway (forged) is refused.
    claude = chat.notify(command="claude", source="claude-code")
    forged = chat.telegram.forged_callback(
        chat.chat, claude["message_id"],
        "run:" + buttons(claude)["Show log"]["callback_data"].split(":")[1], sender=OWNER)
    assert chat.send(forged) == 200
    [answer] = wait_for(lambda: chat.telegram.answers_for(forged), what="an answer")
    assert "Claude Code session" in answer["text"]
    assert [r["outcome"] for r in chat.audit()] == ["refused", "refused"]


def test_presses_count_against_the_rate_limit(chat: Chat,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(chat.client, per_minute=2)
    shown = chat.notify(command="./train.sh")
    answers = [chat.telegram.answers_for(_press(chat, shown, "Run again"))[0] for _ in range(3)]
    assert [a["text"].split(":")[0] for a in answers] == ["Queued on " + MACHINE[:12]] * 2 + [
        "Not run"]
    assert [r["outcome"] for r in chat.audit()] == ["refused", "queued", "queued"]


def test_the_group_switch_lets_only_the_owner_command_from_the_group(group: Chat) -> None:
    shown = group.notify(command="./train.sh")
    assert group.send(update("./next.sh", chat=GROUP, reply_to=shown["message_id"],
                             chat_type="supergroup")) == 200
    _press(group, shown, "Run again")
    assert [(r["outcome"], r["reason"]) for r in group.audit()] == [
        ("refused", "commands are taken only in the private chat with the bot")] * 2

    patched = group.client.patch(f"/v1/channels/{group.channel_id}",
                                 json={"config": {"allow_group_replies": True}},
                                 headers=group.user.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["allow_group_replies"] is True
    assert patched.json()["verified"] is True  # not a new recipient: no new link needed

    assert group.send(update("./next.sh", chat=GROUP, reply_to=shown["message_id"],
                             chat_type="group")) == 200
    _press(group, shown, "Run again")
    stranger = _press(group, shown, "Run again", sender=STRANGER)
    assert group.send(update("/run make", chat=GROUP, sender=STRANGER, chat_type="group")) == 200
    rows = group.audit()
    assert [(r["outcome"], r["actor"]) for r in rows[:4]] == [
        ("refused", f"telegram:{STRANGER}"), ("refused", f"telegram:{STRANGER}"),
        ("queued", f"telegram:{OWNER}"), ("queued", f"telegram:{OWNER}")]
    assert {group.command(r["command_id"])["command"] for r in rows[2:4]} == {"./next.sh",
                                                                              "./train.sh"}
    assert "text" not in group.telegram.answers_for(stranger)[0]

    off = group.client.patch(f"/v1/channels/{group.channel_id}", json={"config": {}},
                             headers=group.user.headers)
    assert "allow_group_replies" not in off.json()["config"]
    assert group.send(update("./again.sh", chat=GROUP, reply_to=shown["message_id"],
                             chat_type="group")) == 200
    assert group.audit()[0]["outcome"] == "refused"


@pytest.mark.parametrize("config", [{"allow_group_replies": "yes"}, {"chat_id": 1},
                                    {"allow_group_replies": True, "tg_user_id": 5}])
def test_the_group_switch_takes_only_a_boolean(group: Chat, config: dict[str, Any]) -> None:
    answer = group.client.patch(f"/v1/channels/{group.channel_id}", json={"config": config},
                                headers=group.user.headers)
    assert answer.status_code == 422, answer.text
    shown = group.client.get(f"/v1/channels/{group.channel_id}", headers=group.user.headers)
    assert shown.json()["config"]["chat_id"] == GROUP


def test_a_reply_finds_its_notification_through_the_provider_id_index(
    chat: Chat, runtime: Runtime
) -> None:
    """The reply → notification lookup is an index search, not a scan of the chat's history."""
    chat.notify()
    channel_id = uuid.UUID(chat.channel_id)
    with runtime.sessions.begin() as session:  # a chat with a long history, and others'
        session.execute(insert(Delivery), [
            {"id": uuid.uuid4(), "user_id": chat.user.user_id, "channel_type": "telegram",
             "channel_id": channel_id if n % 4 == 0 else None, "kind": "event",
             "status": "sent", "attempts": 1, "provider_id": str(5000 + n),
             "created_at": utcnow()} for n in range(4000)])
    by_reply = _plan(runtime, replied_task(channel_id, 1042))
    assert "ix_notifications_channel_provider" in by_reply, by_reply
    assert "Seq Scan on notifications" not in by_reply


def _plan(runtime: Runtime, stmt: Any) -> str:
    engine = runtime.engine
    compiled = stmt.compile(dialect=engine.dialect)
    sqlite = engine.dialect.name == "sqlite"
    values = {k: (v.hex if sqlite and isinstance(v, uuid.UUID) else v)
              for k, v in compiled.params.items()}
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        if sqlite:
            params: Any = tuple(values[k] for k in compiled.positiontup or ())
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
        else:
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", values).all()
    return " ".join(str(row) for row in plan)


def test_the_log_tail_is_read_from_the_newest_chunks_only(chat: Chat, runtime: Runtime) -> None:
    task_id = "t-tail-1"
    assert chat.client.post("/v1/tasks", json={"cmd": "make", "task_id": task_id},
                            headers=chat.user.headers).status_code in (200, 201)
    assert chat.client.post("/v1/tasks", json={"cmd": "true", "task_id": "t-empty"},
                            headers=chat.user.headers).status_code in (200, 201)
    chunks = [f"chunk {i} ".encode() * (i + 1) for i in range(6)]
    for chunk in chunks:
        assert chat.client.post(f"/v1/tasks/{task_id}/log", content=chunk, headers={
            **chat.user.headers, "Content-Type": "application/octet-stream"}).status_code == 200
    whole = b"".join(chunks)
    cipher = LogCipher(runtime.settings.log_keys)
    with runtime.sessions() as session:
        task = session.scalars(select(Task).where(Task.key == task_id)).one()
        for size in (1, 7, len(chunks[-1]), len(chunks[-1]) + 1, 100, len(whole), 10**6):
            assert logs.read_tail(session, task=task, cipher=cipher, max_bytes=size) == \
                whole[-size:]
        empty = session.scalars(select(Task).where(Task.key == "t-empty")).one()
        assert logs.read_tail(session, task=empty, cipher=cipher, max_bytes=10) == b""


def test_the_server_logs_never_show_the_bot_token(
    chat: Chat, capfd: pytest.CaptureFixture[str]
) -> None:
    """Telegram's method URLs carry the operator's bot token; httpx would log them at INFO."""
    configure(logging.INFO)
    try:
        shown = chat.notify(command="./train.sh")
        _press(chat, shown, "Show log")
    finally:
        logging.getLogger().handlers[:] = []
    err = capfd.readouterr().err
    assert '"logger": "claude_notify.server.access"' in err  # the server did log, as JSON
    assert TOKEN not in err and TOKEN.split(":")[1] not in err


def test_a_press_without_a_message_is_answered_and_nothing_else(chat: Chat) -> None:
    shown = chat.notify(command="./train.sh")
    pressed = chat.telegram.callback_query(shown["message_id"], buttons(shown)["Run again"]
                                           ["callback_data"], sender=OWNER)
    del pressed["callback_query"]["message"]  # as for a message sent in inline mode
    pressed["callback_query"]["inline_message_id"] = "AAAA"
    assert chat.send(pressed) == 200
    assert chat.telegram.answers_for(pressed) == [
        {"callback_query_id": pressed["callback_query"]["id"]}]
    assert chat.audit() == []


def test_a_stranger_s_presses_do_not_use_up_the_owner_s_minute(
    group: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(group.client, per_minute=2)
    patched = group.client.patch(f"/v1/channels/{group.channel_id}",
                                 json={"config": {"allow_group_replies": True}},
                                 headers=group.user.headers)
    assert patched.status_code == 200, patched.text
    shown = group.notify(command="./train.sh")
    for _ in range(4):
        _press(group, shown, "Run again", sender=STRANGER)
    [answer] = group.telegram.answers_for(_press(group, shown, "Run again"))
    assert answer["text"].startswith("Queued on " + MACHINE[:12]), answer
    rows = group.audit()
    assert [(r["outcome"], r["actor"]) for r in rows] == [
        ("queued", f"telegram:{OWNER}"), *[("refused", f"telegram:{STRANGER}")] * 4]


def test_show_log_presses_are_held_to_the_rate_limit_too(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    _limits(chat.client, per_minute=2)
    shown = chat.notify(command="./train.sh")
    answers = [chat.telegram.answers_for(_press(chat, shown, "Show log"))[0] for _ in range(3)]
    assert answers[2] == {"callback_query_id": answers[2]["callback_query_id"],
                          "text": "Not shown: more than 2 commands in a minute: try again later.",
                          "show_alert": True}
    assert [(r["outcome"], r["reason"] or "") for r in chat.audit()] == [
        ("refused", "more than 2 commands in a minute: try again later"), ("shown", ""),
        ("shown", "")]
    wait_for(lambda: sum(m["text"].startswith("Log of") for m in chat.telegram.sent()) == 2,
             what="the two logs that were allowed")
