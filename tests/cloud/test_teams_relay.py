"""Issue #19: a team shares tasks, never machines. In a Pro team with owner O, admin A and
member M, M's machine has a registered agent and M's task (a session, a directory) is visible to
the whole workspace; a command, a "Run again" or an approval for M's machine is accepted only
from M. Every refusal is in the sender's relay audit log and in the workspace's activity log.

Through the real app, worker and database (SQLite and PostgreSQL), with the Telegram stand-in as
the phones: A's "Run again" from the web task page, A's and O's ``POST /v1/commands``, A's reply,
button press and reply token on M's notification in A's shared Telegram chat, and A's press on
M's approval card in a group both are in; M's own command from the web page and the API is
queued."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import tg_kit
from cloud_kit import Account, Mailbox, register_agent, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select
from standins.kit import event, provider_settings, telegram
from standins.telegram import TelegramStandIn
from teams_kit import queued_invite_secret
from test_approvals import ask
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.db.models import Delivery, Role, User
from claude_notify.cloud.server.relay import reply_tokens
from claude_notify.cloud.server.relay.models import Approval, RelayCommand
from claude_notify.cloud.server.relay.queue import target_of
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import access, service

__all__ = ["telegram"]
SECRET = "hook-secret_123"  # noqa: S105 - the test bot's webhook secret (standins.kit)
HOOK = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
MACHINE = "machine-of-m-0001"
SESSION = "session-of-m"
KEY = "task-of-m-7f3a"
TG_ADMIN, TG_MEMBER = 701, 702
"""The Telegram accounts of A and M."""
ADMIN_CHAT, GROUP = 701, -100_555
"""A's private chat with the bot; a group both A and M are in."""
REFUSAL = "only the person whose machine ran that task may run commands there"
_UPDATE_IDS = itertools.count(70001)


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


def join(runtime: Runtime, owner: Account, role: str) -> Account:
    """A new person invited into ``owner``'s workspace as ``role`` who accepted: the returned
    account's token acts in that workspace (their own one stays free)."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with runtime.sessions.begin() as session:
        inviter = session.get(User, owner.user_id)
        assert inviter is not None
        seat = access.seat(session, inviter, owner.user_id)
        assert seat is not None and seat.role == Role.OWNER
        invited = service.invite(session, runtime.settings, seat, email, role)
        assert invited.email == email
        joined = service.accept(session, runtime.settings, queued_invite_secret(session, email))
        assert joined is not None
        user, workspace = joined
        assert workspace.id == owner.user_id
        token = auth.issue_token(session, user, workspace_id=workspace.id)
        return Account(email, token.secret, user.id)


@dataclass
class Team:
    client: TestClient
    owner: Account
    admin: Account
    member: Account

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def report(self, who: Account, key: str = KEY, **fields: Any) -> dict[str, Any]:
        """A task of ``who``'s machine finishes; the planned notifications."""
        body = event(task_id=key, session_id=SESSION, machine_id=MACHINE, cwd="/srv/app",
                     command="make test", **fields)
        body.pop("event_id")
        sent = self.client.post("/v1/events", json=body, headers=who.headers)
        assert sent.status_code == 202, sent.text
        answer: dict[str, Any] = sent.json()
        return answer

    def audit(self, who: Account) -> list[dict[str, Any]]:
        rows = self.client.get("/v1/audit", headers=who.headers)
        assert rows.status_code == 200, rows.text
        found: list[dict[str, Any]] = rows.json()
        return found

    def activity(self, action: str = "relay.") -> list[dict[str, Any]]:
        rows = self.client.get("/v1/workspace/activity", params={"action": action},
                               headers=self.owner.headers)
        assert rows.status_code == 200, rows.text
        found: list[dict[str, Any]] = rows.json()
        return found

    def commands(self) -> list[RelayCommand]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(RelayCommand).order_by(RelayCommand.created_at)))


@pytest.fixture
def team(client: TestClient, make_user: Callable[..., Account]) -> Team:
    owner = make_user(plan="pro")
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    made = Team(client, owner, join(runtime, owner, Role.ADMIN), join(runtime, owner, Role.MEMBER))
    register_agent(client, made.member, MACHINE)
    return made


def assert_refused_for(team: Team, who: Account, *, source: str) -> dict[str, Any]:
    """``who``'s one relay audit entry: a refusal for M's machine and session."""
    [row] = team.audit(who)
    assert (row["outcome"], row["source"], row["command_id"]) == ("refused", source, None)
    assert (row["reason"], row["machine_id"], row["session_id"]) == (REFUSAL, MACHINE, SESSION)
    return row


# --------------------------------------------------------------------------- the API


