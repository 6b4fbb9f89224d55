"""Plans, Claude's questions and Telegram's "deny with a note" through the real app, database
(SQLite and PostgreSQL) and agent tunnel, with the Telegram, Slack and push stand-ins as the
owner's phone.

Attacks first: hostile plan and question text on every surface, a stranger's option press, an
option out of range or pressed on another approval's card, a replayed press, a question
"allowed" without an answer, a note from someone else or not in reply to its prompt, a note too
long; then what reaches the agent for each kind (the hook turns it into Claude Code's decision:
tests/test_claude_approval_kinds.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account, Mailbox, wait_for
from fastapi.testclient import TestClient
from standins.kit import APP_URL, provider_settings, telegram
from standins.telegram import TelegramStandIn
from test_approvals import SESSION, agent, digest, keys, outcomes, press, quiet, recorded, rows
from tg_kit import OWNER, STRANGER, Chat, update
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.relay import approval_kinds, approvals, push_approvals
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]
HOSTILE = "</pre><a href=\"https://evil\">x</a> <b>bold</b> & <!channel> <@U0BOSS> *star* ```"
PLAN = f"# Plan\n\n1. Edit app.py {HOSTILE}\n2. Run `make test`\n"
COLOR = {"header": "Color", "options": ["Red", "Blue <i>"], "multi": False}
TOPPINGS = {"header": "Top", "options": ["Ham", "Egg, fried", "Kale"], "multi": True}


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


@pytest.fixture
def chat(client: TestClient, make_user: Callable[..., Account],
         telegram: TelegramStandIn) -> Chat:
    return Chat(client, make_user(plan="pro"), telegram)


def file(ws: Any, tool: str, display: str, *, questions: list[dict[str, Any]] | None = None,
         suggestions: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the agent sends for a plan or a question (agent/approvals.py builds it)."""
    message = {"type": "approval", "id": str(uuid.uuid4()), "session_id": SESSION,
               "tool_use_id": None, "tool_name": tool, "digest": digest(tool, {"d": display}),
               "display": display, "cwd": "/srv/project", "suggestions": list(suggestions),
               "timeout_s": 600, "questions": questions}
    ws.send_json(message)
    return message


def shown_card(telegram: TelegramStandIn, chat: Chat, title: str,
               runtime: Runtime) -> dict[str, Any]:
    """The card, once the server recorded it (a press counts only on a recorded card; the
    stand-in shows it a moment before)."""
    found: dict[str, Any] = wait_for(
        lambda: next((m for m in telegram.sent_to(chat.chat)
                      if m["text"].startswith(f"🔐 {title}")), None), what=f"the card {title!r}")
    return recorded(chat, found)


def edited(telegram: TelegramStandIn, chat: Chat, shown: dict[str, Any]) -> str:
    edits = wait_for(lambda: telegram.edits_of(chat.chat, shown["message_id"]),
                     what="the card to be edited")
    text: str = edits[-1]["text"]
    return text


