"""The hook's half of answering permission requests from the phone: ask the local agent, and
turn its answer into Claude Code's ``PermissionRequest`` decision.

The hook holds no credential: it talks only to the agent running as the same user, over a Unix
socket in a directory only that user can enter (the socket itself 0600). The agent asks the
server and waits; the hook waits on the agent. Whatever goes wrong (no agent, no answer, an
answer for another call) ends in printing nothing, which leaves the decision to the terminal's
dialog as if claude-notify were not there.

Stdlib only, and light to import (``hashlib`` and ``socket`` load only once there is an agent to
ask): the hook runs on every tool call.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

WAIT_CAP_S: Final = 3600.0
"""The hook's own limit on waiting: Claude Code kills it earlier (``approval_timeout`` + 15 s),
and the agent answers at ``approval_timeout``."""
CONNECT_S: Final = 0.5
DIGEST_EVENTS: Final = frozenset({"PostToolUse", "PostToolUseFailure"})
"""Of the events that withdraw (``claude.hook.WITHDRAWING``), those about one call: only that
call's approval is withdrawn; the others withdraw all of the session's."""
PLAN: Final = "ExitPlanMode"
QUESTION: Final = "AskUserQuestion"
ASKED_BY_NAME: Final = frozenset({PLAN, QUESTION})
"""Tools whose call Claude Code reports differently after it ran (measured with 2.1.332: the
plan's ``PostToolUse`` has ``tool_input`` ``{}``, an answered question's has the answers
added), so the terminal answering one withdraws it by the tool's name, not the input's digest."""
QUESTIONS: Final = 4
OPTIONS: Final = 4
"""Claude Code's own bounds (1-4 questions of 2-4 options, "hard schema constraints" in
2.1.332): a question beyond them is left to the terminal."""
ANSWER_KEYS: Final = frozenset({"answers", "annotations", "response", "followUp"})
"""What answering a question adds to its input; already there, it is not ours to answer."""


def digest(tool_name: str, tool_input: object) -> str:
    """SHA-256 of the call's canonical JSON: an answer is applied only to the call it was for."""
    import hashlib

    canonical = json.dumps([tool_name, tool_input], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the agent listens: ``$CLAUDE_NOTIFY_AGENT_SOCKET``; with a state dir of its own (a
    second setup, the tests) inside it; else ``$XDG_RUNTIME_DIR/claude-notify/agent.sock``
    (private to the user, gone at logout); else in the state dir."""
    env = os.environ if env is None else env
    if explicit := env.get("CLAUDE_NOTIFY_AGENT_SOCKET"):
        return Path(explicit)
    if state := env.get("CLAUDE_NOTIFY_STATE_DIR"):
        return Path(state).expanduser() / "agent.sock"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):  # noqa: PTH117 - the XDG rule, as paths.py reads it
        return Path(runtime) / "claude-notify" / "agent.sock"
    from claude_notify.paths import state_dir

    return state_dir() / "agent.sock"


def _call(request: dict[str, Any], *, wait_s: float, env: Mapping[str, str]) -> dict[str, Any]:
    """One request to the agent and its one-line answer; ``{}`` when there is no agent."""
    if sys.platform == "win32":
        return {}  # no agent socket there: the dialog decides
    else:  # a platform branch: mypy skips it elsewhere
        path = socket_path(env)
        if not path.exists():
            return {}
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(CONNECT_S)
            try:
                conn.connect(str(path))
                conn.sendall(json.dumps(request).encode() + b"\n")
                conn.settimeout(wait_s)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:  # no agent listening, or it went away
                return {}
        try:
            answer = json.loads(data)
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}


def ask(payload: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The decision JSON for a ``PermissionRequest`` answered from the phone, else ``None``."""
    tool_name, tool_input = payload.get("tool_name"), payload.get("tool_input")
    if not isinstance(tool_name, str) or not isinstance(tool_input, dict):
        return None
    own = digest(tool_name, tool_input)
    suggestions = payload.get("permission_suggestions")
    suggestions = suggestions if isinstance(suggestions, list) else []
    answer = _call({"op": "ask", "session_id": payload.get("session_id"),
                    "tool_name": tool_name, "tool_input": tool_input, "digest": own,
                    "suggestions": suggestions, "cwd": payload.get("cwd")},
                   wait_s=WAIT_CAP_S, env=env)
    return decision_output(answer, own=own, suggestions=suggestions, tool_name=tool_name,
                           tool_input=tool_input)


def decision_output(answer: Mapping[str, Any], *, own: str, suggestions: list[Any],
                    tool_name: str = "", tool_input: Mapping[str, Any] | None = None) -> str | None:
    """Claude Code's JSON for the agent's answer, only if it is an answer for this very call.

    Approving a plan (``ExitPlanMode``) hands Claude Code the call's own input back as
    ``updatedInput``: 2.1.332 ignores a bare ``allow`` for it (the dialog stays). Answering a
    question (``AskUserQuestion``) is an ``allow`` whose ``updatedInput`` is the call's own input
    with ``answers`` added, built here from this hook's copy of the questions and the option
    indices the owner chose: the server sends indices only, so it can neither change a question
    nor answer one that was not asked."""
    if answer.get("digest") != own:
        return None
    state = answer.get("state")
    tool_input = tool_input if tool_input is not None else {}
    if state == "allowed" and tool_name == QUESTION:
        answers = question_answers(tool_input, answer.get("answers"))
        if answers is None:
            return None  # no answer we can give for these questions: the dialog decides
        decision: dict[str, Any] = {"behavior": "allow",
                                    "updatedInput": {**tool_input, "answers": answers}}
    elif state == "allowed" and tool_name == PLAN:
        decision = {"behavior": "allow", "updatedInput": dict(tool_input)}
    elif state == "allowed":
        decision = {"behavior": "allow"}
        index = answer.get("suggestion")
        if isinstance(index, int) and not isinstance(index, bool):
            offered = session_suggestions(suggestions)
            if not 0 <= index < len(offered):
                return None  # an "always" we did not offer: not applied, not guessed
            decision["updatedPermissions"] = [offered[index]]
    elif state == "denied":
        by, note = answer.get("by"), answer.get("note")
        decision = {"behavior": "deny", "message": deny_message(
            tool_name, by if isinstance(by, str) else "the phone",
            note if isinstance(note, str) else "")}
    else:
        return None
    return json.dumps({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
                                              "decision": decision}})


