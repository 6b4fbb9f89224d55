"""``claude-notify plugins``: the backend and server-channel plugins installed, their versions,
and whether each loads."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: notification backends (choose one with `--backend NAME` or
    `backend = "NAME"`) and server channels (a server's operator enables those with
    CLAUDE_NOTIFY_SERVER_CHANNEL_PLUGINS). How to write one: docs/plugins.md."""
    from claude_notify import plugins as found

    rows = found.installed()
    if as_json:
        click.echo(json.dumps([{"name": r.name, "kind": found.GROUPS[r.group], "target": r.target,
                                "distribution": r.distribution, "version": r.version,
                                "problem": r.problem} for r in rows], indent=2))
        return
    if not rows:
        click.echo("No plugins installed (built-in backends and channels need none).")
        return
    for r in rows:
        state = f"cannot be used: {r.problem}" if r.problem else "ok"
        click.echo(f"{found.GROUPS[r.group]:<15} {r.name:<16} {r.distribution} {r.version}  "
                   f"{state}")
