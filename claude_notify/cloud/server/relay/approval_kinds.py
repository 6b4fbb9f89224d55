"""The three kinds of permission request a card can be, and what each one's card says.

* **A tool call** (``Bash``, ``Edit``…): Allow / Deny, and "Always in this session" where Claude
  offered it.
* **A plan** (``ExitPlanMode``): the plan itself, "Claude wants to start on this plan", with
  **Approve plan** (the hook hands Claude Code the call back unchanged, and the session leaves
  plan mode asking before each edit, as the dialog's "manually approve edits" does) and **Keep
  planning** (a deny with a standard message, and the owner's note if they wrote one).
* **Claude's questions** (``AskUserQuestion``): the questions and their options. One question
  that takes one answer gets a button per option (at most :data:`OPTIONS`); several questions,
  or one that takes several answers, are answered on the approval's web page, which the card
  links to. The server stores and sends only the indices of the options chosen: the hook turns
  them into Claude Code's ``answers`` from its own copy of the questions (so no answer can
  change a question, or answer one that was not asked).

A question's shape (short headers, option labels, whether it takes several) is kept in the
approval's ``suggestions`` column, which a question has no other use for (it never offers
"always"); the options chosen are kept in ``suggestion`` as a bit mask (bit ``4·q + o``: option
``o`` of question ``q``). The questions' text itself is in the sealed ``display``, like a
command. Nothing here needs a new column.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from claude_notify.cloud.server.relay.models import Approval

PLAN_TOOL: Final = "ExitPlanMode"
QUESTION_TOOL: Final = "AskUserQuestion"
TOOL, PLAN, QUESTION = "tool", "plan", "question"
QUESTIONS: Final = 4
OPTIONS: Final = 4
"""Claude Code's own bounds (1-4 questions, 2-4 options each): a mask of 16 bits holds any
answer."""
LABEL_CHARS: Final = 100
HEADER_CHARS: Final = 40
NOTE_CHARS: Final = 500
"""The longest note the owner may send with a "no" (the web page's field, a Telegram reply)."""


@dataclass(frozen=True, slots=True)
class Words:
    """What a card of this kind says."""

    title: str
    allow: str
    deny: str
    note: str
    """The button that asks for a note (Telegram)."""
    prompt: str
    """What the bot asks for, replying to that button."""
    allowed: str
    denied: str


_WORDS: Final = {
    TOOL: Words(title="Claude wants to use {tool}", allow="Allow", deny="Deny",
                note="Deny with note…",
                prompt="Reply to this message with what Claude should read with the denial.",
                allowed="Allowed", denied="Denied"),
    PLAN: Words(title="Claude wants to start on this plan", allow="Approve plan",
                deny="Keep planning", note="Keep planning, with a note…",
                prompt="Reply to this message with what Claude should change in the plan.",
                allowed="Plan approved", denied="Keep planning"),
    QUESTION: Words(title="Claude asks you", allow="Answer", deny="Don't answer",
                    note="Don't answer, with a note…",
                    prompt="Reply to this message with what Claude should read instead of an "
                           "answer.",
                    allowed="Answered", denied="Not answered"),
}


def kind(row: Approval) -> str:
    """``plan``, ``question`` or ``tool``."""
    if row.tool_name == PLAN_TOOL:
        return PLAN
    return QUESTION if row.tool_name == QUESTION_TOOL else TOOL


def words(row: Approval) -> Words:
    found = _WORDS[kind(row)]
    if kind(row) == QUESTION and len(questions(row)) > 1:
        return replace(found, title=f"Claude asks you {len(questions(row))} questions")
    return replace(found, title=found.title.format(tool=row.tool_name))


def always_label(row: Approval) -> str | None:
    """The label of the "always in this session" answer a tool call offers, else ``None`` (a
    plan or a question never offers one)."""
    if kind(row) != TOOL or not row.suggestions or not isinstance(row.suggestions[0], str):
        return None
    return row.suggestions[0]


def shape(raw: object) -> list[dict[str, Any]] | None:
    """A question's shape as the agent sent it, checked and bounded, else ``None``."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= QUESTIONS:
        return None
    shaped = []
    for question in raw:
        if not isinstance(question, dict):
            return None
        options, header = question.get("options"), question.get("header")
        if not isinstance(options, list) or not 1 <= len(options) <= OPTIONS or not all(
                isinstance(o, str) and o.strip() for o in options):
            return None
        shaped.append({"header": header[:HEADER_CHARS] if isinstance(header, str) else "",
                       "options": [o[:LABEL_CHARS] for o in options],
                       "multi": question.get("multi") is True})
    return shaped


def questions(row: Approval) -> list[dict[str, Any]]:
    """A question's shape as stored (``[]`` for any other kind, or a question filed by an agent
    too old to send one: that one is answered in the terminal)."""
    return (shape(row.suggestions) or []) if kind(row) == QUESTION else []


def buttons_answer(row: Approval) -> bool:
    """Whether a card's buttons can answer it: one question that takes one answer."""
    found = questions(row)
    return len(found) == 1 and not found[0]["multi"]


def mask(row: Approval, chosen: list[list[int]]) -> int | None:
    """The answer ``chosen`` (per question, the indices of its options) as stored, if it answers
    every question of ``row`` with options it has (one only, unless the question takes several);
    else ``None``."""
    found = questions(row)
    if not found or len(chosen) != len(found):
        return None
    bits = 0
    for q, (question, picks) in enumerate(zip(found, chosen, strict=True)):
        if not picks or len(set(picks)) != len(picks) or (len(picks) > 1
                                                          and not question["multi"]):
            return None
        for o in picks:
            if not 0 <= o < len(question["options"]):
                return None
            bits |= 1 << (OPTIONS * q + o)
    return bits


def chosen(row: Approval) -> list[list[int]] | None:
    """The options the owner chose, per question (an answered question only)."""
    found = questions(row)
    if row.state != "allowed" or not found or row.suggestion is None:
        return None
    return [[o for o in range(len(q["options"])) if row.suggestion >> (OPTIONS * i + o) & 1]
            for i, q in enumerate(found)]


def answered(row: Approval) -> str:
    """The labels chosen, as the cards say them ("Blue; Ham, Egg"), unescaped."""
    picks = chosen(row) or []
    return "; ".join(", ".join(q["options"][o] for o in p)
                     for q, p in zip(questions(row), picks, strict=False))
