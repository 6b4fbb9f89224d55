"""``claude-notify watch PID...`` / ``watch --name PATTERN``."""

from __future__ import annotations

import os

import click

from claude_notify.errors import UsageError
from claude_notify.events import TaskEvent


@click.command(short_help="Notify when already running processes end.")
@click.argument("pids", nargs=-1, type=int, metavar="PID...")
@click.option("--name", "pattern", metavar="PATTERN",
              help="Watch every running process whose name or command line matches.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing of our own.")
def watch(pids: tuple[int, ...], pattern: str | None, quiet: bool) -> None:
    """Wait for processes started elsewhere (a build in another terminal, a training run) and
    notify when each ends, with its command line and how long it ran. The exit code of a
    process that is not our child cannot be known: the notification says "ended"."""
    from claude_notify import config
    from claude_notify import watch as watching
    from claude_notify.dispatch import Dispatcher
    from claude_notify.identity import machine_id, session_id
    from claude_notify.render import format_duration

    if bool(pids) == bool(pattern):
        raise UsageError("give PIDs or --name PATTERN (one of them)")
    procs = watching.by_pid(pids) if pids else watching.by_name(pattern or "")
    dispatcher = Dispatcher(config.load(), os.environ, quiet=quiet)
    # Before "watching": the first machine id is written (and synced) to disk, and a process
    # that ends while that happens must still be described by wait().
    machine, session = machine_id(), session_id(os.environ)
    if not quiet:
        for proc in procs:
            click.echo(f"watching {proc.pid}: {watching.describe(proc)}", err=True)

    def ended(event: TaskEvent) -> None:
        if not quiet:
            click.echo(f"ended after {format_duration(event.duration_s)}: {event.command}",
                       err=True)
        dispatcher.emit(event, on="exit", min_duration=0.0)

    watching.wait(procs, ended, machine_id=machine, session_id=session)
