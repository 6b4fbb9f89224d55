"""``claude-notify history`` and ``claude-notify show ID``: what ran, how it ended."""

from __future__ import annotations

import json
from pathlib import Path

import click

from claude_notify.errors import UsageError


@click.command(short_help="List recent tasks, newest first.")
@click.option("--limit", "-n", type=click.IntRange(1, 100000), default=20, show_default=True,
              help="How many tasks to list.")
@click.option("--failed", is_flag=True, help="Only failures and interruptions.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def history(limit: int, failed: bool, as_json: bool) -> None:
    """Every task run, watched, finished in a shell or by Claude Code."""
    from claude_notify import history as store
    from claude_notify.render import fields_of, format_duration, shorten

    entries = store.query(limit=limit, failed=failed)
    for entry in entries:
        event = entry.event
        if as_json:
            click.echo(json.dumps({"id": entry.id, "notified": entry.notified,
                                   "muted": entry.muted, **event.to_dict()}))
            continue
        values = fields_of(event, tail_lines=0)
        when = event.ended_at.astimezone().strftime("%m-%d %H:%M") if event.ended_at else "-"
        outcome = values["status"] if event.exit_code in (None, 0) else f"exit {event.exit_code}"
        held = f"  [{_held_label(entry.muted)}]" if entry.muted else ""
        click.echo(f"{entry.id:>6}  {when}  {values['mark'] or ' '} {outcome:<12} "
                   f"{format_duration(event.duration_s):>8}  {event.source:<11} "
                   f"{shorten(event.command or event.title or '', 60)}{held}")


def _held_label(reason: str) -> str:
    """A row's short mark: why its notification did not show."""
    return "not delivered" if reason.startswith("not delivered") else reason


@click.command(short_help="Show one task from the history.")
@click.argument("entry_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The whole event as JSON.")
def show(entry_id: str, as_json: bool) -> None:
    """Details of one task: command, outcome, timing, resources, output tail, log path."""
    from claude_notify import history as store
    from claude_notify.render import format_duration

    if not entry_id.isdigit():
        raise UsageError(f"not a history id: {entry_id!r} (see `claude-notify history`)")
    entry = store.get(int(entry_id))
    if entry is None:
        raise UsageError(f"no task {entry_id} in the history")
    event = entry.event
    if as_json:
        click.echo(json.dumps({"id": entry.id, "notified": entry.notified,
                               "muted": entry.muted, **event.to_dict()}, indent=2))
        return
    rows = [
        ("command", event.command or event.title or ""), ("source", event.source),
        ("status", event.status), ("exit code", event.exit_code), ("signal", event.signal),
        ("started", event.started_at.astimezone().isoformat(" ", "seconds")
         if event.started_at else None),
        ("duration", format_duration(event.duration_s)), ("cwd", event.cwd),
        ("host", event.host), ("peak RSS", f"{event.peak_rss_bytes / 2**20:.1f} MiB"
                               if event.peak_rss_bytes else None),
        ("CPU time", f"{event.cpu_time_s:.2f}s" if event.cpu_time_s is not None else None),
        ("log", str(Path(event.cwd or "/", event.log_path)) if event.log_path else None),
        ("notified", "yes" if entry.notified else
         f"no ({entry.muted})" if entry.muted else "no (not asked for)"),
        ("message", event.message), ("task id", event.task_id),
    ]
    for label, value in rows:
        if value not in (None, ""):
            click.echo(f"{label:<10} {value}")
    if event.tail:
        click.echo("\n" + event.tail.rstrip("\n"))
