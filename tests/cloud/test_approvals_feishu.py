"""Permission requests as Feishu cards, through the real app, database (SQLite and PostgreSQL)
and agent tunnel, the Feishu stand-in as the app's API: the agent files an approval over its
WebSocket, the linked Feishu account gets an interactive card in its direct chat with the app's
bot (a shared card, checked against the documented shape), a press arrives as the
``card.action.trigger`` callback (encrypted and signed in the test with its own code) and
answers it over the same WebSocket; the callback's answer updates the card.

Attacks first: another open_id's press, the owner's press from another chat, unsigned, forged
and tampered callbacks, a replayed callback, a press after the terminal answered; then what the
card shows of hostile input."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chat_kit import FeishuApp, feishu_card_action
from cloud_kit import Account, wait_for
from fastapi.testclient import TestClient
from standins.feishu import APP_ID, APP_SECRET, FeishuStandIn, card_buttons
from standins.kit import APP_URL, feishu, provider_settings
from test_approvals import SESSION, agent, ask, outcomes, quiet, rows
from test_relay_feishu import GUESS, KEY, OWNER, STRANGER, TOKEN, Linked

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["feishu"]


@pytest.fixture
def settings(settings: Settings, feishu: FeishuStandIn) -> Settings:
    return settings.replace(feishu_verification_token=TOKEN, feishu_encrypt_key=KEY,
                            feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                            **provider_settings(feishu=feishu.base_url))


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account],
           feishu: FeishuStandIn) -> Linked:
    """A pro user whose only answering channel is a Feishu account linked with /link."""
    made = Linked(client, make_user(plan="pro"), feishu)
    assert made.say(made.command, open_id=OWNER) == 200
    wait_for(lambda: any("Linked" in s["text"] for s in feishu.said()), what="the link")
    return made


def card(feishu: FeishuStandIn, runtime: Runtime, n: int = 1,
         open_id: str = OWNER) -> tuple[str, dict[str, Any]]:
    """The ``n``-th card sent to ``open_id`` (its message id, and how it is held: chat and
    card), once the server has recorded it."""
    ids: list[str] = wait_for(lambda: len(m := feishu.cards_to(open_id)) >= n and m,
                              what=f"{n} card(s) on Feishu")
    message_id = ids[n - 1]
    wait_for(lambda: any(c.get("message") == message_id for row in rows(runtime)
                         for c in row.cards or []), what="the server to record the card")
    return message_id, feishu.card(message_id)


def text_of(card_json: dict[str, Any]) -> list[str]:
    """The card's texts, in order; every one plain (nothing read as Markdown)."""
    texts = [card_json["header"]["title"]]
    for element in card_json["elements"]:
        if element["tag"] == "div":
            texts.append(element["text"])
        elif element["tag"] == "note":
            texts += element["elements"]
    assert {t["tag"] for t in texts} == {"plain_text"}
    return [t["content"].replace("\u200b", "") for t in texts]


def press(linked: Linked, message_id: str, button: str, *, open_id: str = OWNER,
          chat_id: str | None = None, value: dict[str, Any] | None = None,
          **how: Any) -> tuple[int, dict[str, Any]]:
    """Press a card's button as Feishu calls back for it (encrypted and signed); the status
    and the callback's answer, applied to the card as Feishu applies it."""
    held = linked.standin.card(message_id)
    if value is None:
        value = card_buttons(held["card"])[button]["value"]
    payload = feishu_card_action(value, open_id=open_id, message_id=message_id,
                                 chat_id=chat_id or held["chat_id"], token=TOKEN)
    body, headers = linked.app.request(payload, **how)
    answered = linked.client.post("/v1/feishu/events", content=body, headers=headers)
    if answered.status_code != 200:
        return answered.status_code, {}
    answer: dict[str, Any] = answered.json()
    linked.standin.apply(message_id, answer)
    return 200, answer


