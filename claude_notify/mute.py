"""Quiet when asked: ``claude-notify mute [DURATION]`` and quiet hours from config.

Both apply to every source (run, watch, shell, the Claude Code hook). A muted event is still
recorded in the history; only the notification is held back.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from claude_notify.paths import state_dir

FOREVER = "forever"


def mute_file() -> Path:
    return state_dir() / "mute_until"


def mute(seconds: float | None, *, now: datetime | None = None) -> datetime | None:
    """Mute for ``seconds`` (``None``: until ``unmute``); the end time, if any."""
    now = now or datetime.now().astimezone()
    until = None if seconds is None else now + timedelta(seconds=seconds)
    from claude_notify.fsutil import atomic_write

    # A unique temporary per writer: two `mute`s at once each replace the file whole.
    atomic_write(mute_file(), FOREVER if until is None else until.isoformat(), mode=None,
                 durable=False)
    return until


def unmute() -> bool:
    """Lift a mute; whether one was set."""
    try:
        mute_file().unlink()
    except FileNotFoundError:
        return False
    return True


def muted_until(now: datetime | None = None) -> datetime | str | None:
    """The end of the current mute, ``FOREVER``, or ``None`` when not muted."""
    try:
        text = mute_file().read_text(encoding="ascii").strip()
    except OSError:
        return None
    if text == FOREVER:
        return FOREVER
    try:
        until = datetime.fromisoformat(text)
    except ValueError:
        return None  # a damaged file must not silence notifications forever
    now = now or datetime.now().astimezone()
    return until if until > now else None


def parse_hours(text: str) -> tuple[int, int] | None:
    """``"22:00-07:00"`` as minutes since midnight; ``""`` means no quiet hours."""
    if not text.strip():
        return None
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not m:
        raise ValueError("expected HH:MM-HH:MM, e.g. 22:00-07:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError("hours are 00-23 and minutes 00-59")
    return h1 * 60 + m1, h2 * 60 + m2


def in_quiet_hours(hours: tuple[int, int] | None, now: datetime) -> bool:
    """Whether local time ``now`` falls in the window (which may wrap past midnight)."""
    if hours is None:
        return False
    start, end = hours
    minute = now.hour * 60 + now.minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def reason(hours: tuple[int, int] | None, now: datetime | None = None) -> str | None:
    """Why notifications are held back right now, or ``None``."""
    now = now or datetime.now().astimezone()
    until = muted_until(now)
    if until == FOREVER:
        return "muted"
    if isinstance(until, datetime):
        return f"muted until {until:%H:%M}"
    if in_quiet_hours(hours, now):
        return "quiet hours"
    return None
