"""``claude-notify agent``: register this machine, set what it may run, and serve the relay.

Subcommands (``register``, ``allow``, ``deny``, ``set``, ``disable``, ``reset``, ``show``,
``serve``); the options of the spelling before them (``agent --register``, ``agent --allow …``)
are still taken by the group itself, hidden from its help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from claude_notify.config import CLAUDE_PERMISSION_MODES
from claude_notify.errors import CloudError, UsageError

if TYPE_CHECKING:
    from claude_notify.agent.approvals import Broker
    from claude_notify.agent.store import AgentSettings
    from claude_notify.agent.tunnel import Agent


def _policy_options(*, hidden: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options that change what this machine may run: ``agent set``'s, and (hidden) the
    old ``agent --allow …`` spelling's."""
    options = (
        click.option("--allow", "allow", multiple=True, metavar="PATTERN", hidden=hidden,
                     help="Allow commands matching PATTERN (`make *`, `./next.sh`); turns the "
                          "relay on. A wildcard never matches an option that changes directory "
                          "or runs code (`git -c`, `make -C`, …) unless spelled out, nor a path "
                          "outside --dir."),
        click.option("--deny", "deny", multiple=True, metavar="PATTERN", hidden=hidden,
                     help="Never run a command holding PATTERN's words in that order, whatever "
                          "surrounds them (`make deploy *` also refuses `make -k deploy`)."),
        click.option("--dir", "dirs", multiple=True, metavar="DIR", hidden=hidden,
                     type=click.Path(exists=True, file_okay=False, resolve_path=True),
                     help="A directory commands may run in (and below); default: the current "
                          "one."),
        click.option("--claude/--no-claude", "claude", default=None, hidden=hidden,
                     help="Let a reply to a \"Claude finished\" notification continue that "
                          "session."),
        click.option("--claude-bin", metavar="PATH", hidden=hidden,
                     help="The claude executable (default: on PATH)."),
        click.option("--claude-permission-mode", type=click.Choice(CLAUDE_PERMISSION_MODES),
                     hidden=hidden,
                     help="Claude Code's permission mode for replies (never bypassPermissions)."),
        click.option("--claude-allowed-tools", metavar="TOOLS", hidden=hidden,
                     help="Claude Code's --allowedTools for replies, e.g. "
                          "'Read,Bash(git diff *)'."),
    )

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@click.group(short_help="Run commands replied from your phone on this machine.",
             invoke_without_command=True)
@click.option("--register", is_flag=True, hidden=True)
@_policy_options(hidden=True)
@click.option("--disable", is_flag=True, hidden=True)
@click.option("--reset", is_flag=True, hidden=True)
@click.option("--show", is_flag=True, hidden=True)
@click.pass_context
def agent(ctx: click.Context, /, register: bool, disable: bool, reset: bool, show: bool,
          **policy: Any) -> None:
    """Keep a connection to the cloud open and run the commands you reply to a notification.

    \b
    The relay is off until you allow something on this machine:
      claude-notify agent register                once, after `claude-notify login`
      claude-notify agent allow './next.sh' 'make *'
      claude-notify agent serve                   keep it running: systemd, launchd, tmux

    Commands are split as a shell would and run without one: `make test; curl … | sh` is
    refused unless the allow-list names that exact string. Each runs as `claude-notify run` in
    the session's directory, with its own notification. `git *` allows git with any arguments
    but those that change directory, load config or run another program (`-c`, `-C`,
    `config`, `--upload-pack`…) and paths outside the directories; shells and `env`, `xargs`,
    `sudo`… take only the arguments a pattern spells out.

    `claude-notify agent` alone serves; the options of the spelling before the subcommands
    (`agent --register`, `agent --allow …`, `--show`, `--disable`, `--reset`) still work.
    """
    legacy = register or disable or reset or show or _any(policy)
    if ctx.invoked_subcommand is not None:
        if legacy:
            raise UsageError(f"`agent {ctx.invoked_subcommand}` takes its own options: give "
                             "them after it")
        return
    _legacy(register=register, disable=disable, reset=reset, show=show, policy=policy)


def _legacy(*, register: bool, disable: bool, reset: bool, show: bool,
            policy: dict[str, Any]) -> None:
    """The spelling before the subcommands, in its order: reset, register, configure, show,
    and serve when none of those was asked."""
    from claude_notify.agent import store

    settings = store.load()
    if reset:
        settings = _reset(settings)
    if register:
        settings = _register_and_say(settings)
    configure = disable or _any(policy)
    if configure:
        settings = _configure_and_say(settings, disable=disable, **policy)
    if configure or show:
        _warn(settings)
    if show:
        _show(settings)
    if register or configure or show or reset:
        return
    _serve(settings)


@agent.command(name="serve")
def serve_cmd() -> None:
    """Stay connected and run what is replied (what `claude-notify agent` alone does)."""
    from claude_notify.agent import store

    _serve(store.load())


