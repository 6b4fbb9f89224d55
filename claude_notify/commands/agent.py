"""``claude-notify agent``: register this machine, set what it may run, and serve the relay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from claude_notify.errors import CloudError, UsageError

if TYPE_CHECKING:
    from claude_notify.agent.store import AgentSettings


@click.command(short_help="Run commands replied from your phone on this machine.")
@click.option("--register", is_flag=True,
              help="Get this machine's agent credential (uses your `claude-notify login`).")
@click.option("--allow", "allow", multiple=True, metavar="PATTERN",
              help="Allow commands matching PATTERN (`make *`, `./next.sh`); turns the relay on.")
@click.option("--deny", "deny", multiple=True, metavar="PATTERN",
              help="Never run commands matching PATTERN, even if allowed.")
@click.option("--dir", "dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, resolve_path=True),
              help="A directory commands may run in (and below); default: the current one.")
@click.option("--claude/--no-claude", "claude", default=None,
              help="Let a reply to a \"Claude finished\" notification continue that session.")
@click.option("--claude-bin", metavar="PATH", help="The claude executable (default: on PATH).")
@click.option("--claude-permission-mode", type=click.Choice(
    ["default", "acceptEdits", "plan", "dontAsk", "auto"]),
    help="Claude Code's permission mode for replies (never bypassPermissions).")
@click.option("--claude-allowed-tools", metavar="TOOLS",
              help="Claude Code's --allowedTools for replies, e.g. 'Read,Bash(git diff *)'.")
@click.option("--disable", is_flag=True, help="Turn the relay off on this machine.")
@click.option("--show", is_flag=True, help="Show this machine's relay settings.")
def agent(register: bool, allow: tuple[str, ...], deny: tuple[str, ...],
          dirs: tuple[str, ...], claude: bool | None, claude_bin: str | None,
          claude_permission_mode: str | None, claude_allowed_tools: str | None,
          disable: bool, show: bool) -> None:
    """Keep a connection to the cloud open and run the commands you reply to a notification.

    \b
    The relay is off until you allow something on this machine:
      claude-notify agent --register              once, after `claude-notify login`
      claude-notify agent --allow './next.sh' --allow 'make *'
      claude-notify agent                         serve (keep it running: systemd, launchd, tmux)

    Commands are split as a shell would and run without one: `make test; curl … | sh` is
    refused unless the allow-list names that exact string. Each runs as `claude-notify run` in
    the session's directory, with its own notification.
    """
    from claude_notify.agent import store

    settings = store.load()
    if register:
        settings = _register(settings)
        click.echo(f"registered this machine with {settings.server} "
                   f"(agent credential kept in the {settings.storage})")
    claude_opts = (claude, claude_bin, claude_permission_mode, claude_allowed_tools)
    configure = bool(allow or deny or dirs or disable) or any(v is not None for v in claude_opts)
    if configure:
        settings = _configured(settings, allow=allow, deny=deny, dirs=dirs, disable=disable,
                               claude=claude, claude_bin=claude_bin,
                               permission_mode=claude_permission_mode,
                               allowed_tools=claude_allowed_tools)
        store.save(settings)
        click.echo(f"relay {'on' if settings.enabled else 'off'} on this machine; "
                   f"{len(settings.allow)} allowed, {len(settings.deny)} denied, "
                   f"directories: {', '.join(settings.dirs) or 'none'}; "
                   f"Claude carry-over {'on' if settings.claude else 'off'} "
                   f"(permission mode {settings.claude_permission_mode})")
    if show:
        for key in ("enabled", "server", "allow", "deny", "dirs", "claude",
                    "claude_permission_mode", "claude_allowed_tools"):
            click.echo(f"{key:8} {getattr(settings, key)}")
    if register or configure or show:
        return
    _serve(settings)


def _configured(settings: AgentSettings, *, allow: tuple[str, ...], deny: tuple[str, ...],
                dirs: tuple[str, ...], disable: bool, claude: bool | None,
                claude_bin: str | None, permission_mode: str | None,
                allowed_tools: str | None) -> AgentSettings:
    """The settings with the command line's changes; enabling uses the current directory
    when no directory was ever named."""
    from dataclasses import replace
    from pathlib import Path

    enabling = bool(allow) or bool(claude)
    new_dirs = _merge(settings.dirs, dirs)
    if enabling and not new_dirs:
        new_dirs = (str(Path.cwd().resolve()),)
    tools = (tuple(t.strip() for t in allowed_tools.split(",") if t.strip())
             if allowed_tools is not None else settings.claude_allowed_tools)
    return replace(settings, allow=_merge(settings.allow, allow),
                   deny=_merge(settings.deny, deny), dirs=new_dirs,
                   enabled=False if disable else settings.enabled or enabling,
                   claude=settings.claude if claude is None else claude,
                   claude_bin=claude_bin or settings.claude_bin,
                   claude_permission_mode=permission_mode or settings.claude_permission_mode,
                   claude_allowed_tools=tools)


def _merge(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*old, *new)))


def _register(settings: AgentSettings) -> AgentSettings:
    from dataclasses import replace

    from claude_notify.agent import store
    from claude_notify.cloud import account
    from claude_notify.cloud.client import CloudClient
    from claude_notify.identity import machine_id

    who = account.current()
    if who is None:
        raise CloudError("not logged in: run `claude-notify login` first")
    with CloudClient(who.server, account.token(who)) as client:
        made = client.request("POST", "/v1/agents", json={"machine_id": machine_id()})
    storage = store.save_token(who.server, str(made["token"]))
    settings = replace(settings, server=who.server, storage=storage)
    store.save(settings)
    return settings


def _serve(settings: AgentSettings) -> None:
    import signal

    from claude_notify.agent import store
    from claude_notify.agent.tunnel import Agent

    if not settings.enabled or not (settings.allow or settings.claude):
        raise UsageError("the relay is off on this machine: allow commands first, e.g. "
                         "`claude-notify agent --allow './next.sh'`")
    if not settings.server:
        raise UsageError("this machine has no agent credential: run `claude-notify agent "
                         "--register`")
    runner = Agent(server=settings.server, token=store.token(settings), settings=settings,
                   journal=store.Journal.open())
    signal.signal(signal.SIGTERM, _exit)  # interrupts a blocked receive at once
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        runner.stop.set()


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
