"""A task event's headline (the subject), and the bodies of mails rendered when queued.

Commands and log tails are untrusted: the subject is stripped of control characters (no header
injection, whatever the mail library does), and every user value in the HTML is escaped. Event
bodies are not written here but from each channel's template (:mod:`.templates`).
"""

from __future__ import annotations

import html
import re
from typing import Any

from claude_notify.cloud.server.channels.text import valid

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
SUBJECT_CHARS = 120

VERBS = {  # by status: the headline's icon and verb, also the templates' ``icon``/``outcome``
    "success": ("✅", "finished"),
    "failure": ("❌", "failed"),
    "interrupted": ("⚠️", "was interrupted"),
    "needs_input": ("⌛", "needs input"),
    "ended": ("ℹ️", "ended"),
    "running": ("⏳", "is running"),
}


def one_line(text: str, limit: int = SUBJECT_CHARS) -> str:
    """Control characters folded to spaces, undecodable bytes shown as U+FFFD (a mail header
    cannot encode them), clipped with an ellipsis."""
    flat = _CONTROL.sub(" ", valid(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def headline(event: dict[str, Any]) -> str:
    """``✅ make test finished (exit 0, 3m12s)`` and its variants."""
    command = event.get("command") or event.get("title") or "task"
    if event.get("type") == "match":
        return one_line(f"🔎 {command}: output matched")
    if event.get("type") == "progress":
        return one_line(f"⏳ {command}: progress")
    icon, verb = VERBS.get(str(event.get("status")), ("ℹ️", "ended"))
    facts = []
    if event.get("exit_code") is not None:
        facts.append(f"exit {event['exit_code']}")
    if event.get("signal"):
        facts.append(str(event["signal"]))
    if isinstance(event.get("duration_s"), int | float):
        facts.append(compact_duration(float(event["duration_s"])))
    suffix = f" ({', '.join(facts)})" if facts else ""
    return one_line(f"{icon} {command} {verb}{suffix}")


def compact_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``1h04m``: the headline's form, shorter than the CLI's."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_simple(subject: str, text: str, link: str | None = None) -> dict[str, str]:
    """A stored ``verify``/``test`` message: subject, text and an escaped HTML twin."""
    link_html = f"<p><a href='{html.escape(link, quote=True)}'>Confirm</a></p>" if link else ""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    return {
        "subject": one_line(subject),
        "text": text,
        "html": f"<!doctype html><html><body>{body}{link_html}</body></html>",
    }
