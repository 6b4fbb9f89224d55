"""The last thing Claude said, from a session transcript (JSONL), for Claude Code versions whose
``Stop`` payload has no ``last_assistant_message``.

Only the file's tail is read: transcripts grow to many megabytes and we need one message.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

TAIL_BYTES = 256 * 1024


def last_assistant_text(path: str | Path, *, tail_bytes: int = TAIL_BYTES) -> str | None:
    """The text of the last main-thread (non-sidechain) assistant message, if any."""
    try:
        # Non-blocking, and only a regular file: a FIFO would block the open, a device such as
        # /dev/zero would never end; and never more than tail_bytes, however long the last line.
        fd = os.open(Path(path).expanduser(), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            data = f.read(tail_bytes)
    except OSError:
        return None
    lines = data.split(b"\n")
    if len(data) < size:
        lines = lines[1:]  # the first line was cut by the seek
    for raw in reversed(lines):
        text = _assistant_text(raw)
        if text:
            return text
    return None


def _assistant_text(raw: bytes) -> str | None:
    if b'"assistant"' not in raw:
        return None
    try:
        entry: Any = json.loads(raw)
    except ValueError:
        return None  # a half-written line or a foreign one: skip it
    if not isinstance(entry, dict) or entry.get("type") != "assistant":
        return None
    if entry.get("isSidechain"):
        return None
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content.strip() or None
    if not isinstance(content, list):
        return None
    texts = [block.get("text", "") for block in content
             if isinstance(block, dict) and block.get("type") == "text"]
    joined = "\n".join(t for t in texts if isinstance(t, str) and t.strip()).strip()
    return joined or None  # a pure tool_use turn has no text
