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
@click.option("--disable", is_flag=True, help="Turn the relay off on this machine.")
@click.option("--show", is_flag=True, help="Show this machine's relay settings.")
def agent(register: bool, allow: tuple[str, ...], deny: tuple[str, ...],
          dirs: tuple[str, ...], disable: bool, show: bool) -> None:
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
    from dataclasses import replace

    from claude_notify.agent import store

    settings = store.load()
    if register:
        settings = _register(settings)
        click.echo(f"registered this machine with {settings.server} "
                   f"(agent credential kept in the {settings.storage})")
    if allow or deny or dirs or disable:
        from pathlib import Path

        new_dirs = _merge(settings.dirs, dirs)
        if allow and not new_dirs:
            new_dirs = (str(Path.cwd().resolve()),)
        settings = replace(settings, allow=_merge(settings.allow, allow),
                           deny=_merge(settings.deny, deny), dirs=new_dirs,
                           enabled=False if disable else settings.enabled or bool(allow))
        store.save(settings)
        click.echo(f"relay {'on' if settings.enabled else 'off'} on this machine; "
                   f"{len(settings.allow)} allowed, {len(settings.deny)} denied, "
                   f"directories: {', '.join(settings.dirs) or 'none'}")
    if show:
        for key in ("enabled", "server", "allow", "deny", "dirs"):
            click.echo(f"{key:8} {getattr(settings, key)}")
    if register or allow or deny or dirs or disable or show:
        return
    _serve(settings)


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

    if not settings.enabled or not settings.allow:
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
