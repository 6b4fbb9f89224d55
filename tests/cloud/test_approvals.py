"""Approvals on the server, through the real app, database (SQLite and PostgreSQL) and agent
tunnel, with the Telegram stand-in as the phone: the agent files an approval over its WebSocket,
the owner's chat gets a card, a press answers it over the same WebSocket, the card is edited.

Attacks first: a stranger's press in the owner's chat, a press forged in another chat, a late or
repeated press, an approval already withdrawn or expired; then two approvals answered out of
order, and what the card shows of hostile input."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from cloud_kit import Account, Mailbox, register_agent, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standins.kit import APP_URL, provider_settings, telegram
from standins.telegram import TelegramStandIn
from tg_kit import MACHINE, OWNER, STRANGER, Chat
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.relay import approvals, tunnel
from claude_notify.cloud.server.relay.models import Approval, RelayAudit
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import utcnow

__all__ = ["telegram"]
SESSION = "5f0c3e9a-6a43-4d0e-9d8b-0d9f3c0a1b2c"


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


def digest(tool: str, tool_input: dict[str, Any]) -> str:
    canonical = json.dumps([tool, tool_input], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ask(ws: Any, command: str = "rm -rf build", *, suggestions: tuple[str, ...] = (),
        approval_id: str | None = None, timeout_s: float = 600) -> dict[str, Any]:
    message = {"type": "approval", "id": approval_id or str(uuid.uuid4()),
               "session_id": SESSION, "tool_use_id": None, "tool_name": "Bash",
               "digest": digest("Bash", {"command": command}), "display": command,
               "cwd": "/srv/project", "suggestions": list(suggestions), "timeout_s": timeout_s}
    ws.send_json(message)
    return message


@contextmanager
def agent(client: TestClient, user: Account) -> Iterator[Any]:
    token = register_agent(client, user, MACHINE)
    with client.websocket_connect("/v1/agent",
                                  headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        yield ws


def card(telegram: TelegramStandIn, chat: Chat, n: int = 1) -> dict[str, Any]:
    """The ``n``-th approval card shown in the chat, once the server recorded it."""
    shown: list[dict[str, Any]] = wait_for(
        lambda: len(c := [m for m in telegram.sent_to(chat.chat)
                          if m["text"].startswith("🔐")]) >= n and c,
        what=f"{n} approval card(s)")
    return recorded(chat, shown[n - 1])


def recorded(chat: Chat, shown: dict[str, Any]) -> dict[str, Any]:
    """``shown`` once the server has stored it with its approval: it sends a card, then stores
    it, and a press counts only on a stored card (one in between is no press of ours)."""
    runtime: Runtime = chat.client.app.state.runtime

    def stored() -> bool:
        with runtime.sessions() as session:
            return any(c.get("chat") == chat.chat and c.get("message") == shown["message_id"]
                       for row in session.scalars(select(Approval)) for c in row.cards or [])

    wait_for(stored, what="the card stored with its approval")
    return shown


def card_showing(telegram: TelegramStandIn, chat: Chat, command: str) -> dict[str, Any]:
    [shown] = [m for m in telegram.sent_to(chat.chat)
               if m["text"].startswith("🔐") and command in m["text"]]
    return shown


def card_showing_eventually(telegram: TelegramStandIn, chat: Chat,
                            command: str) -> dict[str, Any]:
    shown: dict[str, Any] = wait_for(
        lambda: next((m for m in telegram.sent_to(chat.chat)
                      if m["text"].startswith("🔐") and command in m["text"]), None),
        what=f"the card of {command!r}")
    return recorded(chat, shown)


def keys(shown: dict[str, Any]) -> dict[str, str]:
    """A card's buttons: their callback data, or for a link its URL."""
    rows = (shown.get("reply_markup") or {}).get("inline_keyboard") or []
    return {b["text"]: b.get("callback_data") or b["url"] for row in rows for b in row}


def press(telegram: TelegramStandIn, chat: Chat, shown: dict[str, Any], button: str, *,
          sender: int = OWNER) -> list[dict[str, Any]]:
    pressed = telegram.callback_query(shown["message_id"], keys(shown)[button], sender=sender)
    assert chat.send(pressed) == 200
    return telegram.answers_for(pressed)


