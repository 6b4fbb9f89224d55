"""The click group and its lazily loaded subcommands.

A subcommand is named here by dotted path and imported only when it is invoked (or listed by
``--help``), so ``claude-notify config get`` never pays for the server or the backends.
"""

from __future__ import annotations

import importlib
from typing import Final

import click

from claude_notify import __version__

SUBCOMMANDS: Final = {
    "run": "claude_notify.commands.run:run",
    "test": "claude_notify.commands.doctor:test",
    "doctor": "claude_notify.commands.doctor:doctor",
    "plugins": "claude_notify.commands.plugins:plugins",
    "config": "claude_notify.commands.config:config",
    "hook": "claude_notify.commands.hook:hook",
    "claude": "claude_notify.commands.claude:claude",
    "history": "claude_notify.commands.history:history",
    "show": "claude_notify.commands.history:show",
    "mute": "claude_notify.commands.quiet:mute",
    "watch": "claude_notify.commands.watch:watch",
    "unmute": "claude_notify.commands.quiet:unmute",
    "server": "claude_notify.cloud.server.cli:server",
    "login": "claude_notify.commands.cloud:login",
    "logout": "claude_notify.commands.cloud:logout",
    "whoami": "claude_notify.commands.cloud:whoami",
    "status": "claude_notify.commands.cloud:status",
    "sync": "claude_notify.commands.cloud:sync",
    "usage": "claude_notify.commands.cloud:usage",
    "upgrade": "claude_notify.commands.cloud:upgrade",
    "billing": "claude_notify.commands.cloud:billing",
    "channels": "claude_notify.commands.cloud:channels",
    "workspace": "claude_notify.commands.workspace:workspace",
    "deliveries": "claude_notify.commands.deliveries:deliveries",
    "agent": "claude_notify.commands.agent:agent",
    "shell-init": "claude_notify.commands.shell:shell_init",
    "shell-done": "claude_notify.commands.shell:shell_done",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in SUBCOMMANDS if self._importable(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if cmd_name == "server":
                raise click.ClickException(
                    f"the server needs its extra: pipx install 'claude-notify[server]' "
                    f"({exc.name} is missing)") from None
            raise
        command: click.Command = getattr(module, attr)
        return command

    @staticmethod
    def _importable(name: str) -> bool:
        if name != "server":
            return True
        import importlib.util

        return importlib.util.find_spec("claude_notify.cloud.server") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="claude-notify")
def cli() -> None:
    """Know when a long command, a test run or a Claude Code session is done.

    \b
    claude-notify run -- make test        notify when it ends
    claude-notify run "make && make test" one argument runs through your shell
    claude-notify doctor                  why a notification did not show
    """
