"""The agent tunnel's messages (``/v1/agent``), spoken by the agent and the server alike.

Each WebSocket text frame is one JSON object whose ``type`` names it. The server sends
:class:`Command`, :class:`Ack`, :class:`Pong` and :class:`Decision`; the agent sends
:class:`Hello` (first), :class:`Started`, :class:`Result`, :class:`Ping`, :class:`Approval` and
:class:`Withdraw`. The builders below make every message
either side sends, with its keys in the order they have always been sent. What arrives is
read defensively (a peer may be older, newer or hostile), so the types describe what is sent,
not what may be trusted.

Stdlib only: the agent runs without the server's extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, TypedDict

PATH: Final = "/v1/agent"

COMMAND: Final = "command"
ACK: Final = "ack"
PONG: Final = "pong"
HELLO: Final = "hello"
STARTED: Final = "started"
RESULT: Final = "result"
PING: Final = "ping"
APPROVAL: Final = "approval"
WITHDRAW: Final = "withdraw"
DECISION: Final = "decision"

RESTARTING: Final = 1012
"""The close code of a server going away to restart (RFC 6455's "Service Restart"; uvicorn sends
it to every socket on SIGTERM): the agent reconnects at once, and keeps retrying every half second
while the successor starts, rather than backing off. Any other close is an outage: backoff."""


# --------------------------------------------------------------------------- server → agent


class Command(TypedDict):
    """A command to run (``kind`` ``shell``) or a prompt to continue a Claude Code session
    (``claude``), in ``cwd``, for ``session_id``; sent again after a reconnect until acked."""

    type: Literal["command"]
    id: str
    session_id: str
    command: str
    cwd: str | None
    source: str
    kind: str


class Ack(TypedDict):
    """The server stored the :class:`Result` of ``id``: the agent may forget it."""

    type: Literal["ack"]
    id: str


class Pong(TypedDict):
    type: Literal["pong"]


class _Answered(TypedDict, total=False):
    answers: list[list[int]]
    """For a question (``AskUserQuestion``) answered from the phone: per question, the indices of
    the options chosen; the hook turns them into Claude Code's ``answers`` from its own copy of
    the questions. Sent only then."""


class Decision(_Answered):
    """How approval ``id`` ended: ``state`` is ``allowed``, ``denied``, ``expired``,
    ``withdrawn`` or ``unavailable`` (nobody can be asked: ``detail`` says why). ``digest`` is the
    one the approval was filed with, so the hook can check the answer is for its own call;
    ``suggestion`` is the index of the ``permission_suggestions`` entry to apply ("always in this
    session"), taken from the hook's own copy, never from the server."""

    type: Literal["decision"]
    id: str
    state: str
    digest: str
    suggestion: int | None
    note: str | None
    by: str | None
    detail: str | None


# --------------------------------------------------------------------------- agent → server


class Hello(TypedDict):
    """The agent's first message: what it started and has no acknowledged result for, and the
    sessions it knows."""

    type: Literal["hello"]
    running: list[str]
    sessions: list[str]
    policy: Policy
    """What this agent may run, for its owner to read on the web app (it is enforced here, on
    the machine; the server never decides from it). Older agents leave it out."""


class Policy(TypedDict):
    allow: list[str]
    deny: list[str]
    dirs: list[str]
    claude: bool


class Started(TypedDict):
    type: Literal["started"]
    id: str


class Result(TypedDict):
    """How a command ended: ``state`` is ``done``, ``failed`` or ``refused``."""

    type: Literal["result"]
    id: str
    state: str | None
    exit_code: int | None
    detail: str | None


class Ping(TypedDict):
    """The agent's heartbeat; the server answers :class:`Pong`."""

    type: Literal["ping"]


class Approval(TypedDict):
    """Ask the owner about one tool call (``id`` is the agent's, so a re-send after a reconnect
    files nothing new). ``display`` is what the call does, literally (the command, the file and a
    diff summary), never the model's description of it; ``suggestions`` are the labels of the
    "always" answers Claude offered."""

    type: Literal["approval"]
    id: str
    session_id: str
    tool_use_id: str | None
    tool_name: str
    digest: str
    display: str
    cwd: str | None
    suggestions: list[str]
    timeout_s: float
    questions: list[Question] | None
    """For a question (``AskUserQuestion``): what its buttons need, per question (the text is in
    ``display``). Older agents leave it out."""


class Question(TypedDict):
    """One question of an ``AskUserQuestion`` call: its short header, its options' labels (at
    most four) and whether it takes several."""

    header: str
    options: list[str]
    multi: bool


class Withdraw(TypedDict):
    """The session moved on without the phone: approval ``id`` (or, without one, every pending
    approval of ``session_id``, or those of it whose call has ``digest``) is answered elsewhere.
    ``reason`` is ``terminal`` or ``expired``."""

    type: Literal["withdraw"]
    id: str | None
    session_id: str | None
    digest: str | None
    reason: str
    tool_name: str | None
    """Instead of ``digest``: those of the session for this tool (a plan, a question: Claude
    Code reports their input differently once answered). Older agents leave it out."""


def command(*, id: str, session_id: str, command: str, cwd: str | None, source: str,
            kind: str) -> Command:
    return {"type": "command", "id": id, "session_id": session_id, "command": command,
            "cwd": cwd, "source": source, "kind": kind}


def ack(id: str) -> Ack:
    return {"type": "ack", "id": id}


def pong() -> Pong:
    return {"type": "pong"}


def hello(*, running: Sequence[str], sessions: Sequence[str], policy: Policy) -> Hello:
    return {"type": "hello", "running": list(running), "sessions": list(sessions),
            "policy": policy}


def started(id: str) -> Started:
    return {"type": "started", "id": id}


def result(*, id: str, state: str | None, exit_code: int | None,
           detail: str | None) -> Result:
    return {"type": "result", "id": id, "state": state, "exit_code": exit_code,
            "detail": detail}


def ping() -> Ping:
    return {"type": "ping"}


def decision(*, id: str, state: str, digest: str, suggestion: int | None = None,
             note: str | None = None, by: str | None = None,
             detail: str | None = None, answers: list[list[int]] | None = None) -> Decision:
    made: Decision = {"type": "decision", "id": id, "state": state, "digest": digest,
                      "suggestion": suggestion, "note": note, "by": by, "detail": detail}
    if answers is not None:  # a question's answer only: every other decision reads as before
        made["answers"] = answers
    return made


def approval(*, id: str, session_id: str, tool_use_id: str | None, tool_name: str, digest: str,
             display: str, cwd: str | None, suggestions: Sequence[str], timeout_s: float,
             questions: list[Question] | None = None) -> Approval:
    return {"type": "approval", "id": id, "session_id": session_id, "tool_use_id": tool_use_id,
            "tool_name": tool_name, "digest": digest, "display": display, "cwd": cwd,
            "suggestions": list(suggestions), "timeout_s": timeout_s, "questions": questions}


def question(*, header: str, options: Sequence[str], multi: bool) -> Question:
    return {"header": header, "options": list(options), "multi": multi}


def withdraw(*, id: str | None = None, session_id: str | None = None, digest: str | None = None,
             reason: str = "terminal", tool_name: str | None = None) -> Withdraw:
    return {"type": "withdraw", "id": id, "session_id": session_id, "digest": digest,
            "reason": reason, "tool_name": tool_name}
