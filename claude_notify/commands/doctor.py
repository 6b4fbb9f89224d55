"""``claude-notify doctor`` and ``claude-notify test``: why a notification did or did not show."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from claude_notify import config as config_mod


def _host_and_names(backend: str | None) -> tuple[Any, list[str], config_mod.Config]:
    from claude_notify.notifiers import candidates, current_host

    cfg = config_mod.load()
    host = current_host()
    chosen = backend or cfg["backend"]
    names = candidates(host) if chosen == "auto" else [chosen]
    return host, names, cfg


def collect() -> dict[str, Any]:
    """Everything ``doctor`` reports, as plain data."""
    from claude_notify.notifiers import BACKENDS, load
    from claude_notify.notifiers.sound import describe_player

    host, names, cfg = _host_and_names(None)
    backends = []
    chosen = None
    for name in sorted(BACKENDS, key=lambda n: (n not in names, names.index(n)
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
        "config": {"path": str(cfg.path), "exists": cfg.path.exists()},
        "backend_setting": cfg["backend"], "candidates": names, "chosen": chosen,
        "backends": backends, "sound_player": describe_player(os.environ),
    }


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
    click.echo(f"backend     {report['backend_setting']} -> {report['chosen'] or 'NONE usable'}")
    for b in report["backends"]:
        mark = "ok " if b["available"] else "-- "
        order = "" if b["candidate"] else " (not tried here)"
        click.echo(f"  {mark}{b['name']:<18}{b['reason']}{order}")
    click.echo(f"sound       {report['sound_player']}")
    return 0 if report["chosen"] else 1


@click.command(short_help="Send a sample notification and say which backend delivered it.")
@click.option("--backend", metavar="NAME", help="Try only this backend.")
def test(backend: str | None) -> int:
    """Send a sample notification through the backends that `run` would use."""
    from claude_notify.errors import NotifyError
    from claude_notify.notifiers.base import Notification
    from claude_notify.sinks import DesktopSink, Style

    host, _, cfg = _host_and_names(backend)
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