def quiet(ws: Any) -> None:
    """Nothing but the pong is waiting on the connection."""
    ws.send_json({"type": "ping"})
    assert ws.receive_json() == {"type": "pong"}


def rows(runtime: Runtime) -> list[Approval]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Approval).order_by(Approval.created_at)))


def outcomes(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [(a.outcome, a.actor) for a in session.scalars(
            select(RelayAudit).where(RelayAudit.source == "approval")
            .order_by(RelayAudit.created_at))]


def test_a_strangers_press_does_nothing_the_owners_answers_once(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        asked = ask(ws, suggestions=("Bash(rm -rf build)",))
        shown = card(telegram, chat)
        assert shown["text"].splitlines()[:3] == ["🔐 Claude wants to use Bash",
                                                  "project · " + MACHINE[:12], "rm -rf build"]
        assert list(keys(shown)) == ["Allow", "Deny", "Always in this session", "Deny with note…",
                                     "Open"]
        assert keys(shown)["Open"] == f"{APP_URL}/approvals/{asked['id']}"
        assert all(len(keys(shown)[k].encode()) <= 64 for k in (
            "Allow", "Deny", "Always in this session", "Deny with note…"))

        assert press(telegram, chat, shown, "Allow", sender=STRANGER)[0] == {
            "callback_query_id": telegram.callback_answers[-1]["callback_query_id"]}
        quiet(ws)  # the stranger's press answered nothing
        assert rows(runtime)[0].state == "pending"

        answered = press(telegram, chat, shown, "Allow")
        assert answered[0]["text"] == "Allowed."
        assert ws.receive_json() == {"type": "decision", "id": asked["id"], "state": "allowed",
                                     "digest": asked["digest"], "suggestion": None,
                                     "note": None, "by": "Telegram", "detail": None}
        edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                          what="the card to be edited")
        assert edited[-1]["text"].endswith("✅ Allowed") and edited[-1]["reply_markup"] is None

        assert press(telegram, chat, shown, "Deny")[0]["text"] == "Already answered."
        quiet(ws)
    assert rows(runtime)[0].state == "allowed"
    assert outcomes(runtime) == [("asked", "agent"), ("refused", f"telegram:{STRANGER}"),
                                 ("allowed", f"telegram:{OWNER}")]


def test_two_approvals_answered_out_of_order_each_get_their_own_answer(
    client: TestClient, chat: Chat, telegram: TelegramStandIn
) -> None:
    with agent(client, chat.user) as ws:
        first = ask(ws, "make deploy")
        second = ask(ws, "git push --force", suggestions=("Bash(git push:*)",))
        card(telegram, chat, 2)  # both shown, in either order (their sends overlap)
        first_card, second_card = (card_showing(telegram, chat, c)
                                   for c in ("make deploy", "git push --force"))
        assert press(telegram, chat, second_card, "Always in this session")[0]["text"] == (
            "Allowed for this session.")
        got = ws.receive_json()
        assert (got["id"], got["state"], got["digest"], got["suggestion"]) == (
            second["id"], "allowed", second["digest"], 0)
        assert press(telegram, chat, first_card, "Deny")[0]["text"] == "Denied."
        got = ws.receive_json()
        assert (got["id"], got["state"], got["digest"]) == (first["id"], "denied",
                                                            first["digest"])
        # "Always" is offered only where Claude offered it.
        assert list(keys(first_card)) == ["Allow", "Deny", "Deny with note…", "Open"]


def test_a_withdrawn_approval_tells_a_late_press_it_was_answered(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        asked = ask(ws)
        other = ask(ws, "ls")
        card(telegram, chat, 2)
        shown = card_showing(telegram, chat, "rm -rf build")
        ws.send_json({"type": "withdraw", "id": None, "session_id": SESSION,
                      "digest": asked["digest"], "reason": "terminal"})
        edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                          what="the card to say it was answered in the terminal")
        assert edited[-1]["text"].endswith("↩️ Answered in the terminal")
        assert press(telegram, chat, shown, "Allow")[0]["text"] == "Already answered."
        quiet(ws)  # no decision goes to the agent for a withdrawn approval
        assert {r.id.hex: r.state for r in rows(runtime)} == {
            uuid.UUID(asked["id"]).hex: "withdrawn", uuid.UUID(other["id"]).hex: "pending"}
        # Filing it again (a reconnect) answers at once with how it ended.
        ask(ws, approval_id=asked["id"])
        assert ws.receive_json()["state"] == "withdrawn"


def test_an_expired_approval_is_not_answered_by_a_press(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        asked = ask(ws)
        shown = card(telegram, chat)
        with runtime.sessions.begin() as session:
            session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert press(telegram, chat, shown, "Allow")[0]["text"] == (
            "Expired: answer in the terminal.")
        got = ws.receive_json()  # the agent hears it too (its hook has given up already)
        assert (got["id"], got["state"]) == (asked["id"], "expired")
        edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                          what="the card to say it expired")
        assert "Expired" in edited[-1]["text"]


def test_a_press_forged_in_another_chat_answers_nothing(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    make_user: Callable[..., Account]
) -> None:
    mallory = Chat(client, make_user(plan="pro"), telegram, chat=556)
    with agent(client, chat.user) as ws:
        asked = ask(ws)
        card(telegram, chat)
        data = f"ap:{uuid.UUID(asked['id']).hex}:a"
        forged = telegram.forged_callback(mallory.chat, 1, data, sender=OWNER)
        assert mallory.send(forged) == 200
        assert telegram.answers_for(forged) == [{"callback_query_id":
                                                 forged["callback_query"]["id"]}]
        quiet(ws)
    assert rows(runtime)[0].state == "pending"


def test_nobody_to_ask_is_answered_at_once(
    client: TestClient, make_user: Callable[..., Account], runtime: Runtime
) -> None:
    user = make_user(plan="pro")  # no Telegram chat linked
    with agent(client, user) as ws:
        asked = ask(ws)
        got = ws.receive_json()
        assert (got["id"], got["state"], got["detail"]) == (
            asked["id"], "unavailable",
            "no linked Telegram chat, Slack, Discord or Feishu account or browser with "
            "notifications on takes answers")
    assert rows(runtime) == []


def test_the_card_shows_hostile_text_literally(
    client: TestClient, chat: Chat, telegram: TelegramStandIn
) -> None:
    hostile = "echo '</pre><a href=\"https://evil\">x</a>' && <b>rm</b> & done"
    with agent(client, chat.user) as ws:
        ask(ws, hostile)
        shown = card(telegram, chat)
    assert hostile in shown["text"]
    assert [e["type"] for e in shown["entities"]] == ["b", "pre", "i"]


@pytest.mark.parametrize("data", ["ap:zz:a", "ap:" + "0" * 32 + ":x", "ap:" + "0" * 32,
                                  "ap:" + "0" * 32 + ":a:b", "run:" + "0" * 32, "x" * 65])
def test_malformed_button_data_is_not_an_approval(data: str) -> None:
    assert approvals.parse(data) is None


def test_the_web_page_answers_with_a_note_and_only_its_owner_sees_it(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    with agent(client, chat.user) as ws:
        asked = ask(ws, "rm -rf <b>build</b>")
        shown = card(telegram, chat)
        url = f"/app/approvals/{asked['id']}"
        owner = browser_of(client)
        sign_in(owner, smtp_server, chat.user.email)
        page = owner.get(url)
        assert page.status_code == 200
        assert "rm -rf &lt;b&gt;build&lt;/b&gt;" in page.text and "<b>build" not in page.text
        other = make_user(plan="pro")
        stranger = browser_of(client)
        sign_in(stranger, smtp_server, other.email)
        assert stranger.get(url).status_code == 404
        assert stranger.post(url, data={"csrf": form_token(stranger.get("/app/tasks").text),
                                        "answer": "allow"}).status_code == 404
        assert owner.post(url, data={"answer": "allow"}).status_code == 403  # no form token
        quiet(ws)
        assert rows(runtime)[0].state == "pending"

        done = owner.post(url, data={"csrf": form_token(page.text), "answer": "deny",
                                     "note": "not on a Friday"})
        assert done.status_code == 303
        got = ws.receive_json()
        assert (got["id"], got["state"], got["note"], got["by"]) == (
            asked["id"], "denied", "not on a Friday", "the web app")
        edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                          what="the card to be edited")
        assert edited[-1]["text"].endswith("⛔ Denied")
        late = owner.post(url, data={"csrf": form_token(page.text), "answer": "allow"})
        assert late.status_code == 409 and "Already answered." in late.text
        assert "Denied" in owner.get(url).text


def test_the_web_page_shows_an_expired_approval_and_takes_no_answer_for_it(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    smtp_server: Mailbox
) -> None:
    with agent(client, chat.user) as ws:
        asked = ask(ws)
        card(telegram, chat)
        with runtime.sessions.begin() as session:
            session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
        owner = browser_of(client)
        sign_in(owner, smtp_server, chat.user.email)
        url = f"/app/approvals/{asked['id']}"
        page = owner.get(url)
        assert "Expired" in page.text and 'value="allow"' not in page.text
        assert rows(runtime)[0].state == "pending"  # the GET wrote nothing
        late = owner.post(url, data={"csrf": form_token(owner.get("/app/tasks").text),
                                     "answer": "allow"})
        assert late.status_code == 409 and "Expired: answer in the terminal." in late.text
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "expired")


