"""What the hook prints for a plan (``ExitPlanMode``) and Claude's questions
(``AskUserQuestion``) answered from the phone, through the agent's real socket with the tunnel
replaced by a recording one (see tests/test_agent_approvals.py), and what the agent files.

Each printed decision is checked exactly, in the shape measured with Claude Code 2.1.332 (a plan:
the call's own input as ``updatedInput``, else the dialog stays; a question: that input with
``answers`` added, question text → label). Attacks first: an answer for another call, an option
out of range, more or fewer answers than questions, several answers to a question that takes
one, a question that already carries answers, hostile labels."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest
from test_agent_approvals import SESSION, Tunnel, broker, env

from claude_notify.agent import wire
from claude_notify.agent.approvals import Broker, display
from claude_notify.claude import approval

__all__ = ["broker", "env"]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")
PLAN = {"plan": "# Plan\n\n1. Edit <b>app.py</b> & tests\n", "planFilePath": "/h/plans/p.md"}
QUESTIONS = {"questions": [
    {"question": "Which color?", "header": "Color", "multiSelect": False,
     "options": [{"label": "Red", "description": "warm"}, {"label": 'Blue "navy"',
                                                          "description": "cool"}]},
    {"question": "Which toppings?", "header": "Top", "multiSelect": True,
     "options": [{"label": "Ham", "description": ""}, {"label": "Egg, fried", "description": "y"},
                 {"label": "Kale", "description": "z"}]}]}


def asked(made: Broker, tunnel: Tunnel, env: dict[str, str], tool: str, tool_input: Any,
          **answer: Any) -> tuple[dict[str, Any], str | None]:
    """File the call through the hook, answer it as the server would, and return what was filed
    and what the hook printed."""
    out: list[str | None] = []
    payload = {"session_id": SESSION, "hook_event_name": "PermissionRequest", "cwd": "/srv/p",
               "tool_name": tool, "tool_input": tool_input,
               "permission_suggestions": [{"type": "addRules", "destination": "session",
                                           "rules": [{"toolName": tool}], "behavior": "allow"}]}
    thread = threading.Thread(target=lambda: out.append(approval.ask(payload, env)))
    before = len(tunnel.sent)
    thread.start()
    filed = tunnel.wait(before + 1)[before]
    made.decided(wire.decision(id=filed["id"], digest=filed["digest"], **answer))
    thread.join(10)
    return filed, out[0]


def decision(printed: str | None) -> Any:
    assert printed is not None
    shown = json.loads(printed)
    assert shown["hookSpecificOutput"]["hookEventName"] == "PermissionRequest"
    return shown["hookSpecificOutput"]["decision"]


def test_an_approved_plan_hands_claude_code_its_own_call_back(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    made, tunnel = broker
    filed, printed = asked(made, tunnel, env, "ExitPlanMode", PLAN, state="allowed",
                           suggestion=0)  # an "always" the server must not send: ignored
    assert (filed["display"], filed["suggestions"], filed["questions"]) == (PLAN["plan"], [],
                                                                           None)
    assert printed == json.dumps({"hookSpecificOutput": {
        "hookEventName": "PermissionRequest",
        "decision": {"behavior": "allow", "updatedInput": PLAN}}})
    _, printed = asked(made, tunnel, env, "ExitPlanMode", PLAN, state="denied", by="Telegram",
                       note="split step 2")
    assert decision(printed) == {"behavior": "deny", "message": (
        "The owner did not approve the plan from Telegram: keep planning: split step 2")}
    _, printed = asked(made, tunnel, env, "ExitPlanMode", {}, state="denied", by="the web app")
    assert decision(printed) == {"behavior": "deny", "message": (
        "The owner did not approve the plan from the web app: keep planning")}


def test_a_question_answer_adds_only_the_answers(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    made, tunnel = broker
    filed, printed = asked(made, tunnel, env, "AskUserQuestion", QUESTIONS, state="allowed",
                           answers=[[1], [2, 1]])
    assert filed["suggestions"] == [] and filed["questions"] == [
        {"header": "Color", "options": ["Red", 'Blue "navy"'], "multi": False},
        {"header": "Top", "options": ["Ham", "Egg, fried", "Kale"], "multi": True}]
    assert filed["display"] == (
        '1. [Color] Which color?\n  1) Red — warm\n  2) Blue "navy" — cool\n\n'
        "2. [Top] Which toppings? (choose any)\n  1) Ham\n  2) Egg, fried — y\n  3) Kale — z")
    assert printed == json.dumps({"hookSpecificOutput": {
        "hookEventName": "PermissionRequest", "decision": {"behavior": "allow", "updatedInput": {
            **QUESTIONS, "answers": {"Which color?": '"Blue \\"navy\\""',
                                     "Which toppings?": '"Egg, fried", Kale'}}}}})
    _, printed = asked(made, tunnel, env, "AskUserQuestion", QUESTIONS, state="denied",
                       by="Telegram")
    assert decision(printed) == {"behavior": "deny",
                                 "message": "The owner chose not to answer from Telegram"}


@pytest.mark.parametrize("answers", [None, [], [[0]], [[0], [0], [0]], [[2], [0]], [[-1], [0]],
                                     [[0, 1], [0]], [[0], []], [[0], [0, 0]], [[True], [0]],
                                     [["0"], [0]], "0,0"])
def test_no_valid_answer_prints_nothing(broker: tuple[Broker, Tunnel], env: dict[str, str],
                                        answers: Any) -> None:
    made, tunnel = broker
    _, printed = asked(made, tunnel, env, "AskUserQuestion", QUESTIONS, state="allowed",
                       answers=answers)
    assert printed is None


def test_an_answer_for_another_call_or_already_answered_questions_prints_nothing() -> None:
    own = approval.digest("AskUserQuestion", QUESTIONS)
    good = {"state": "allowed", "answers": [[0], [0]]}
    assert approval.decision_output({**good, "digest": own}, own=own, suggestions=[],
                                    tool_name="AskUserQuestion", tool_input=QUESTIONS)
    assert approval.decision_output({**good, "digest": "0" * 64}, own=own, suggestions=[],
                                    tool_name="AskUserQuestion", tool_input=QUESTIONS) is None
    answered = {**QUESTIONS, "answers": {"Which color?": "Red"}}
    assert approval.questions_of(answered) is None
    assert approval.decision_output({**good, "digest": own}, own=own, suggestions=[],
                                    tool_name="AskUserQuestion", tool_input=answered) is None


def test_questions_beyond_the_phone_are_left_to_the_terminal(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    """Five options, a repeated label, no options: the agent answers at once, files nothing."""
    made, tunnel = broker
    option = {"label": "x", "description": ""}
    for questions in ([{"question": "Q?", "options": [
            {"label": str(n), "description": ""} for n in range(5)]}],
            [{"question": "Q?", "options": [option, option]}],
            [{"question": "Q?", "options": []}], "not a list"):
        assert made.ask({"session_id": SESSION, "tool_name": "AskUserQuestion",
                         "tool_input": {"questions": questions}}) == {}
    assert tunnel.sent == []


def test_hostile_labels_and_a_long_plan_are_bounded() -> None:
    long = {"questions": [{"question": "Q" * 3000, "header": "H" * 80, "options": [
        {"label": "<b>" + "L" * 300, "description": "d"}, {"label": "b", "description": ""}]}]}
    from claude_notify.agent.approvals import shape

    [shaped] = shape("AskUserQuestion", long) or []
    assert (len(shaped["header"]), len(shaped["options"][0])) == (40, 100)
    assert len(display("AskUserQuestion", long)) == 2000
    assert len(display("ExitPlanMode", {"plan": "p" * 9000})) == 2000
    assert shape("Bash", long) is None


def test_the_terminal_answering_a_plan_or_a_question_withdraws_it_by_name(
    broker: tuple[Broker, Tunnel], env: dict[str, str]
) -> None:
    """Measured with 2.1.332: the plan's ``PostToolUse`` has ``tool_input`` ``{}``; an answered
    question's has the answers added. Neither matches the digest filed; the tool's name does."""
    _, tunnel = broker
    out: list[str | None] = []
    payload = {"session_id": SESSION, "hook_event_name": "PermissionRequest",
               "tool_name": "ExitPlanMode", "tool_input": PLAN}
    thread = threading.Thread(target=lambda: out.append(approval.ask(payload, env)))
    thread.start()
    tunnel.wait(1)
    approval.withdraw({"hook_event_name": "PostToolUse", "session_id": SESSION,
                       "tool_name": "AskUserQuestion", "tool_input": {}}, env)
    assert thread.is_alive() and len(tunnel.sent) == 1  # not the plan's
    approval.withdraw({"hook_event_name": "PostToolUse", "session_id": SESSION,
                       "tool_name": "ExitPlanMode", "tool_input": {}}, env)
    thread.join(10)
    assert out == [None]
    withdrawn = tunnel.wait(2)[1]
    assert (withdrawn["type"], withdrawn["digest"], withdrawn["tool_name"]) == (
        "withdraw", None, "ExitPlanMode")
