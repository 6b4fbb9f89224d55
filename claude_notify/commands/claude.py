"""``claude-notify claude install|uninstall|status``: our hooks in Claude Code's settings files."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from claude_notify.claude.settings import FileStatus, Scope

F = TypeVar("F", bound=Callable[..., Any])


def _scope_options(func: F) -> F:
    """``--user`` (default), ``--project`` or ``--local``: one ``scope`` parameter.

    Only ``--user`` has a default: click would let a later option's False default win.
    """
    func = click.option("--local", "scope", flag_value="local",
                        help=".claude/settings.local.json here, just for you (git-ignored).")(func)
    func = click.option("--project", "scope", flag_value="project",
                        help=".claude/settings.json here, shared with the team through git.")(func)
    return click.option("--user", "scope", flag_value="user", default=True,
                        help="~/.claude/settings.json, for every project (the default; "
                             "honours $CLAUDE_CONFIG_DIR).")(func)


@click.group(short_help="Install or remove our hooks in Claude Code.")
def claude() -> None:
    """Notify when Claude Code finishes a turn, needs permission or waits for input.

    \b
    claude-notify claude install            hooks in ~/.claude/settings.json
    claude-notify claude install --project  hooks for this project, for the whole team
    claude-notify claude status             where they are installed
    """


@claude.command()
@_scope_options
@click.option("--events", "events", multiple=True, metavar="EVENT[,EVENT…]",
              help="The events to hook, exactly (default: Notification, Stop, StopFailure, "
                   "UserPromptSubmit, PreToolUse). Add SubagentStop with "
                   "--events default,SubagentStop. With claude.approvals = \"phone\" "
                   "PermissionRequest, PostToolUse, PostToolUseFailure and SessionEnd are "
                   "added.")
def install(scope: str, events: tuple[str, ...]) -> None:
    """Merge claude-notify's hooks into a Claude Code settings file.

    Other keys and hooks are kept, a backup is written beside the file, and running it again
    changes nothing. A file that is not valid JSON is refused and left as it is.
    """
    from claude_notify import config as config_mod
    from claude_notify.claude import settings
    from claude_notify.errors import ConfigError

    chosen = settings.parse_events(events)
    timeouts = {"PermissionRequest": settings.approval_hook_timeout(600.0)}
    try:
        cfg = config_mod.load()
    except ConfigError as exc:  # the hooks do not depend on it; `doctor` tells what is wrong
        click.echo(f"note: approvals from the phone not considered: {exc.message}")
    else:
        if cfg["claude.approvals"] == "phone":  # the permission hook, and those that withdraw
            chosen = tuple(e for e in settings.EVENTS
                           if e in chosen or e in settings.APPROVAL_EVENTS)
        timeouts["PermissionRequest"] = settings.approval_hook_timeout(
            cfg["claude.approval_timeout"])
    scope_ = _scope(scope)
    path = settings.settings_path(scope_)
    done = settings.install(path, command=settings.hook_command(scope=scope_), events=chosen,
                            timeouts=timeouts)
    if not done.changed:
        click.echo(f"already installed in {path} ({', '.join(chosen)}); nothing changed")
        return
    click.echo(f"installed hooks for {', '.join(chosen)} in {path}")
    if done.backup is not None:
        click.echo(f"backup: {done.backup}")
    if scope_ == "project" and shutil.which("claude-notify") is None:
        click.echo("note: the project file names plain `claude-notify`, which is not on PATH here")
    if shutil.which("claude") is None:
        click.echo("note: `claude` is not on PATH; the hooks run once Claude Code is installed")


@claude.command()
@_scope_options
def uninstall(scope: str) -> None:
    """Remove claude-notify's hooks, and nothing else, from a Claude Code settings file."""
    from claude_notify.claude import settings

    path = settings.settings_path(_scope(scope))
    done = settings.uninstall(path)
    if not done.changed:
        click.echo(f"no claude-notify hooks in {path}; nothing changed")
        return
    click.echo(f"removed claude-notify hooks from {path}")
    if done.backup is not None:
        click.echo(f"backup: {done.backup}")


@claude.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(as_json: bool) -> None:
    """Which settings files hold our hooks, for which events, and whether `claude` is on PATH."""
    from claude_notify.claude import settings

    files = [settings.inspect(s, settings.settings_path(s)) for s in settings.SCOPES]
    claude_path = shutil.which("claude")
    mode, listening, socket = _approvals()
    if as_json:
        click.echo(json.dumps({
            "files": [{"scope": f.scope, "path": str(f.path), "exists": f.exists,
                       "events": f.events, "error": f.error or None} for f in files],
            "approvals": {"mode": mode, "socket": socket, "agent_listening": listening},
            "claude": claude_path,
        }, indent=2))
        return
    width = max(len(str(f.path)) for f in files)
    for f in files:
        click.echo(f"{f.scope:<8} {f.path!s:<{width}}  {_describe(f)}")
    hooked = any("PermissionRequest" in f.events for f in files)
    click.echo(f"{'approvals':<8} {_describe_approvals(mode, listening, socket, hooked)}")
    click.echo(f"{'claude':<8} {claude_path or 'not on PATH'}")


def _approvals() -> tuple[str, bool, str]:
    """``claude.approvals``, whether an agent answers on the socket, and the socket's path."""
    from claude_notify import config as config_mod
    from claude_notify.claude import approval
    from claude_notify.errors import ConfigError

    try:
        mode = str(config_mod.load()["claude.approvals"])
    except ConfigError:
        mode = "unknown (the config file has an error: claude-notify doctor)"
    return mode, approval.agent_listening(os.environ), str(approval.socket_path())


def _describe_approvals(mode: str, listening: bool, socket: str, hooked: bool) -> str:
    if mode != "phone":
        return mode
    text = "phone" + (f" (the agent listens at {socket})" if listening
                      else ": no agent is listening (claude-notify agent)")
    return text + ("" if hooked else "; no PermissionRequest hook: run claude-notify claude "
                                     "install again")


def _describe(f: FileStatus) -> str:
    from claude_notify.claude import settings

    if f.error:
        return f"unreadable: {f.error.removeprefix(f'{f.path}: ')}"
    if not f.exists:
        return "no file"
    if not f.events:
        return "not installed"
    ordered = [e for e in settings.EVENTS if e in f.events]
    ordered += [e for e in f.events if e not in settings.EVENTS]
    text = "installed: " + ", ".join(ordered)
    for program in sorted({m for commands in f.events.values() for c in commands
                           if (m := settings.command_missing(c))}):
        text += (f" ({program} is gone: install again)" if "/" in program or "\\" in program
                 else f" ({program} is not on PATH)")
    return text


def _scope(value: str) -> Scope:
    from claude_notify.claude.settings import SCOPES

    for scope in SCOPES:  # click's flag_value guarantees a match; this narrows it for mypy
        if scope == value:
            return scope
    raise click.BadParameter(value)