def test_a_machine_cannot_flood_the_chat_with_cards(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approvals, "PENDING_PER_MACHINE", 2)
    with agent(client, chat.user) as ws:
        ask(ws, "one")
        ask(ws, "two")
        third = ask(ws, "three")
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (third["id"], "unavailable")
        assert "2 requests of this machine are waiting already" in got["detail"]
        card(telegram, chat, 2)
    assert not [m for m in telegram.sent_to(chat.chat) if "three" in m["text"]]


def test_filed_again_after_a_reconnect_it_keeps_its_card_and_gets_its_answer(
    client: TestClient, chat: Chat, telegram: TelegramStandIn
) -> None:
    token = register_agent(client, chat.user, MACHINE)
    headers = {"Authorization": f"Bearer {token}"}
    with client.websocket_connect("/v1/agent", headers=headers) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        asked = ask(ws)
        shown = card(telegram, chat)
    with client.websocket_connect("/v1/agent", headers=headers) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        ws.send_json(asked)  # what the agent does after a reconnect
        ask(ws, "ls")  # a new one, filed after it: its card goes out after any of the first's
        card_showing_eventually(telegram, chat, "ls")
        assert len([m for m in telegram.sent_to(chat.chat) if m["text"].startswith("🔐")
                    and "rm -rf build" in m["text"]]) == 1
        assert press(telegram, chat, shown, "Allow")[0]["text"] == "Allowed."
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "allowed")


