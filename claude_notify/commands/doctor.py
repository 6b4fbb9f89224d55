"""``claude-notify doctor`` and ``claude-notify test``: why a notification did or did not show."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from claude_notify import config as config_mod
from claude_notify.paths import state_dir


def _host_and_names(backend: str | None, *,
                    lenient: bool = False) -> tuple[Any, list[str], config_mod.Config]:
    from claude_notify.notifiers import candidates, current_host

    cfg = config_mod.load(lenient=lenient)
    host = current_host()
    chosen = backend or cfg["backend"]
    names = candidates(host) if chosen == "auto" else [chosen]
    return host, names, cfg


def collect() -> dict[str, Any]:
    """Everything ``doctor`` reports, as plain data."""
    from claude_notify.notifiers import BACKENDS, load
    from claude_notify.notifiers.sound import describe_player

    host, names, cfg = _host_and_names(None, lenient=True)
    backends = []
    chosen = None
    for name in sorted({*BACKENDS, *names}, key=lambda n: (n not in names, names.index(n)
                                                           if n in names else 0, n)):
        try:
            notifier = load(name, host)
            availability = notifier.available()
            ok, reason = availability.ok, availability.reason
            info = getattr(notifier, "server_info", None)
            if ok and info is not None:
                try:
                    reason += f"; server {info(timeout=1.0)}"
                except Exception as exc:  # shown, not fatal: doctor reports problems
                    ok, reason = False, f"{reason}; server not answering: {exc or 'timeout'}"
        except Exception as exc:
            ok, reason = False, f"cannot load: {exc}"
        if ok and chosen is None and name in names:
            chosen = name
        backends.append({"name": name, "candidate": name in names, "available": ok,
                         "reason": reason})
    return {
        "platform": host.platform, "ssh": host.is_ssh, "tmux": host.in_tmux, "wsl": host.is_wsl,
        "display": host.env.get("WAYLAND_DISPLAY") or host.env.get("DISPLAY") or None,
        "config": {"path": str(cfg.path), "exists": cfg.path.exists(),
                   "problems": list(cfg.problems)},
        "backend_setting": cfg["backend"], "candidates": names, "chosen": chosen,
        "backends": backends, "sound_player": describe_player(os.environ),
        "held": _held(cfg), "tmux_passthrough": _tmux_passthrough(host),
        "cloud": _cloud(), "shell": _shell_integration(), "claude_hooks": _claude_hooks(),
        "paths": _paths(),
    }


def _held(cfg: config_mod.Config) -> dict[str, Any]:
    """Mute and quiet hours: the first thing to rule out when nothing shows."""
    from datetime import datetime

    from claude_notify import mute

    until = mute.muted_until()
    try:
        hours = mute.parse_hours(cfg["quiet_hours"])
    except ValueError:
        hours = None
    return {"muted_until": until.isoformat(timespec="minutes") if isinstance(until, datetime)
            else until, "quiet_hours": cfg["quiet_hours"] or None,
            "now": mute.reason(hours)}


def _tmux_passthrough(host: Any) -> str | None:
    """tmux's real ``allow-passthrough`` (escape-sequence notifications need it on)."""
    if not host.in_tmux:
        return None
    import subprocess

    try:
        done = subprocess.run(["tmux", "show-options", "-gv", "allow-passthrough"],
                              capture_output=True, text=True, timeout=2, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc.__class__.__name__})"
    if done.returncode != 0:
        return f"unknown ({done.stderr.strip()[:80] or 'tmux failed'})"
    return done.stdout.strip() or "off"


def _cloud() -> dict[str, Any]:
    from claude_notify.cloud import account

    login = account.current()
    if login is None:
        return {"logged_in": False}
    return {"logged_in": True, "server": login.server, "email": login.email,
            "token_in": login.storage}


def _shell_integration() -> dict[str, Any]:
    """Which rc files evaluate our snippet, and the shell hook's last decision."""
    from pathlib import Path

    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    rc_files = {"bash": home / ".bashrc", "zsh": Path(os.environ.get("ZDOTDIR") or home)
                / ".zshrc", "fish": config_home / "fish" / "config.fish"}
    found = []
    for shell, rc in rc_files.items():
        try:
            if "shell-init" in rc.read_text(encoding="utf-8", errors="replace"):
                found.append(f"{shell} ({rc})")
        except OSError:
            continue
    log = state_dir() / "shell.log"
    try:
        last = log.read_text(encoding="utf-8", errors="replace").splitlines()[-1]
    except (OSError, IndexError):
        last = None
    return {"installed_in": found, "last_decision": last}


