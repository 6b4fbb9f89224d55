"""The offline spool: what the cloud has not acknowledged yet, one file per request.

Every request the CLI owes the server (a task's registration, an event) is written here first —
to a temporary name, flushed, then renamed into place, so a crash leaves a whole file or none — and
removed only once the server has answered 2xx. Names sort by creation time, so a task's
registration goes before its events. A sender claims a file by renaming it to a name carrying its
PID; a rename happens once, so two CLIs syncing at once never send the same file twice (and the
server's ``event_id`` idempotency covers even a crash between "sent" and "removed"). A claim whose
process died is taken back. What the server refuses for good, or what cannot be read, goes to
``dead/`` with the reason: never retried forever, never silently lost. Each one set aside is also
noted in ``dead/unreported`` until a ``sync`` or the next ``run`` has told the user.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_notify.fsutil import atomic_write
from claude_notify.paths import state_dir

_CLAIM = ".claim-"


def spool_dir() -> Path:
    return state_dir() / "spool"


@dataclass(frozen=True, slots=True)
class Item:
    """A claimed spool entry: send ``body`` with ``method`` to ``path``, then :func:`done`."""

    file: Path
    original: Path
    method: str
    path: str
    body: Any
    raw: bytes | None = None
    """Bytes to send as they are (a log chunk), instead of a JSON body."""


def put(method: str, path: str, body: Any, *, key: str, raw: bytes | None = None) -> Path:
    """Spool one request durably; ``key`` (an event or task id) names the file."""
    record: dict[str, Any] = {"method": method, "path": path, "body": body}
    if raw is not None:
        import base64

        record["raw"] = base64.b64encode(raw).decode("ascii")
    final = spool_dir() / f"{time.time_ns():020d}-{_safe(key)}.json"
    # The temporary name starts with a dot: pending() never picks up a half-written request.
    atomic_write(final, json.dumps(record), mode=0o600)
    return final


def pending() -> list[Path]:
    """Unclaimed entries, oldest first."""
    try:
        names = sorted(p for p in spool_dir().iterdir()
                       if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    return names


def claim_all() -> Iterator[Item]:
    """Claim entries one at a time, oldest first, taking back claims of dead processes."""
    _reclaim_orphans()
    for original in pending():
        claimed = original.with_name(f"{original.name}{_CLAIM}{os.getpid()}")
        try:
            original.rename(claimed)
        except FileNotFoundError:
            continue  # another sender took it
        try:
            data = json.loads(claimed.read_text(encoding="utf-8"))
            raw = None
            if data.get("raw") is not None:
                import base64

                raw = base64.b64decode(data["raw"])
            item = Item(claimed, original, str(data["method"]), str(data["path"]), data["body"],
                        raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bury(Item(claimed, original, "", "", None), f"unreadable spool file: {exc}")
            continue
        yield item


def done(item: Item) -> None:
    """The server acknowledged it."""
    try:
        item.file.unlink()
    except FileNotFoundError:
        pass


def release(item: Item) -> None:
    """Not sent (server unreachable): give it back for the next sender."""
    try:
        item.file.rename(item.original)
    except FileNotFoundError:
        pass


def dead_dir() -> Path:
    """Where requests set aside for good are kept, each with a ``.reason`` file beside it."""
    return spool_dir() / "dead"


def bury(item: Item, reason: str) -> None:
    """Refused for good: keep it, with the reason, out of the way of the others."""
    dead = dead_dir()
    reason = " ".join(reason.split())[:300]
    try:
        dead.mkdir(parents=True, exist_ok=True)
        item.file.rename(dead / item.original.name)
        (dead / f"{item.original.name}.reason").write_text(reason + "\n", encoding="utf-8")
        note = json.dumps({"name": item.original.name, "reason": reason}) + "\n"
        fd = os.open(dead / _UNREPORTED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, note.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


_UNREPORTED = "unreported"


def take_unreported() -> list[tuple[str, str]]:
    """``(file name, reason)`` of each request set aside since the user was last told, once:
    the note is renamed away first, so two processes never both report it. One failed rename
    when there is nothing to tell."""
    note = dead_dir() / _UNREPORTED
    taken = note.with_name(f"{_UNREPORTED}{_CLAIM}{os.getpid()}")
    try:
        note.rename(taken)
        data = taken.read_text(encoding="utf-8", errors="replace")
        taken.unlink()
    except OSError:
        return []
    found = []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
            found.append((str(entry["name"]), str(entry["reason"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def dead_count() -> int:
    try:
        return sum(1 for p in dead_dir().iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return 0


def _reclaim_orphans() -> None:
    try:
        entries = list(spool_dir().iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        name, sep, pid = path.name.rpartition(_CLAIM)
        if not sep or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            path.rename(path.with_name(name))
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:80]
