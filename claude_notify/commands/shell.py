"""``claude-notify shell-init SHELL`` and the hidden ``shell-done`` the snippet calls."""

from __future__ import annotations

import click

from claude_notify.shell import SHELLS


@click.command("shell-init", short_help="Print the shell hook that notifies for long commands.")
@click.argument("shell", type=click.Choice(SHELLS))
def shell_init(shell: str) -> None:
    """Print the hook for SHELL; notify when an interactive command runs long.

    \b
    bash (>= 5.0), last line of ~/.bashrc:   eval "$(claude-notify shell-init bash)"
    zsh, in ~/.zshrc:                        eval "$(claude-notify shell-init zsh)"
    fish, in ~/.config/fish/config.fish:     claude-notify shell-init fish | source

    shell.threshold and shell.commands are written into the hook: evaluate it again (or open
    a new shell) after changing them. Every other shell setting is read when a command ends.
    """
    from claude_notify import config as config_mod
    from claude_notify.paths import state_dir
    from claude_notify.shell import snippet

    config = config_mod.load()
    state = state_dir()
    try:  # bash reads its history line back through a file here when it has no runtime dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        pass  # the snippet then falls back to a command substitution
    click.echo(snippet(shell, threshold=config["shell.threshold"],
                       overrides=config["shell.commands"], state_dir=state), nl=False)


@click.command("shell-done", hidden=True)
@click.option("--shell", "shell", default="", help="The shell that reports.")
@click.option("--cmd", "command", default="", help="The command line as typed.")
@click.option("--expanded", default="", help="The line with its alias expanded.")
@click.option("--status", type=int, required=True, help="The command's $?.")
@click.option("--duration", type=float, required=True, help="Seconds it ran.")
@click.option("--started", type=float, default=None, help="Epoch seconds it started.")
@click.option("--cwd", default="", help="Where it ran.")
def shell_done(shell: str, command: str, expanded: str, status: int, duration: float,
               started: float | None, cwd: str) -> None:
    """Internal: the shell hook reports a finished command (runs in the background)."""
    import os
    import sys

    from claude_notify.shell import done

    done.redirect_warnings()
    finished = done.Finished(command=command, expanded=expanded, status=status,
                             duration=duration, started=started, cwd=cwd, shell=shell)
    done.report(finished, os.environ)
    sys.stderr.flush()
