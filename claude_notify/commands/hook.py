"""The click face of ``claude-notify hook`` (for ``--help``); the real path skips click."""

from __future__ import annotations

import click


@click.command(short_help="The Claude Code hook (reads the hook JSON on stdin).")
def hook() -> int:
    """Claude Code runs this with the hook's JSON on stdin; install it with
    `claude-notify claude install`. It always exits 0 and prints nothing."""
    from claude_notify.claude.hook import main

    return main()
