"""``claude-notify mute [DURATION]`` and ``unmute``: hold notifications back, from every source."""

from __future__ import annotations

import click

from claude_notify.errors import UsageError


@click.command(short_help="Hold notifications back for a while (or until unmute).")
@click.argument("duration", required=False)
def mute(duration: str | None) -> None:
    """Hold back notifications for DURATION (30m, 2h…), or until `claude-notify unmute`.

    Tasks are still recorded in the history.
    """
    from claude_notify import mute as muting
    from claude_notify.config import parse_duration

    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    until = muting.mute(seconds)
    click.echo("muted until unmute" if until is None else f"muted until {until:%Y-%m-%d %H:%M}")


@click.command(short_help="Let notifications through again.")
def unmute() -> None:
    """End a mute."""
    from claude_notify import mute as muting

    click.echo("unmuted" if muting.unmute() else "was not muted")