def _claude_hooks() -> list[str]:
    from claude_notify.claude import settings

    found = []
    for scope in settings.SCOPES:
        status = settings.inspect(scope, settings.settings_path(scope))
        if status.error:
            found.append(f"{scope}: unreadable ({status.error})")
        elif status.events:
            found.append(f"{scope}: {', '.join(sorted(status.events))}")
    return found


def _paths() -> dict[str, str]:
    from claude_notify import history

    state = state_dir()
    return {"state": str(state), "shell_log": str(state / "shell.log"),
            "hook_log": str(state / "hook.log"), "history": str(history.default_path())}


@click.command(short_help="Show the platform, the backends and why each is usable or not.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def doctor(as_json: bool) -> int:
    """Show what claude-notify sees: platform, SSH/tmux/WSL, each backend and why."""
    report = collect()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return 0 if report["chosen"] else 1
    flags = ", ".join(f"{k}: {'yes' if report[k] else 'no'}" for k in ("ssh", "tmux", "wsl"))
    display = report["display"] or "none"
    click.echo(f"platform    {report['platform']} ({flags}; display: {display})")
    state = "exists" if report["config"]["exists"] else "not created yet"
    click.echo(f"config      {report['config']['path']} ({state})")
    for problem in report["config"]["problems"]:
        click.echo(f"  -- {problem} (the default is used)")
    held = report["held"]
    click.echo(f"held back   {held['now'] or 'no'}"
               + (f" (quiet hours {held['quiet_hours']})" if held["quiet_hours"] else ""))
    click.echo(f"backend     {report['backend_setting']} -> {report['chosen'] or 'NONE usable'}")
    for b in report["backends"]:
        mark = "ok " if b["available"] else "-- "
        order = "" if b["candidate"] else " (not tried here)"
        click.echo(f"  {mark}{b['name']:<18}{b['reason']}{order}")
    click.echo(f"sound       {report['sound_player']}")
    if report["tmux_passthrough"] is not None:
        click.echo(f"tmux        allow-passthrough {report['tmux_passthrough']}")
    cloud = report["cloud"]
    click.echo("cloud       " + (f"logged in to {cloud['server']} as {cloud['email'] or '?'} "
                                 f"(token in {cloud['token_in']})" if cloud["logged_in"]
                                 else "not logged in: nothing leaves this machine"))
    shell = report["shell"]
    click.echo(f"shell       {', '.join(shell['installed_in']) or 'no shell-init in rc files'}")
    if shell["last_decision"]:
        click.echo(f"  last: {shell['last_decision']}")
    click.echo(f"claude      {'; '.join(report['claude_hooks']) or 'no hooks installed'}")
    paths = report["paths"]
    click.echo(f"state       {paths['state']} (shell.log, hook.log)")
    click.echo(f"history     {paths['history']}")
    return 0 if report["chosen"] else 1


@click.command(short_help="Send a sample notification and say which backend delivered it.")
@click.option("--backend", metavar="NAME", help="Try only this backend.")
def test(backend: str | None) -> int:
    """Send a sample notification through the backends that `run` would use."""
    from claude_notify.errors import NotifyError
    from claude_notify.notifiers.base import Notification
    from claude_notify.sinks import DesktopSink, Style

    host, _, cfg = _host_and_names(backend)
    from claude_notify import mute

    held = mute.reason(mute.parse_hours(cfg["quiet_hours"]))
    if held is not None:
        from claude_notify.errors import warn

        warn(f"warning: notifications are held back ({held}): this test is shown, but `run` "
             "would stay quiet (claude-notify unmute)")
    sink = DesktopSink(host=host, backend=backend or cfg["backend"],
                       style=Style.from_config(cfg), timeout=cfg["timeout"])
    sample = Notification(title="✓ claude-notify test · 0.1s",
                          body="If you can read this, notifications work.")
    results = sink.deliver(sample)
    for r in results:
        if r.ok:
            click.echo(f"delivered by {r.backend} ({r.detail})")
            return 0
    why = "; ".join(f"{r.backend}: {r.detail}" for r in results) or "no backend to try"
    raise NotifyError(f"no backend delivered the test notification ({why})")