@agent.command(name="register")
def register_cmd() -> None:
    """Get this machine's agent credential (uses your `claude-notify login`)."""
    from claude_notify.agent import store

    _register_and_say(store.load())


@agent.command(name="allow")
@click.argument("patterns", nargs=-1, required=True)
@click.option("--dir", "dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, resolve_path=True),
              help="A directory commands may run in (and below); default: the current one.")
def allow_cmd(patterns: tuple[str, ...], dirs: tuple[str, ...]) -> None:
    """Allow commands matching PATTERNS (`make *`, `./next.sh`); turns the relay on."""
    _set(allow=patterns, dirs=dirs)


@agent.command(name="deny")
@click.argument("patterns", nargs=-1, required=True)
def deny_cmd(patterns: tuple[str, ...]) -> None:
    """Never run a command holding a PATTERN's words in that order."""
    _set(deny=patterns)


@agent.command(name="set")
@_policy_options(hidden=False)
def set_cmd(**policy: Any) -> None:
    """Change several relay settings at once (the lists are added to)."""
    if not _any(policy):
        raise UsageError("`agent set` needs an option: see `claude-notify agent set --help`")
    _set(**policy)


@agent.command(name="disable")
def disable_cmd() -> None:
    """Turn the relay off on this machine."""
    _set(disable=True)


@agent.command(name="reset")
def reset_cmd() -> None:
    """Forget what was set on this machine: the config's [agent] table applies again."""
    from claude_notify.agent import store

    _reset(store.load())


@agent.command(name="show")
def show_cmd() -> None:
    """Show this machine's relay settings and where each comes from."""
    from claude_notify.agent import store

    settings = store.load()
    _warn(settings)
    _show(settings)


def _any(policy: dict[str, Any]) -> bool:
    return any(v is not None and v != () for v in policy.values())


def _set(*, disable: bool = False, **policy: Any) -> None:
    from claude_notify.agent import store

    _warn(_configure_and_say(store.load(), disable=disable, **policy))


def _reset(settings: AgentSettings) -> AgentSettings:
    from dataclasses import replace

    from claude_notify.agent import store

    store.save(replace(settings, flags=frozenset()))
    click.echo("relay settings from flags forgotten on this machine; the config applies")
    return store.load()


def _register_and_say(settings: AgentSettings) -> AgentSettings:
    settings = _register(settings)
    click.echo(f"registered this machine with {settings.server} "
               f"(agent credential kept in the {settings.storage})")
    return settings


def _configure_and_say(settings: AgentSettings, *, disable: bool = False,
                       allow: tuple[str, ...] = (), deny: tuple[str, ...] = (),
                       dirs: tuple[str, ...] = (), claude: bool | None = None,
                       claude_bin: str | None = None, claude_permission_mode: str | None = None,
                       claude_allowed_tools: str | None = None) -> AgentSettings:
    from claude_notify.agent import store

    store.save(_configured(settings, allow=allow, deny=deny, dirs=dirs, disable=disable,
                           claude=claude, claude_bin=claude_bin,
                           permission_mode=claude_permission_mode,
                           allowed_tools=claude_allowed_tools))
    settings = store.load()
    click.echo(f"relay {'on' if settings.enabled else 'off'} on this machine; "
               f"{len(settings.allow)} allowed, {len(settings.deny)} denied, "
               f"directories: {', '.join(settings.dirs) or 'none'}; "
               f"Claude carry-over {'on' if settings.claude else 'off'} "
               f"(permission mode {settings.claude_permission_mode})")
    return settings


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

    from claude_notify import config as config_mod
    from claude_notify.agent import store
    from claude_notify.agent.tunnel import Agent

    config = config_mod.load()
    phone = config["claude.approvals"] == "phone"
    relay_on = settings.enabled and bool(settings.allow or settings.claude)
    if not relay_on and not phone:
        raise UsageError("the relay is off on this machine: allow commands first, e.g. "
                         "`claude-notify agent allow './next.sh'`")
    if not settings.server:
        raise UsageError("this machine has no agent credential: run `claude-notify agent "
                         "register`")
    store.hold_agent_lock()
    _warn(settings)
    runner = Agent(server=settings.server, token=store.token(settings), settings=settings,
                   journal=store.Journal.open())
    if phone:
        runner.approvals = _broker(runner, config["claude.approval_timeout"])
    signal.signal(signal.SIGTERM, _exit)  # interrupts a blocked receive at once
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        runner.stop.set()
    finally:
        if runner.approvals is not None:
            runner.approvals.close()


def _broker(runner: Agent, timeout_s: float) -> Broker | None:
    """The socket Claude Code's permission hook asks through (``claude.approvals = "phone"``)."""
    from claude_notify.agent.approvals import Broker
    from claude_notify.claude.approval import socket_path

    broker = Broker(path=socket_path(), timeout_s=timeout_s, send=runner._send, log=runner.log)
    try:
        broker.start()
    except OSError as exc:
        runner.log(f"agent: approvals from the phone off: cannot listen on {broker.path}: {exc}")
        return None
    return broker


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
