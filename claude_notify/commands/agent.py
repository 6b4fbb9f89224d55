"""``claude-notify agent``: register this machine, set what it may run, and serve the relay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from claude_notify.config import CLAUDE_PERMISSION_MODES
from claude_notify.errors import CloudError, UsageError

if TYPE_CHECKING:
    from claude_notify.agent.store import AgentSettings


@click.command(short_help="Run commands replied from your phone on this machine.")
@click.option("--register", is_flag=True,
              help="Get this machine's agent credential (uses your `claude-notify login`).")
@click.option("--allow", "allow", multiple=True, metavar="PATTERN",
              help="Allow commands matching PATTERN (`make *`, `./next.sh`); turns the relay on. "
                   "A wildcard never matches an option that changes directory or runs code "
                   "(`git -c`, `make -C`, …) unless spelled out, nor a path outside --dir.")
@click.option("--deny", "deny", multiple=True, metavar="PATTERN",
              help="Never run a command holding PATTERN's words in that order, whatever "
                   "surrounds them (`make deploy *` also refuses `make -k deploy`).")
@click.option("--dir", "dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, resolve_path=True),
              help="A directory commands may run in (and below); default: the current one.")
@click.option("--claude/--no-claude", "claude", default=None,
              help="Let a reply to a \"Claude finished\" notification continue that session.")
@click.option("--claude-bin", metavar="PATH", help="The claude executable (default: on PATH).")
@click.option("--claude-permission-mode", type=click.Choice(CLAUDE_PERMISSION_MODES),
    help="Claude Code's permission mode for replies (never bypassPermissions).")
@click.option("--claude-allowed-tools", metavar="TOOLS",
              help="Claude Code's --allowedTools for replies, e.g. 'Read,Bash(git diff *)'.")
@click.option("--disable", is_flag=True, help="Turn the relay off on this machine.")
@click.option("--reset", is_flag=True,
              help="Forget what these flags saved: the config's [agent] table applies again.")
@click.option("--show", is_flag=True, help="Show this machine's relay settings.")
def agent(register: bool, allow: tuple[str, ...], deny: tuple[str, ...],
          dirs: tuple[str, ...], claude: bool | None, claude_bin: str | None,
          claude_permission_mode: str | None, claude_allowed_tools: str | None,
          disable: bool, reset: bool, show: bool) -> None:
    """Keep a connection to the cloud open and run the commands you reply to a notification.

    \b
    The relay is off until you allow something on this machine:
      claude-notify agent --register              once, after `claude-notify login`
      claude-notify agent --allow './next.sh' --allow 'make *'
      claude-notify agent                         serve (keep it running: systemd, launchd, tmux)

    Commands are split as a shell would and run without one: `make test; curl … | sh` is
    refused unless the allow-list names that exact string. Each runs as `claude-notify run` in
    the session's directory, with its own notification. `git *` allows git with any arguments
    but those that change directory, load config or run another program (`-c`, `-C`,
    `config`, `--upload-pack`…) and paths outside the directories; shells and `env`, `xargs`,
    `sudo`… take only the arguments a pattern spells out.
    """
    from dataclasses import replace

    from claude_notify.agent import store

    settings = store.load()
    if reset:
        store.save(replace(settings, flags=frozenset()))
        settings = store.load()
        click.echo("relay settings from flags forgotten on this machine; the config applies")
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
        settings = store.load()
        click.echo(f"relay {'on' if settings.enabled else 'off'} on this machine; "
                   f"{len(settings.allow)} allowed, {len(settings.deny)} denied, "
                   f"directories: {', '.join(settings.dirs) or 'none'}; "
                   f"Claude carry-over {'on' if settings.claude else 'off'} "
                   f"(permission mode {settings.claude_permission_mode})")
    if configure or show:
        _warn(settings)
    if show:
        _show(settings)
    if register or configure or show or reset:
        return
    _serve(settings)


def _configured(settings: AgentSettings, *, allow: tuple[str, ...], deny: tuple[str, ...],
                dirs: tuple[str, ...], disable: bool, claude: bool | None,
                claude_bin: str | None, permission_mode: str | None,
                allowed_tools: str | None) -> AgentSettings:
    """The settings with the command line's changes, each remembered as a flag of this machine
    (winning over the config); ``--allow`` and ``--deny`` add to the lists in effect, and
    enabling uses the current directory when no directory was ever named."""
    from dataclasses import replace
    from pathlib import Path

    from claude_notify.config import SETTINGS

    changes: dict[str, object] = {}
    if allow:
        changes["allow"] = _merge(settings.allow, allow)
    if deny:
        changes["deny"] = _merge(settings.deny, deny)
    enabling = bool(allow) or bool(claude)
    new_dirs = _merge(settings.dirs, dirs)
    if enabling and not new_dirs:
        new_dirs = (str(Path.cwd().resolve()),)
    if new_dirs != settings.dirs:
        changes["dirs"] = new_dirs
    if disable or enabling:
        changes["enabled"] = not disable
    if claude is not None:
        changes["claude"] = claude
    if claude_bin:
        changes["claude_bin"] = claude_bin
    if permission_mode:
        changes["claude_permission_mode"] = permission_mode
    if allowed_tools is not None:
        try:
            changes["claude_allowed_tools"] = SETTINGS["agent.claude_allowed_tools"].convert(
                allowed_tools)
        except ValueError as exc:
            raise UsageError(f"--claude-allowed-tools: {exc}") from None
    return replace(settings, flags=settings.flags | changes.keys(), **changes)  # type: ignore[arg-type]


def _show(settings: AgentSettings) -> None:
    """Each setting, the value in effect and where it came from (a flag saved on this machine,
    the config file, ``CLAUDE_NOTIFY_AGENT_*``, or the default)."""
    from claude_notify.agent.store import POLICY

    click.echo(f"{'server':22} {settings.server or '(not registered)'}")
    for key in ("enabled", *POLICY):
        value = getattr(settings, key)
        shown = ", ".join(value) or "(none)" if isinstance(value, tuple) else value
        click.echo(f"{key:22} {shown}  [{settings.sources.get(key, 'default')}]")


def _warn(settings: AgentSettings) -> None:
    """A line on stderr for each allow pattern that grants more, or less, than it seems to."""
    from claude_notify.agent.policy import warnings

    for line in warnings(settings.allow):
        click.echo(f"claude-notify: warning: {line}", err=True)


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
    store.hold_agent_lock()
    _warn(settings)
    runner = Agent(server=settings.server, token=store.token(settings), settings=settings,
                   journal=store.Journal.open())
    signal.signal(signal.SIGTERM, _exit)  # interrupts a blocked receive at once
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        runner.stop.set()


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