def deny_message(tool_name: str, by: str, note: str) -> str:
    """What Claude reads when the owner said no: for a plan, to keep planning; for a question,
    that it went unanswered; the owner's note after it."""
    if tool_name == PLAN:
        said = f"The owner did not approve the plan from {by}: keep planning"
    elif tool_name == QUESTION:
        said = f"The owner chose not to answer from {by}"
    else:
        said = f"Denied from {by} by the owner"
    return said + (f": {note}" if note else "")


def questions_of(tool_input: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """An ``AskUserQuestion`` call's questions, if the phone can answer them: within Claude
    Code's bounds, each with its question text and option labels (distinct), and no answer in
    the input already. ``None`` otherwise (the terminal answers)."""
    questions = tool_input.get("questions")
    if ANSWER_KEYS & set(tool_input) or not isinstance(questions, list) or not (
            1 <= len(questions) <= QUESTIONS):
        return None
    shaped = []
    for question in questions:
        if not isinstance(question, dict) or not isinstance(question.get("question"), str):
            return None
        options = question.get("options")
        if not isinstance(options, list) or not 1 <= len(options) <= OPTIONS:
            return None
        labels = [o.get("label") if isinstance(o, dict) else None for o in options]
        if not all(isinstance(label, str) and label for label in labels) or len(
                set(labels)) != len(labels):
            return None
        shaped.append({"question": question["question"], "header": question.get("header"),
                       "options": options, "labels": labels,
                       "multiSelect": question.get("multiSelect") is True})
    if len({q["question"] for q in shaped}) != len(shaped):
        return None
    return shaped


def question_answers(tool_input: Mapping[str, Any], chosen: object) -> dict[str, str] | None:
    """``answers`` for Claude Code (question text → the chosen label; several, for a question
    that takes several, joined as Claude Code joins them), from one list of option indices per
    question; ``None`` unless every question has a valid choice."""
    questions = questions_of(tool_input)
    if questions is None or not isinstance(chosen, list) or len(chosen) != len(questions):
        return None
    answers = {}
    for question, picks in zip(questions, chosen, strict=True):
        if not isinstance(picks, list) or not picks or len(set(picks)) != len(picks) or not all(
                isinstance(i, int) and not isinstance(i, bool)
                and 0 <= i < len(question["labels"]) for i in picks):
            return None
        if len(picks) > 1 and not question["multiSelect"]:
            return None
        labels = [question["labels"][i] for i in sorted(picks)]
        answers[question["question"]] = ", ".join(
            json.dumps(label, ensure_ascii=False) if ", " in label or '"' in label else label
            for label in labels)
    return answers


PICKABLE: Final = frozenset({"addRules", "addDirectories"})
"""The kinds of "always" a phone may pick: a rule or a directory, never a change of the whole
session's permission mode (Claude Code also offers ``setMode``)."""


def session_suggestions(suggestions: list[Any]) -> list[dict[str, Any]]:
    """The ``permission_suggestions`` entries the phone may pick, verbatim: rules or directories
    that last for this session only (a phone should not write the user's settings files)."""
    return [s for s in suggestions if isinstance(s, dict) and s.get("destination") == "session"
            and s.get("type") in PICKABLE]


def withdraw(payload: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Tell the agent the session moved on (cheap: nothing happens without an agent)."""
    event = payload.get("hook_event_name")
    request: dict[str, Any] = {"op": "withdraw", "session_id": payload.get("session_id")}
    if event in DIGEST_EVENTS:
        tool_name, tool_input = payload.get("tool_name"), payload.get("tool_input")
        if not isinstance(tool_name, str):
            return
        if tool_name in ASKED_BY_NAME:
            request["tool_name"] = tool_name
        else:
            request["digest"] = digest(tool_name, tool_input)
    _call(request, wait_s=1.0, env=env)


def pending(payload: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """Whether a permission request of this session is waiting for the phone (its card is the
    phone's notification; nothing when no agent listens)."""
    answer = _call({"op": "pending", "session_id": payload.get("session_id")}, wait_s=1.0,
                   env=env)
    count = answer.get("pending")
    return isinstance(count, int) and count > 0


def agent_listening(env: Mapping[str, str]) -> bool:
    """Whether an agent answers on the socket (for ``claude status``)."""
    return "pending" in _call({"op": "pending", "session_id": ""}, wait_s=1.0, env=env)