def toast(answer: tuple[int, dict[str, Any]]) -> tuple[str, str, bool]:
    """The toast's kind and text, and whether the answer replaced the card."""
    status, body = answer
    assert status == 200
    return body["toast"]["type"], body["toast"]["content"], "card" in body


def test_a_strangers_press_is_refused_and_the_owners_answers_once(
    linked: Linked, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws, suggestions=("Bash(rm:*)",))
        message_id, held = card(feishu, runtime)
        shown = held["card"]
        ident = uuid.UUID(asked["id"]).hex
        assert {k: b.get("value") or b.get("url") for k, b in card_buttons(shown).items()} == {
            "Allow": {"ap": f"ap:{ident}:a"}, "Deny": {"ap": f"ap:{ident}:d"},
            "Always in this session": {"ap": f"ap:{ident}:s"},
            "Open": f"{APP_URL}/approvals/{asked['id']}"}
        assert text_of(shown) == ["🔐 Claude wants to use Bash", "project · machine-1234",
                                  "rm -rf build", "Always in this session: Bash(rm:*)",
                                  "Answer within 10 min, or in the terminal."]
        assert shown["config"]["update_multi"] is True
        assert shown["config"]["enable_forward"] is False

        # Another open_id (the card forwarded into a group, say), the owner from another chat.
        assert toast(press(linked, message_id, "Allow", open_id=STRANGER)) == (
            "error", "Not answered: only the account the owner linked can answer.", False)
        assert toast(press(linked, message_id, "Allow", chat_id="oc_group0000001")) == (
            "error", "Not answered: answer on the request's own card, in the direct chat with "
            "the bot.", False)
        quiet(ws)
        assert rows(runtime)[0].state == "pending"
        assert feishu.card(message_id)["card"] == shown  # the card unchanged

        assert toast(press(linked, message_id, "Allow")) == ("success", "Allowed.", True)
        got = ws.receive_json()
        assert got == {"type": "decision", "id": asked["id"], "state": "allowed",
                       "digest": asked["digest"], "suggestion": None, "note": None,
                       "by": "Feishu", "detail": None}
        now = feishu.card(message_id)["card"]
        assert card_buttons(now) == {} and text_of(now)[-1] == "✅ Allowed"
        assert now["header"]["template"] == "green"

        assert toast(press(linked, message_id, "Deny", value={"ap": f"ap:{ident}:d"})) == (
            "info", "Already answered.", True)
        quiet(ws)
    assert rows(runtime)[0].state == "allowed"
    assert outcomes(runtime) == [("asked", "agent"), ("refused", f"feishu:{STRANGER}"),
                                 ("refused", f"feishu:{OWNER}"), ("allowed", f"feishu:{OWNER}")]


def test_deny_and_always_answered_out_of_order(linked: Linked, feishu: FeishuStandIn,
                                              runtime: Runtime) -> None:
    with agent(linked.client, linked.user) as ws:
        first = ask(ws, "make deploy")
        second = ask(ws, "git push --force", suggestions=("Bash(git push:*)",))
        card(feishu, runtime, 2)
        by_code = {text_of(feishu.card(m)["card"])[2]: m for m in feishu.cards_to(OWNER)}
        assert "Always in this session" not in card_buttons(
            feishu.card(by_code["make deploy"])["card"])
        assert toast(press(linked, by_code["git push --force"], "Always in this session")) == (
            "success", "Allowed for this session.", True)
        got = ws.receive_json()
        assert (got["id"], got["state"], got["suggestion"]) == (second["id"], "allowed", 0)
        assert toast(press(linked, by_code["make deploy"], "Deny"))[:2] == ("success", "Denied.")
        got = ws.receive_json()
        assert (got["id"], got["state"], got["by"]) == (first["id"], "denied", "Feishu")
        assert text_of(feishu.card(by_code["make deploy"])["card"])[-1] == "⛔ Denied"