def test_a_plan_card_shows_the_plan_literally_and_approves_it(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        asked = file(ws, "ExitPlanMode", PLAN + "x" * 5000, suggestions=("Bash(make:*)",))
        shown = shown_card(telegram, chat, "Claude wants to start on this plan", runtime)
        assert PLAN in shown["text"]  # every tag shown as text, in one quote
        assert [e["type"] for e in shown["entities"]] == ["b", "blockquote", "i"]
        assert "…" not in shown["text"] and len(shown["text"]) < 2300  # bounded
        # A plan never offers "always", even if an agent sent one.
        assert list(keys(shown)) == ["Approve plan", "Keep planning",
                                     "Keep planning, with a note…", "Open"]
        assert press(telegram, chat, shown, "Approve plan", sender=STRANGER)[0] == {
            "callback_query_id": telegram.callback_answers[-1]["callback_query_id"]}
        quiet(ws)
        assert press(telegram, chat, shown, "Approve plan")[0]["text"] == "Plan approved."
        got = ws.receive_json()
        assert (got["id"], got["state"], got["suggestion"], got.get("answers")) == (
            asked["id"], "allowed", None, None)
        assert edited(telegram, chat, shown).endswith("✅ Plan approved")
        assert press(telegram, chat, shown, "Keep planning")[0]["text"] == "Already answered."
        quiet(ws)
    [row] = rows(runtime)
    assert (row.state, row.suggestions, len(row.display)) == ("allowed", None, 2000)
    assert outcomes(runtime) == [("asked", "agent"), ("refused", f"telegram:{STRANGER}"),
                                 ("allowed", f"telegram:{OWNER}")]


def test_a_question_is_answered_by_its_own_options_only(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        other = file(ws, "Bash", "make deploy")
        asked = file(ws, "AskUserQuestion", f"[Color] Which color? {HOSTILE}\n  1) Red\n"
                     "  2) Blue <i>", questions=[COLOR])
        shown = shown_card(telegram, chat, "Claude asks you", runtime)
        assert HOSTILE in shown["text"] and "Blue <i>" in shown["text"]
        assert list(keys(shown)) == ["Red", "Blue <i>", "Don't answer",
                                     "Don't answer, with a note…", "Open"]
        ident = uuid.UUID(asked["id"]).hex
        assert keys(shown)["Blue <i>"] == f"ap:{ident}:o1"
        other_card = shown_card(telegram, chat, "Claude wants to use Bash", runtime)

        # A stranger's option: nothing; an option the question does not have (forged on its
        # own card): refused; this question's option pressed on another approval's card, or
        # the other approval's Allow pressed on this card: nothing.
        assert press(telegram, chat, shown, "Red", sender=STRANGER)[0].get("text") is None
        for data, message in ((f"ap:{ident}:o3", shown), (f"ap:{ident}:o0", other_card),
                              (f"ap:{uuid.UUID(other['id']).hex}:a", shown),
                              (f"ap:{ident}:a", shown)):
            forged = telegram.forged_callback(chat.chat, message["message_id"], data,
                                              sender=OWNER)
            assert chat.send(forged) == 200
        said = [a.get("text") for a in telegram.callback_answers[-4:]]
        assert said == ["Not an option of this question.", None, None,
                        "Choose one of the options."]
        quiet(ws)
        assert {r.state for r in rows(runtime)} == {"pending"}

        pressed = telegram.callback_query(shown["message_id"], f"ap:{ident}:o1", sender=OWNER)
        assert chat.send(pressed) == 200
        assert telegram.answers_for(pressed)[0]["text"] == "Answered: Blue <i>."
        assert chat.send(pressed) == 200  # Telegram sends it again: handled once
        got = ws.receive_json()
        assert (got["id"], got["state"], got["suggestion"], got["answers"]) == (
            asked["id"], "allowed", None, [[1]])
        assert edited(telegram, chat, shown).endswith("✅ Answered: Blue <i>")
        assert press(telegram, chat, shown, "Red")[0]["text"] == "Already answered."
        quiet(ws)
    assert (f"telegram:{OWNER}", "refused", "option 4 is not one of this request's") in [
        (a["actor"], a["outcome"], a["reason"]) for a in chat.audit()]
    assert ("allowed", f"telegram:{OWNER}") in outcomes(runtime)


def test_several_questions_are_answered_on_the_web_page(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime,
    smtp_server: Mailbox
) -> None:
    with agent(client, chat.user) as ws:
        asked = file(ws, "AskUserQuestion", "1. Which color?\n2. Which toppings?",
                     questions=[COLOR, TOPPINGS])
        shown = shown_card(telegram, chat, "Claude asks you 2 questions", runtime)
        assert "Answer on the web page" in shown["text"]
        assert list(keys(shown)) == ["Don't answer", "Don't answer, with a note…", "Open"]
        url = f"/app/approvals/{asked['id']}"
        owner = browser_of(client)
        sign_in(owner, smtp_server, chat.user.email)
        page = owner.get(url)
        assert 'type="radio" name="option" value="0:1"> Blue &lt;i&gt;' in page.text
        assert 'type="checkbox" name="option" value="1:2"> Kale' in page.text
        assert 'value="allow"' not in page.text and 'value="session"' not in page.text
        token = form_token(page.text)
        for wrong in ({"answer": "allow"}, {"answer": "session"},
                      {"answer": "answer", "option": ["0:1"]},  # the second unanswered
                      {"answer": "answer", "option": ["0:0", "0:1", "1:0"]},  # two colors
                      {"answer": "answer", "option": ["0:2", "1:0"]},  # no third color
                      {"answer": "answer", "option": ["4:0", "0:0", "1:0"]},
                      {"answer": "answer", "option": ["x", "0:0", "1:0"]}):
            assert owner.post(url, data={"csrf": token, **wrong}).status_code == 422, wrong
        quiet(ws)
        assert rows(runtime)[0].state == "pending"
        done = owner.post(url, data={"csrf": token, "answer": "answer",
                                     "option": ["1:2", "0:0", "1:0"]})
        assert done.status_code == 303
        got = ws.receive_json()
        assert (got["state"], got["answers"], got["by"]) == ("allowed", [[0], [0, 2]],
                                                             "the web app")
        assert edited(telegram, chat, shown).endswith("✅ Answered: Red; Ham, Kale")
        assert "Answered: Red; Ham, Kale" in owner.get(url).text


def test_an_old_agents_question_is_never_allowed_without_an_answer(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    """No shape (an agent from before this change): no option buttons, and no Allow from any
    surface, since Claude Code needs the answers; Don't answer still works."""
    with agent(client, chat.user) as ws:
        asked = file(ws, "AskUserQuestion", "Which color?")
        shown = shown_card(telegram, chat, "Claude asks you", runtime)
        assert list(keys(shown)) == ["Don't answer", "Don't answer, with a note…", "Open"]
        with runtime.sessions.begin() as session:
            row = session.get(Approval, uuid.UUID(asked["id"]))
            assert row is not None
            assert not approvals.decide(session, row.id, state="allowed", by="discord:1")
            assert not approvals.decide(session, row.id, state="allowed", by="x", suggestion=0)
        assert press(telegram, chat, shown, "Don't answer")[0]["text"] == "Not answered."
        got = ws.receive_json()
        assert (got["state"], got.get("answers")) == ("denied", None)


def test_deny_with_a_note_takes_only_the_owners_reply_to_its_prompt(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        asked = file(ws, "Bash", "rm -rf build")
        shown = shown_card(telegram, chat, "Claude wants to use Bash", runtime)
        assert press(telegram, chat, shown, "Deny with note…")[0]["text"] == (
            "Reply to the message below with your note.")
        prompt = wait_for(lambda: next((m for m in telegram.sent_to(chat.chat)
                                        if m["text"].startswith("✍️")), None),
                          what="the note's prompt")
        assert prompt["reply_markup"]["force_reply"] is True
        assert prompt["reply_parameters"]["message_id"] == shown["message_id"]

        def reply(text: str, to: int, sender: int = OWNER) -> None:
            before = len(telegram.sent_to(chat.chat))
            assert chat.send(update(text, chat=chat.chat, reply_to=to, sender=sender)) == 200
            if sender == OWNER:
                wait_for(lambda: len(telegram.sent_to(chat.chat)) > before,
                         what="the bot's answer")

        reply("from a stranger", prompt["message_id"], sender=STRANGER)
        reply("not to the prompt", shown["message_id"])  # to the card: an ordinary reply
        reply("x" * 501, prompt["message_id"])
        assert telegram.sent_to(chat.chat)[-1]["text"].startswith(
            "Not sent: a note is 1 to 500 characters")
        quiet(ws)
        assert rows(runtime)[0].state == "pending"
        note = "<b>not</b> on a Friday & not </pre> now"
        reply(f"  {note}\n", prompt["message_id"])
        assert telegram.sent_to(chat.chat)[-1]["text"] == "Denied, with your note."
        got = ws.receive_json()
        assert (got["id"], got["state"], got["note"], got["by"]) == (
            asked["id"], "denied", note, "Telegram")
        assert edited(telegram, chat, shown).endswith("⛔ Denied")
        assert not telegram.edits_of(chat.chat, prompt["message_id"])  # a prompt is no card
        reply("changed my mind", prompt["message_id"])
        assert telegram.sent_to(chat.chat)[-1]["text"] == "Already answered."
        assert press(telegram, chat, shown, "Allow")[0]["text"] == "Already answered."
        quiet(ws)
    audit = [(a["actor"], a["outcome"], a["reason"]) for a in chat.audit()
             if a["source"] == "approval"]
    assert audit == [(f"telegram:{OWNER}", "denied", note),
                     (f"telegram:{STRANGER}", "refused",
                      "not the Telegram account that linked this chat"),
                     ("agent", "asked", None)]


def test_a_plans_note_is_what_claude_should_change(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    with agent(client, chat.user) as ws:
        file(ws, "ExitPlanMode", PLAN)
        shown = shown_card(telegram, chat, "Claude wants to start on this plan", runtime)
        press(telegram, chat, shown, "Keep planning, with a note…")
        prompt = wait_for(lambda: next((m for m in telegram.sent_to(chat.chat)
                                        if m["text"].startswith("✍️")), None),
                          what="the note's prompt")
        assert "what Claude should change in the plan" in prompt["text"]
        assert chat.send(update("split step 2", chat=chat.chat,
                                reply_to=prompt["message_id"])) == 200
        got = ws.receive_json()
        assert (got["state"], got["note"]) == ("denied", "split step 2")
        assert edited(telegram, chat, shown).endswith("⛔ Keep planning")


def test_withdrawn_by_tool_name_closes_only_that_tools_approval(
    client: TestClient, chat: Chat, telegram: TelegramStandIn, runtime: Runtime
) -> None:
    """A plan's ``PostToolUse`` carries ``{}`` for its input: the terminal answering it
    withdraws the session's plan, not the command waiting beside it."""
    with agent(client, chat.user) as ws:
        plan = file(ws, "ExitPlanMode", PLAN)
        command = file(ws, "Bash", "make deploy")
        shown = shown_card(telegram, chat, "Claude wants to start on this plan", runtime)
        shown_card(telegram, chat, "Claude wants to use Bash", runtime)
        ws.send_json({"type": "withdraw", "id": None, "session_id": SESSION, "digest": None,
                      "reason": "terminal", "tool_name": "ExitPlanMode"})
        assert edited(telegram, chat, shown).endswith("↩️ Answered in the terminal")
        states = {r.id.hex: r.state for r in rows(runtime)}
        assert states == {uuid.UUID(plan["id"]).hex: "withdrawn",
                          uuid.UUID(command["id"]).hex: "pending"}


def test_the_push_and_the_slack_card_of_each_kind(runtime: Runtime) -> None:
    """What a browser and Slack are sent, from stored rows (no provider needed)."""
    from claude_notify.cloud.server.relay import slack_approvals

    def row(tool: str, display: str, suggestions: list[Any] | None = None) -> Approval:
        made = Approval(id=uuid.uuid4(), user_id=uuid.uuid4(), machine_id="laptop-7f3a",
                        session_id=SESSION, tool_name=tool, digest="0" * 64, display=display,
                        cwd="/srv/project", suggestions=suggestions, state="pending",
                        expires_at=approvals.utcnow())
        return made

    plan = row("ExitPlanMode", PLAN + "y" * 4000)
    one = row("AskUserQuestion", f"Which color? {HOSTILE}", [COLOR])
    two = row("AskUserQuestion", "Two questions", [COLOR, TOPPINGS])
    shown = push_approvals.payload(plan)
    assert (shown["title"], shown["answers"]) == (
        "Claude wants to start on this plan",
        [["allow", "Approve plan", "Plan approved"], ["deny", "Keep planning", "Keep planning"]])
    assert shown["body"].startswith("project · laptop-7f3a\n# Plan") and len(shown["body"]) < 700
    assert push_approvals.payload(one)["answers"] == []  # a click opens the page

    body = slack_approvals.card(plan, APP_URL)
    text = json.dumps(body)
    assert body["text"] == "Claude wants to start on this plan"
    section = body["blocks"][2]["text"]["text"]
    assert section.startswith("```\n# Plan") and section.endswith("…\n```")  # from its start
    assert len(section) <= 3000 and "<!channel>" not in text and "<@U0BOSS>" not in text
    assert "&lt;!channel&gt;" in section and "`\u200b``" in section
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    assert [(e["text"]["text"], e["value"]) for e in actions["elements"]] == [
        ("Approve plan", f"ap:{plan.id.hex}:a"), ("Keep planning", f"ap:{plan.id.hex}:d")]
    [actions] = [b for b in slack_approvals.card(one, APP_URL)["blocks"]
                 if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("cn_ap_option_0", f"ap:{one.id.hex}:o0"), ("cn_ap_option_1", f"ap:{one.id.hex}:o1"),
        ("cn_ap_deny", f"ap:{one.id.hex}:d")]
    [actions] = [b for b in slack_approvals.card(two, APP_URL)["blocks"]
                 if b["type"] == "actions"]
    assert [e.get("url") or e["value"] for e in actions["elements"]] == [
        f"ap:{two.id.hex}:d", f"{APP_URL}/approvals/{two.id}"]
    assert approval_kinds.buttons_answer(one) and not approval_kinds.buttons_answer(two)
    # The e-mailed card reads the "always" label the same way: a question's shape is none.
    from claude_notify.cloud.server.relay import email_approvals

    mailed = email_approvals.card(one, link=f"{APP_URL}/a#k", address="a@example.com")
    assert "Always in this session" not in mailed.text and "options" not in mailed.text


@pytest.mark.parametrize("data", ["ap:" + "0" * 32 + ":o4", "ap:" + "0" * 32 + ":o",
                                  "ap:" + "0" * 32 + ":o01", "ap:" + "0" * 32 + ":n1",
                                  "ap:" + "0" * 31 + "g:o1", "ap:" + "0" * 32 + ":o1\n"])
def test_malformed_option_data_is_no_press(data: str) -> None:
    assert approvals.parse_press(data) is None
    assert approvals.parse(data) is None  # the old parser (other cards) knows none of them
