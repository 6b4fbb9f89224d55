"""Turning a task event into a subject, a text body and an HTML body.

Commands and log tails are untrusted: the subject is stripped of control characters (no header
injection, whatever the mail library does), and every user value in the HTML is escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any

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
    """Control characters folded to spaces, clipped with an ellipsis."""
    flat = _CONTROL.sub(" ", text).strip()
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


def render_event(event: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, plain text and HTML for a task event."""
    subject = headline(event)
    lines = [subject, ""]
    for label, key in (("Host", "host"), ("Directory", "cwd"), ("Message", "message")):
        if event.get(key):
            lines.append(f"{label}: {event[key]}")
    if event.get("match"):
        lines.append(f"Matched: {event['match']}")
    tail = str(event.get("tail") or "")
    if tail:
        lines += ["", "Last output:", tail]
    text = "\n".join(lines)
    facts = "".join(
        f"<tr><th align='left'>{label}</th><td>{html.escape(str(event[key]))}</td></tr>"
        for label, key in (("Host", "host"), ("Directory", "cwd"), ("Message", "message"))
        if event.get(key)
    )
    tail_html = f"<h3>Last output</h3><pre>{html.escape(tail)}</pre>" if tail else ""
    body = (
        f"<!doctype html><html><body><h2>{html.escape(subject)}</h2>"
        f"<table>{facts}</table>{tail_html}"
        "<p style='color:#888'>Sent by claude-notify.</p></body></html>"
    )
    return subject, text, body


def render_simple(subject: str, text: str, link: str | None = None) -> dict[str, str]:
    """A stored ``verify``/``test`` message: subject, text and an escaped HTML twin."""
    link_html = f"<p><a href='{html.escape(link, quote=True)}'>Confirm</a></p>" if link else ""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    return {
        "subject": one_line(subject),
        "text": text,
        "html": f"<!doctype html><html><body>{body}{link_html}</body></html>",
    }
