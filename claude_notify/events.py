"""The task event schema every part of claude-notify speaks.

A :class:`TaskEvent` is what the runner, ``watch``, the shell integration and the Claude Code hook
produce and what every sink (the desktop notifier, the history, the cloud) consumes. The
``TaskFinished`` of the product spec is a ``TaskEvent`` whose ``type`` is ``"finished"``.

On the wire it is a flat JSON object with an explicit ``schema_version``. Compatibility rules:

* a writer never removes or re-purposes a field; a new field gets a default and the version is
  bumped;
* a reader accepts any version, ignores fields it does not know and fills defaults for optional
  ones it misses, so old readers keep working on new events;
* ``event_id`` is the idempotency key: the same event delivered twice is one event.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Final, Literal, get_args

SCHEMA_VERSION: Final = 1

EventType = Literal["started", "progress", "match", "needs_input", "finished"]
Source = Literal["run", "watch", "shell", "claude-code", "relay"]
Status = Literal["running", "success", "failure", "interrupted", "needs_input", "ended"]

EVENT_TYPES: Final = frozenset(get_args(EventType))
SOURCES: Final = frozenset(get_args(Source))
STATUSES: Final = frozenset(get_args(Status))


def new_id() -> str:
    """A fresh random identifier: a UUID4 in canonical text form.

    Formatted by hand: the ``uuid`` module costs a millisecond of start-up on every wrapped
    command for what is sixteen random bytes and two version bits.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    """The current time, time-zone aware, in UTC."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    """Something happened to a task: it started, printed a matching line, needs input, ended."""

    type: EventType
    """What happened; ``"finished"`` is the TaskFinished event."""
    source: Source
    """Which part saw it: ``run``, ``watch``, ``shell``, ``claude-code``, ``relay``."""
    task_id: str
    """Stable for every event of one task (UUID for ``run``)."""
    machine_id: str
    """Random id persisted once per machine in the state dir; never derived from hardware."""
    session_id: str | None = None
    """The terminal or Claude Code session the task belongs to."""
    event_id: str = field(default_factory=new_id)
    """Unique per event: the idempotency key for every consumer."""
    schema_version: int = SCHEMA_VERSION
    """Version of this schema the writer spoke."""
    status: Status = "running"
    """Outcome at the time of the event; ``ended`` when the exit code cannot be known."""
    command: str = ""
    """The command as the user would read it (shell-quoted argv or the shell string)."""
    cwd: str = ""
    """Working directory of the task."""
    host: str = ""
    """Host name of the machine the task ran on."""
    started_at: datetime | None = None
    """When the task started, UTC."""
    ended_at: datetime | None = None
    """When the task ended, UTC; ``None`` while it runs."""
    duration_s: float | None = None
    """Wall-clock seconds from start to the event."""
    exit_code: int | None = None
    """The child's exit code; ``None`` when killed by a signal or unknowable."""
    signal: str | None = None
    """Name of the signal that ended the task (``SIGINT``), if any."""
    tail: str = ""
    """The last lines of output, control sequences removed, at most the configured size."""
    title: str | None = None
    """A title the source chose (Claude's notification title), if any."""
    message: str | None = None
    """A message the source chose (Claude's last message or prompt), if any."""
    match: str | None = None
    """For ``type == "match"``: the output line that matched."""
    peak_rss_bytes: int | None = None
    """Peak resident memory of the largest process in the task's tree, if measured (``None``
    when it stayed below the wrapper's own size, which the kernel's figure cannot tell apart)."""
    cpu_time_s: float | None = None
    """User + system CPU seconds of the task's (waited-for) process tree, if measured."""
    log_path: str | None = None
    """Where the full output was written (``--log``), if anywhere."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping: datetimes as RFC 3339 strings, everything else as is."""
        out = asdict(self)
        for key in ("started_at", "ended_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEvent:
        """Read an event of any schema version; unknown fields are ignored.

        Raises ``ValueError`` with a one-line reason when a required field is missing or a
        field has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("event must be a JSON object")
        known = {f.name for f in fields(cls)}
        # null where the field has a value by default (``"command": null``) means "not sent".
        kwargs = {k: v for k, v in data.items()
                  if k in known and not (v is None and k in _DEFAULTED)}
        for name in ("type", "source", "task_id", "machine_id"):
            if not isinstance(kwargs.get(name), str) or not kwargs[name]:
                raise ValueError(f"event field {name!r} is required and must be a string")
        _check_choice(kwargs, "type", EVENT_TYPES)
        _check_choice(kwargs, "source", SOURCES)
        if "status" in kwargs:
            _check_choice(kwargs, "status", STATUSES)
        for key in ("started_at", "ended_at"):
            if kwargs.get(key) is not None:
                kwargs[key] = _parse_time(kwargs[key], key)
        _check_types(kwargs)
        return cls(**kwargs)


def _check_choice(kwargs: dict[str, Any], name: str, allowed: frozenset[str]) -> None:
    if kwargs[name] not in allowed:
        raise ValueError(f"event field {name!r} must be one of {', '.join(sorted(allowed))}")


_DEFAULTED: Final = frozenset(
    f.name for f in fields(TaskEvent)
    if (f.default is not None and f.default is not MISSING) or f.default_factory is not MISSING
)
"""Fields whose value is never ``None``: a ``null`` sent for one is read as the default."""

_INT_FIELDS: Final = {
    # An exit code is 32 bits on every OS (the server stores it in a 32-bit column); the rest
    # must fit the 64 bits every JSON reader and database here can hold.
    "exit_code": (-(2**31), 2**31 - 1),
    "peak_rss_bytes": (0, 2**63 - 1),
    "schema_version": (0, 2**31 - 1),
}
_FLOAT_FIELDS: Final = ("duration_s", "cpu_time_s")
_STR_FIELDS: Final = (
    "session_id", "event_id", "command", "cwd", "host", "signal", "tail",
    "title", "message", "match", "log_path",
)


def _check_types(kwargs: dict[str, Any]) -> None:
    for name, (low, high) in _INT_FIELDS.items():
        value = kwargs.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"event field {name!r} must be an integer")
        if name == "exit_code" and 2**31 <= value < 2**32:
            # Windows reports a crash as an unsigned 32-bit code (0xC0000005 = 3221225477): the
            # same 32 bits, read signed, as Windows' own tools show them.
            value = kwargs[name] = value - 2**32
        if not low <= value <= high:
            raise ValueError(f"event field {name!r} must be between {low} and {high}")
    for name in _FLOAT_FIELDS:
        value = kwargs.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"event field {name!r} must be a number")
            # NaN and infinity (JSON's NaN, Infinity, 1e999) cannot be rendered or stored as
            # JSON by PostgreSQL; an integer too large for a float overflows here.
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise ValueError(f"event field {name!r} must be a finite number")
            kwargs[name] = number
    for name in _STR_FIELDS:
        value = kwargs.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"event field {name!r} must be a string")


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"event field {name!r} must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"event field {name!r} is not an RFC 3339 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"event field {name!r} needs a time-zone offset")
    try:  # 0001-01-01T00:00+05:00 is a valid string and a time before year 1 in UTC
        parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"event field {name!r} is out of range: {value[:40]!r}") from None
    return parsed


def host_name() -> str:
    """This machine's host name, as ``uname`` reports it."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