def test_only_the_machines_owner_queues_through_the_api(
    team: Team, make_user: Callable[..., Account]
) -> None:
    team.report(team.member)
    command = {"session_id": SESSION, "command": "cat ~/.ssh/id_ed25519"}
    for who in (team.admin, team.owner):
        refused = team.client.post("/v1/commands", json=command, headers=who.headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == REFUSAL
        assert_refused_for(team, who, source="api")
        assert team.audit(who)[0]["command"] == command["command"]
    # A stranger learns nothing about the session: there is none of theirs.
    stranger = make_user(plan="pro")
    unknown = team.client.post("/v1/commands", json=command, headers=stranger.headers)
    assert unknown.status_code == 404, unknown.text
    # The refusals are in the workspace's activity log too, with who tried and whose machine.
    logged = team.activity()
    assert [(e["action"], e["actor"], e["target"]) for e in logged] == [
        ("relay.refused", team.owner.email, team.member.email),
        ("relay.refused", team.admin.email, team.member.email)]
    assert logged[0]["detail"] == {"machine_id": MACHINE, "session_id": SESSION,
                                   "source": "api"}
    assert team.commands() == []

    mine = team.client.post("/v1/commands", json={"session_id": SESSION, "command": "make test"},
                            headers=team.member.headers)
    assert mine.status_code == 202, mine.text
    assert (mine.json()["state"], mine.json()["machine_id"]) == ("queued", MACHINE)
    [row] = team.commands()
    assert (row.user_id, row.cwd, row.command) == (team.member.user_id, "/srv/app", "make test")
    assert team.audit(team.member)[0]["outcome"] == "queued"
    assert len(team.activity()) == 2  # the owner's own command is no event of the workspace's


def test_a_teammates_agent_on_a_machine_of_the_same_name_gets_nothing(team: Team) -> None:
    """A registers an agent claiming M's machine id: it serves A, never M's runs."""
    register_agent(team.client, team.admin, MACHINE)
    team.report(team.member)
    refused = team.client.post("/v1/commands", json={"session_id": SESSION, "command": "id"},
                               headers=team.admin.headers)
    assert refused.status_code == 403, refused.text
    assert team.commands() == []


# --------------------------------------------------------------------------- the web app


def _browser(team: Team, smtp: Mailbox, who: Account) -> TestClient:
    """``who`` signed in, looking at the team's workspace."""
    b = browser_of(team.client)
    sign_in(b, smtp, who.email)
    switched = b.post("/app/workspace/switch", data={
        "csrf": form_token(b.get("/app/workspace").text), "workspace_id": str(team.owner.user_id)})
    assert switched.status_code == 303, switched.text
    return b


def test_the_web_page_runs_again_only_for_the_machines_owner(team: Team,
                                                             smtp_server: Mailbox) -> None:
    team.report(team.member)
    admin = _browser(team, smtp_server, team.admin)
    page = admin.get(f"/app/t/{KEY}")
    assert page.status_code == 200  # the task is the workspace's: A reads it
    assert "make test" in page.text
    assert "Run again" not in page.text and f"/app/t/{KEY}/run" not in page.text
    csrf = form_token(admin.get("/app/tasks").text)
    for form in ({"again": "1"}, {"command": "./deploy.sh --prod"}):
        refused = admin.post(f"/app/t/{KEY}/run", data={"csrf": csrf, **form})
        assert refused.status_code == 403, refused.text
        assert REFUSAL in refused.text
    rows = team.audit(team.admin)
    assert [(r["outcome"], r["source"], r["reason"], r["machine_id"]) for r in rows] == [
        ("refused", "web", REFUSAL, MACHINE)] * 2
    assert {r["command"] for r in rows} == {"make test", "./deploy.sh --prod"}
    assert [(e["actor"], e["detail"]["source"]) for e in team.activity()] == [
        (team.admin.email, "web")] * 2
    assert team.commands() == []

    member = _browser(team, smtp_server, team.member)
    page = member.get(f"/app/t/{KEY}")
    assert "Run again" in page.text
    ran = member.post(f"/app/t/{KEY}/run", data={"csrf": form_token(page.text), "again": "1"})
    assert ran.status_code == 303, ran.text
    [row] = team.commands()
    assert (row.user_id, row.machine_id, row.command, row.state) == (
        team.member.user_id, MACHINE, "make test", "queued")


# --------------------------------------------------------------------------- Telegram


def _update(body: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": next(_UPDATE_IDS), **body}


def _hook(client: TestClient, update: dict[str, Any]) -> None:
    assert client.post("/v1/telegram/webhook", json=update, headers=HOOK).status_code == 200


def link_telegram(team: Team, telegram: TelegramStandIn, who: Account, *, chat: int,
                  sender: int, personal: bool, group_replies: bool = False) -> str:
    """``who`` adds a Telegram channel and links it from ``chat`` as ``sender``."""
    made = team.client.post("/v1/channels", json={"type": "telegram", "config": {},
                                                  "personal": personal}, headers=who.headers)
    assert made.status_code == 201, made.text
    channel_id: str = made.json()["id"]
    code = team.client.post(f"/v1/channels/{channel_id}/link", headers=who.headers).json()
    before = len(telegram.sent_to(chat))
    _hook(team.client, tg_kit.update(code["command"], chat=chat, sender=sender,
                                chat_type="private" if chat > 0 else "group"))
    wait_for(lambda: len(telegram.sent_to(chat)) > before, what="the linked message")
    if group_replies:
        patched = team.client.patch(f"/v1/channels/{channel_id}",
                                    json={"config": {"allow_group_replies": True}},
                                    headers=who.headers)
        assert patched.status_code == 200, patched.text
    return channel_id


def _buttons(shown: dict[str, Any]) -> dict[str, dict[str, str]]:
    rows = (shown.get("reply_markup") or {}).get("inline_keyboard") or []
    return {b["text"]: b for row in rows for b in row}


def _notified(team: Team, telegram: TelegramStandIn, chat: int) -> dict[str, Any]:
    """M's task finishes; the notification A's shared chat shows, once recorded as sent."""
    before = len(telegram.sent_to(chat))
    planned = team.report(team.member)["notifications"]
    [shared] = [p for p in planned if p["channel_type"] == "telegram"]
    wait_for(lambda: len(telegram.sent_to(chat)) > before, what="the notification")

    def sent() -> bool:
        with team.runtime.sessions() as session:
            row = session.get(Delivery, uuid.UUID(shared["id"]))
            return row is not None and row.status == "sent"

    wait_for(sent, what="the notification to be recorded as sent")
    shown: dict[str, Any] = telegram.sent_to(chat)[before]
    return shown


def test_a_teammates_reply_and_run_again_in_a_shared_chat_are_refused(
    team: Team, telegram: TelegramStandIn
) -> None:
    """A's shared Telegram chat gets M's notification (the chat is the workspace's); what A
    sends back from it is A's, and A may not run anything on M's machine."""
    link_telegram(team, telegram, team.admin, chat=ADMIN_CHAT, sender=TG_ADMIN, personal=False)
    shown = _notified(team, telegram, ADMIN_CHAT)
    assert "make test" in shown["text"]

    _hook(team.client, tg_kit.update("./deploy.sh", chat=ADMIN_CHAT, sender=TG_ADMIN,
                                reply_to=shown["message_id"]))
    assert_refused_for(team, team.admin, source="telegram")
    answer = wait_for(lambda: [m for m in telegram.sent_to(ADMIN_CHAT)
                               if m["text"].startswith("claude-notify relay")],
                      what="the refusal in the chat")
    assert REFUSAL in answer[-1]["text"]

    # "Run again" is not offered there (a press counts as the chat owner's, A's); a press with
    # the button's data anyway (a message sent before this rule) is refused the same way.
    assert "Run again" not in _buttons(shown) and "Show log" in _buttons(shown)
    log_data = _buttons(shown)["Show log"]["callback_data"]
    assert log_data.startswith("log:")
    pressed = telegram.forged_callback(ADMIN_CHAT, shown["message_id"],
                                       "run:" + log_data.removeprefix("log:"), sender=TG_ADMIN)
    _hook(team.client, pressed)
    assert telegram.answers_for(pressed)[0]["text"] == f"Not run: {REFUSAL}."
    rows = team.audit(team.admin)
    assert [(r["outcome"], r["reason"], r["command"], r["machine_id"]) for r in rows] == [
        ("refused", REFUSAL, "make test", MACHINE), ("refused", REFUSAL, "./deploy.sh", MACHINE)]
    assert [(e["actor"], e["target"], e["detail"]["source"]) for e in team.activity()] == [
        (team.admin.email, team.member.email, "telegram")] * 2
    assert team.commands() == []


def test_a_notification_in_a_teammates_chat_carries_no_reply_token_and_none_works_there(
    team: Team, telegram: TelegramStandIn
) -> None:
    """A reply token works for whoever holds it, as its owner: it must never reach a chat M does
    not alone read, such as A's private chat on the workspace's shared channel."""
    link_telegram(team, telegram, team.admin, chat=ADMIN_CHAT, sender=TG_ADMIN, personal=False)
    shown = _notified(team, telegram, ADMIN_CHAT)
    opened = _buttons(shown)["Open task"]["url"]
    assert "#reply=" not in opened, opened

    # A token minted for that notification anyway (as a server before this rule did) queues
    # nothing either, and its refusal is audited for M.
    with team.runtime.sessions.begin() as session:
        row = session.scalar(select(Delivery).where(Delivery.channel_type == "telegram",
                                                    Delivery.user_id == team.member.user_id))
        assert row is not None
        target = target_of(session, row)
        assert target is not None
        token = reply_tokens.issue(session, row, target, ttl_s=600)
        assert token is not None
    used = team.client.post("/v1/commands", json={"command": "id"},
                            headers={"Authorization": f"Bearer {token}"})
    assert used.status_code == 403, used.text
    [audited] = team.audit(team.member)
    assert (audited["outcome"], audited["source"], audited["machine_id"]) == (
        "refused", "reply-token", MACHINE)
    assert team.commands() == []


def test_m_s_own_reply_token_in_m_s_private_chat_still_works(
    team: Team, telegram: TelegramStandIn
) -> None:
    link_telegram(team, telegram, team.member, chat=TG_MEMBER, sender=TG_MEMBER, personal=True)
    shown = _notified(team, telegram, TG_MEMBER)
    token = _buttons(shown)["Open task"]["url"].partition("#reply=")[2]
    assert token.startswith(reply_tokens.PREFIX)
    used = team.client.post("/v1/commands", json={"command": "make test"},
                            headers={"Authorization": f"Bearer {token}"})
    assert used.status_code == 202, used.text
    [row] = team.commands()
    assert (row.user_id, row.machine_id) == (team.member.user_id, MACHINE)


# --------------------------------------------------------------------------- approvals


@contextmanager
def m_agent(team: Team) -> Iterator[Any]:
    token = register_agent(team.client, team.member, MACHINE)
    with team.client.websocket_connect("/v1/agent",
                                       headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        yield ws


def test_a_teammate_pressing_approve_on_m_s_card_is_refused(
    team: Team, telegram: TelegramStandIn, smtp_server: Mailbox
) -> None:
    """M's approval card in a group A is also in (M switched group replies on): A's press is
    refused and audited, M's answers it; A's browser cannot open it either."""
    link_telegram(team, telegram, team.member, chat=GROUP, sender=TG_MEMBER, personal=True,
                  group_replies=True)
    # A's shared channel in the same group: the card is still M's, not the workspace's.
    link_telegram(team, telegram, team.admin, chat=GROUP, sender=TG_ADMIN, personal=False,
                  group_replies=True)
    with m_agent(team) as ws:
        asked = ask(ws, "rm -rf build")

        def card() -> dict[str, Any] | None:
            with team.runtime.sessions() as session:
                row = session.get(Approval, uuid.UUID(asked["id"]))
                stored = row is not None and any(c.get("chat") == GROUP for c in row.cards or [])
            shown = [m for m in telegram.sent_to(GROUP) if m["text"].startswith("🔐")]
            return shown[0] if stored and shown else None

        shown = wait_for(card, what="M's approval card")
        assert len([m for m in telegram.sent_to(GROUP) if m["text"].startswith("🔐")]) == 1
        allow = _buttons(shown)["Allow"]["callback_data"]
        pressed = telegram.callback_query(shown["message_id"], allow, sender=TG_ADMIN,
                                          chat_type="group")
        _hook(team.client, pressed)
        assert "text" not in telegram.answers_for(pressed)[0]
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}  # no decision reached M's machine
        with team.runtime.sessions() as session:
            row = session.get(Approval, uuid.UUID(asked["id"]))
            assert row is not None and row.state == "pending"
        [refused] = [r for r in team.audit(team.member) if r["outcome"] == "refused"]
        assert (refused["actor"], refused["command_id"]) == (f"telegram:{TG_ADMIN}", asked["id"])
        assert team.audit(team.admin) == []

        admin = _browser(team, smtp_server, team.admin)
        assert admin.get(f"/app/approvals/{asked['id']}").status_code == 404
        assert admin.post(f"/app/approvals/{asked['id']}", data={
            "csrf": form_token(admin.get("/app/tasks").text), "answer": "allow"},
        ).status_code == 404

        mine = telegram.callback_query(shown["message_id"], allow, sender=TG_MEMBER,
                                       chat_type="group")
        _hook(team.client, mine)
        assert telegram.answers_for(mine)[0]["text"] == "Allowed."
        decided = ws.receive_json()
        assert (decided["type"], decided["id"], decided["state"]) == (
            "decision", asked["id"], "allowed")