def test_a_replayed_callback_changes_nothing(linked: Linked, feishu: FeishuStandIn,
                                             runtime: Runtime) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        message_id, held = card(feishu, runtime)
        value = card_buttons(held["card"])["Allow"]["value"]
        payload = feishu_card_action(value, open_id=OWNER, message_id=message_id,
                                     chat_id=held["chat_id"], token=TOKEN)
        body, headers = linked.app.request(payload)  # one signed callback, captured
        first = linked.client.post("/v1/feishu/events", content=body, headers=headers)
        assert first.json()["toast"]["content"] == "Allowed."
        assert ws.receive_json()["id"] == asked["id"]
        again = linked.client.post("/v1/feishu/events", content=body, headers=headers)
        assert again.json() == {"toast": {"type": "info",
                                          "content": "This press was already handled."}}
        quiet(ws)
    assert [o for o in outcomes(runtime) if o[0] != "asked"] == [("allowed", f"feishu:{OWNER}")]


def test_unsigned_forged_and_tampered_callbacks_change_nothing(
    linked: Linked, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        ask(ws)
        message_id, held = card(feishu, runtime)
        assert press(linked, message_id, "Allow", signed=False)[0] == 401
        assert press(linked, message_id, "Allow", tamper=True)[0] == 401
        forger = linked.app
        linked.app = FeishuApp(TOKEN, "another-apps-key")  # not the app's Encrypt Key
        try:
            assert press(linked, message_id, "Allow")[0] == 401
        finally:
            linked.app = forger
        payload = feishu_card_action({"ap": "x"}, open_id=OWNER, message_id=message_id,
                                     chat_id=held["chat_id"], token=GUESS)
        body, headers = linked.app.request(payload)
        assert linked.client.post("/v1/feishu/events", content=body,
                                  headers=headers).status_code == 403
        quiet(ws)
        assert rows(runtime)[0].state == "pending"
        assert feishu.card(message_id)["card"] == held["card"]
    assert outcomes(runtime) == [("asked", "agent")]


def test_a_press_after_the_terminal_answered_is_told_so_and_the_card_shows_it(
    linked: Linked, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    with agent(linked.client, linked.user) as ws:
        asked = ask(ws)
        message_id, held = card(feishu, runtime)
        ws.send_json({"type": "withdraw", "id": None, "session_id": SESSION,
                      "digest": asked["digest"], "reason": "terminal"})
        edited = wait_for(lambda: [r for r in feishu.accepted() if r.method == "PATCH"],
                          what="the card to be edited")
        assert edited[-1].path == f"/open-apis/im/v1/messages/{message_id}"
        now = feishu.card(message_id)["card"]
        assert card_buttons(now) == {} and text_of(now)[-1] == "↩️ Answered in the terminal"
        value = card_buttons(held["card"])["Allow"]["value"]  # a press on the card as it was
        assert toast(press(linked, message_id, "Allow", value=value)) == (
            "info", "Already answered.", True)
        assert text_of(feishu.card(message_id)["card"])[-1] == "↩️ Answered in the terminal"
        quiet(ws)
    assert rows(runtime)[0].state == "withdrawn"


def test_the_card_shows_hostile_text_literally_and_mentions_nobody(
    linked: Linked, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    hostile = ('echo <at user_id="all">everyone</at> <at id=all></at> **bold** '
               '[x](https://evil) <font color=red>x</font> &lt; ``` && rm')
    with agent(linked.client, linked.user) as ws:
        ws.send_json({"type": "approval", "id": str(uuid.uuid4()), "session_id": SESSION,
                      "tool_use_id": None, "tool_name": '<at user_id="all"></at>Bash',
                      "digest": "0" * 64, "display": hostile, "cwd": "/srv/<at id=all>",
                      "suggestions": ['Bash(<at user_id="all">)'], "timeout_s": 600})
        message_id, held = card(feishu, runtime)
        texts = text_of(held["card"])
        assert texts[:4] == ['🔐 Claude wants to use <at user_id="all"></at>Bash',
                             "<at id=all> · machine-1234", hostile,
                             'Always in this session: Bash(<at user_id="all">)']
        [sent] = [r for r in feishu.accepted() if r.method == "POST"
                  and "card" in (r.displayed or {})]
        assert sent.displayed["mentions"] == []
        assert toast(press(linked, message_id, "Deny"))[:2] == ("success", "Denied.")
        assert text_of(feishu.card(message_id)["card"])[2] == hostile
        ws.receive_json()


@contextlib.contextmanager
def _client(settings: Settings) -> Iterator[TestClient]:
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


@pytest.mark.parametrize("unset", ["feishu_encrypt_key", "feishu_app_secret"])
def test_without_signed_callbacks_or_the_app_nobody_is_asked_on_feishu(
    linked: Linked, settings: Settings, feishu: FeishuStandIn, runtime: Runtime, unset: str
) -> None:
    with _client(settings.replace(**{unset: None})) as other, agent(other, linked.user) as ws:
        asked = ask(ws)
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (asked["id"], "unavailable")
        assert "Feishu" in got["detail"]
    assert feishu.cards_to(OWNER) == [] and rows(runtime) == []


def test_a_press_without_an_encrypt_key_is_not_counted(
    linked: Linked, settings: Settings, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    """A server whose Encrypt Key was removed after the card went out: the token alone does
    not prove who pressed."""
    with agent(linked.client, linked.user) as ws:
        ask(ws)
        message_id, held = card(feishu, runtime)
        with _client(settings.replace(feishu_encrypt_key=None)) as other:
            value = card_buttons(held["card"])["Allow"]["value"]
            payload = feishu_card_action(value, open_id=OWNER, message_id=message_id,
                                         chat_id=held["chat_id"], token=TOKEN)
            answered = other.post("/v1/feishu/events", content=json.dumps(payload),
                                  headers={"Content-Type": "application/json"})
            assert answered.json()["toast"]["type"] == "error"
        quiet(ws)
    assert rows(runtime)[0].state == "pending"


def test_a_plan_and_a_question_get_their_own_buttons_and_answers(
    linked: Linked, feishu: FeishuStandIn, runtime: Runtime
) -> None:
    from test_approval_kinds import COLOR, PLAN, file

    with agent(linked.client, linked.user) as ws:
        plan = file(ws, "ExitPlanMode", PLAN)
        message_id, held = card(feishu, runtime)
        assert text_of(held["card"])[:3] == ["🔐 Claude wants to start on this plan",
                                             "project · machine-1234", PLAN]
        assert list(card_buttons(held["card"])) == ["Approve plan", "Keep planning", "Open"]
        assert toast(press(linked, message_id, "Keep planning")) == (
            "success", "Keep planning.", True)
        got = ws.receive_json()
        assert (got["id"], got["state"]) == (plan["id"], "denied")

        asked = file(ws, "AskUserQuestion", "[Color] Which color?", questions=[COLOR])
        message_id, held = card(feishu, runtime, 2)
        assert list(card_buttons(held["card"])) == ["Red", "Blue <i>", "Don't answer", "Open"]
        ident = uuid.UUID(asked["id"]).hex
        assert toast(press(linked, message_id, "", value={"ap": f"ap:{ident}:a"})) == (
            "warning", "Not answered: choose one of the options.", False)
        assert toast(press(linked, message_id, "", value={"ap": f"ap:{ident}:o2"})) == (
            "error", "Not answered: not an option of this question.", False)
        quiet(ws)
        assert toast(press(linked, message_id, "Red")) == ("success", "Answered: Red.", True)
        got = ws.receive_json()
        assert (got["id"], got["state"], got["answers"]) == (asked["id"], "allowed", [[0]])
        assert text_of(feishu.card(message_id)["card"])[-1] == "✅ Answered: Red"
