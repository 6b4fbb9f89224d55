"""The agent tunnel's messages (``/v1/agent``), spoken by the agent and the server alike.

Each WebSocket text frame is one JSON object whose ``type`` names it. The server sends
:class:`Command`, :class:`Ack` and :class:`Pong`; the agent sends :class:`Hello` (first),
:class:`Started`, :class:`Result` and :class:`Ping`. The builders below make every message
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
