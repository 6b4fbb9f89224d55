"""What a teammate must never get from a shared channel: a way to run something on another
member's machine (a reply token, a "Run again" button), or a sight of their approval requests."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from cloud_kit import Account, Mailbox
from fastapi.testclient import TestClient
from sqlalchemy import select
from teams_kit import join
from web_kit import browser_of, sign_in

from claude_notify.cloud.server.db.models import Channel, Delivery
from claude_notify.cloud.server.relay.actions import actions_for
from claude_notify.cloud.server.relay.approvals import answering_channels
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A Telegram bot (at an address where nothing answers: nothing here is sent)."""
    return settings.replace(telegram_bot_token="1:test",  # noqa: S106 - not a secret
                            telegram_api_base="http://127.0.0.1:9")


def _finished(client: TestClient, who: Account, session_id: str) -> None:
    sent = client.post("/v1/events", headers=who.headers, json={
        "type": "finished", "source": "run", "task_id": f"t-{uuid.uuid4().hex[:8]}",
        "machine_id": f"m-{who.email}", "session_id": session_id, "status": "failure",
        "exit_code": 1, "command": "make test", "cwd": "/home/me/project"})
    assert sent.status_code == 202, sent.text


def _private_chat(runtime: Runtime, channel_id: str, chat_id: int, *,
                  verified: bool = True) -> None:
    """What linking a Telegram private chat records (the linking itself is test_channel_linking's
    business); left unverified, its notifications are refused when queued, so no worker sends
    them (and issues their reply tokens) while the test asks what they would carry."""
    with runtime.sessions.begin() as db:
        channel = db.get(Channel, uuid.UUID(channel_id))
        assert channel is not None
        channel.config = {"chat_id": chat_id, "chat_type": "private", "tg_user_id": chat_id}
        channel.verified_at = utcnow() if verified else None


def test_a_shared_chat_never_carries_a_way_to_run_on_a_teammates_machine(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    owner = make_user(plan="pro")
    member = join(client, owner, f"m-{uuid.uuid4().hex[:6]}@example.com")
    # The owner's own private Telegram chat, added as the workspace's (shared) channel.
    shared = client.post("/v1/channels", headers=owner.headers, json={
        "type": "telegram", "config": {}, "rules": {"on": ["finished"]}, "personal": False})
    assert shared.status_code == 201, shared.text
    _private_chat(runtime, shared.json()["id"], 4242, verified=False)
    mine = client.post("/v1/channels", headers=member.headers, json={
        "type": "telegram", "config": {}, "rules": {"on": ["finished"]}})
    assert mine.status_code == 201 and mine.json()["personal"] is True, mine.text
    _private_chat(runtime, mine.json()["id"], 5151, verified=False)

    _finished(client, member, "s-member")
    _finished(client, owner, "s-owner")
    with runtime.sessions() as db:
        rows = db.execute(select(Delivery, Channel).join(Channel, Channel.id == Delivery.channel_id)
                          .where(Delivery.kind == "event")).all()
        offered = {(str(row.user_id), str(channel.id)): actions_for(
            db, row, channel, {"source": "run"}, reply_token_ttl_s=600)
            for row, channel in rows}
        db.rollback()
    member_id = str(member.user_id)
    owner_id = str(owner.user_id)
    on_shared = offered[(member_id, shared.json()["id"])]  # the member's run, the owner's chat
    assert on_shared is not None
    assert (on_shared.reply_token, on_shared.run_again) == (None, None)
    own = offered[(member_id, mine.json()["id"])]  # the member's run, their own chat
    assert own is not None and own.reply_token and own.run_again
    owners = offered[(owner_id, shared.json()["id"])]  # the owner's run, the owner's chat
    assert owners is not None and owners.reply_token and owners.run_again
    assert (owner_id, mine.json()["id"]) not in offered  # a personal channel: its owner's only


def test_approval_cards_go_only_where_their_owner_alone_reads(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    owner = make_user(plan="pro")
    alone = make_user(plan="pro")
    member = join(client, owner, f"m-{uuid.uuid4().hex[:6]}@example.com")
    ids = {}
    for who, personal, chat in ((owner, False, 11), (owner, True, 12), (member, True, 13),
                                (alone, False, 14)):
        made = client.post("/v1/channels", headers=who.headers, json={
            "type": "telegram", "config": {}, "personal": personal})
        assert made.status_code == 201, made.text
        _private_chat(runtime, made.json()["id"], chat)
        ids[chat] = made.json()["id"]
    with runtime.sessions() as db:
        def cards(who: Account) -> set[int]:
            return {c.config["chat_id"] for c in answering_channels(db, who.user_id)}

        # The owner's shared channel is read by the team: no card of theirs goes there.
        assert cards(owner) == {12}
        assert cards(member) == {13}
        # Alone in their workspace, a shared channel is still only theirs.
        assert cards(alone) == {14}


def test_the_task_list_says_whose_machine_ran_a_teammates_task(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
    smtp_server: Mailbox,
) -> None:
    owner = make_user(plan="pro")
    member = join(client, owner, f"m-{uuid.uuid4().hex[:6]}@example.com")
    _finished(client, member, "s-member")
    _finished(client, owner, "s-owner")
    b = browser_of(client)
    sign_in(b, smtp_server, owner.email)
    rows = b.get("/app/tasks").text.split("<tr>")[2:]
    assert len(rows) == 2
    labels = sorted(re.findall(r'<span class="hint">([^<]*)</span>', row) for row in rows)
    assert labels == [[], [member.email]]  # the member's run says whose; the owner's own does not


def test_a_shared_chat_added_by_someone_who_leaves_stays_but_their_presses_do_not_count(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    owner = make_user(plan="pro")
    admin = join(client, owner, f"a-{uuid.uuid4().hex[:6]}@example.com", role="admin")
    made = client.post("/v1/channels", headers=admin.headers, json={
        "type": "telegram", "config": {}, "personal": False})
    assert made.status_code == 201, made.text
    _private_chat(runtime, made.json()["id"], -100777)  # a group; tg_user_id: the admin's
    removed = client.delete(f"/v1/workspace/members/{admin.user_id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    with runtime.sessions() as db:
        channel = db.get(Channel, uuid.UUID(made.json()["id"]))
        assert channel is not None
        # The team keeps its group; nobody's presses count there until the owner links it.
        assert (channel.user_id, channel.config) == (owner.user_id, {
            "chat_id": -100777, "chat_type": "private"})