def test_an_approval_whose_agent_went_away_expires_and_its_card_says_so(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tunnel, "ORPHAN_S", 0.3)  # how long an agent has to come back
    with agent(client, chat.user) as ws:
        asked = ask(ws)
        shown = card(telegram, chat)
    edited = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                      what="the card of an approval nobody waits for any more")
    assert "Expired" in edited[-1]["text"]
    assert rows(runtime)[0].state == "expired"
    assert outcomes(runtime)[-1] == ("expired", "server")
    with agent(client, chat.user) as ws:  # the agent back, filing it again: told how it ended
        ws.send_json(asked)
        assert ws.receive_json()["state"] == "expired"


def test_an_agent_back_in_time_keeps_its_approval(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tunnel, "ORPHAN_S", 1.0)
    token = register_agent(client, chat.user, MACHINE)
    headers = {"Authorization": f"Bearer {token}"}
    with client.websocket_connect("/v1/agent", headers=headers) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})
        asked = ask(ws)
        shown = card(telegram, chat)
    with client.websocket_connect("/v1/agent", headers=headers) as ws:
        ws.send_json({"type": "hello", "sessions": [], "running": []})  # back within 1 s
        ws.send_json(asked)
        quiet(ws)
        # A negative, so a deadline rather than a condition: the check ran at 1 s and left it
        # (pings meanwhile, as the agent's heartbeat would).
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            quiet(ws)
            time.sleep(0.1)
        assert rows(runtime)[0].state == "pending"
        assert press(telegram, chat, shown, "Allow")[0]["text"] == "Allowed."
        assert ws.receive_json()["state"] == "allowed"
