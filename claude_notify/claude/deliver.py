"""The hook's detached delivery process: debounce, fill in Claude's message, notify.

Started by :mod:`claude_notify.claude.hook` as ``python -m claude_notify.claude.deliver FILE
TOKEN``. For a debounced ``Stop`` the FILE is the session's pending file: a newer ``Stop``
replaces it (another token) and a new prompt or tool call removes it, and either way this process
then has nothing to do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    path, token = Path(argv[0]), argv[1]
    data = _load(path)
    if data is None or data.get("token") != token:
        return 0
    delay = float(data.get("delay") or 0.0)
    if delay > 0:
        time.sleep(delay)  # the debounce itself: a pending Stop may be cancelled meanwhile
        current = _load(path)
        if current is None or current.get("token") != token:
            return 0
    try:
        path.unlink()
    except OSError:
        pass
    from claude_notify import config as config_mod
    from claude_notify.dispatch import Dispatcher
    from claude_notify.events import TaskEvent

    event = TaskEvent.from_dict(data["event"])
    if event.message is None and data.get("transcript"):
        event = _with_transcript(event, str(data["transcript"]))
    cfg = config_mod.load()
    Dispatcher(cfg, os.environ).emit(event, on="exit", min_duration=0.0,
                                     urgency=data.get("urgency"))
    return 0


def _with_transcript(event: Any, transcript: str) -> Any:
    """Older Claude Code sends no ``last_assistant_message``: read it from the transcript, which
    may lag the hook a little, so look a few times."""
    from dataclasses import replace

    from claude_notify.claude.transcript import last_assistant_text

    for _ in range(5):
        text = last_assistant_text(transcript)
        if text:
            from claude_notify.claude.hook import excerpt

            return replace(event, message=excerpt(text))
        time.sleep(0.1)
    return event


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # nobody reads our stderr but the hook log
        from claude_notify.background import log

        log(f"hook delivery failed: {type(exc).__name__}: {exc}")
        sys.exit(0)
