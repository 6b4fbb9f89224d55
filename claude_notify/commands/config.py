"""``claude-notify config``: read and change the TOML file without losing the user's comments."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from claude_notify import config as config_mod
from claude_notify import paths
from claude_notify.errors import ConfigError
from claude_notify.fsutil import atomic_write

TEMPLATE = """\
# claude-notify configuration. Every key can also be set by an environment variable
# (CLAUDE_NOTIFY_<KEY>, dots become underscores) or a `run` flag; see `claude-notify config show`.

# backend = "auto"   # dbus, terminal, terminal-notifier, osascript, snoretoast, toast, wsl, plyer
# on = "exit"               # exit | success | failure | never
# min_duration = "0s"       # skip notifications for tasks shorter than this
# sound = "none"            # a sound file, a sound name, or none
"""


@click.group(short_help="Show or change settings.")
def config() -> None:
    """Show or change settings (flag > environment > file > default)."""


@config.command()
def path() -> None:
    """Print the config file's path."""
    click.echo(str(paths.config_path()))


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def show(as_json: bool) -> None:
    """Every setting, its value and where it came from."""
    cfg = config_mod.load()
    if as_json:
        data = {key: {"value": v.value, "source": v.source} for key, v in cfg.items()}
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(key) for key, _ in cfg.items())
    for key, v in cfg.items():
        click.echo(f"{key:<{width}} = {_show(key, v.value):<12}  # {v.source}")


@config.command()
@click.argument("key")
def get(key: str) -> None:
    """Print one setting's value."""
    _known(key)
    click.echo(_show(key, config_mod.load()[key]))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Set KEY to VALUE in the config file."""
    setting = _known(key)
    try:
        converted = setting.convert(value)
    except ValueError as exc:
        raise ConfigError(f"bad value for {key!r}: {exc}") from None
    stored: Any = value if isinstance(setting.default, str) else converted
    if isinstance(setting.default, float) and isinstance(converted, float):
        stored = value  # keep "5m" as the user wrote it
    if isinstance(stored, tuple):
        stored = list(stored)
    _edit(lambda doc: _assign(doc, key, stored))
    if isinstance(setting.default, tuple) and setting.default:
        dropped = [v for v in setting.default if v not in converted]
        if dropped:
            click.echo(f"note: {key} now holds only {_show(key, converted)}; the "
                       f"{len(dropped)} default entries are gone (`claude-notify config add "
                       f"{key} …` adds to them)", err=True)


@config.command()
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
def add(key: str, values: tuple[str, ...]) -> None:
    """Add VALUES to a list setting, keeping what it holds (its defaults included)."""
    current = _list_in_file_or_default(key)
    _edit(lambda doc: _assign(doc, key, [*current, *(v for v in values if v not in current)]))


@config.command()
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
def remove(key: str, values: tuple[str, ...]) -> None:
    """Remove VALUES from a list setting, keeping the rest (its defaults included)."""
    current = _list_in_file_or_default(key)
    missing = [v for v in values if v not in current]
    if missing:
        raise ConfigError(f"{key} does not hold {', '.join(map(repr, missing))}")
    _edit(lambda doc: _assign(doc, key, [v for v in current if v not in values]))


def _list_in_file_or_default(key: str) -> list[str]:
    setting = _known(key)
    if not isinstance(setting.default, tuple):
        raise ConfigError(f"{key} is not a list: use `claude-notify config set {key} VALUE`")
    raw = config_mod.flatten(config_mod.read_file(paths.config_path())).get(key)
    try:
        return list(setting.convert(raw) if raw is not None else setting.default)
    except ValueError as exc:
        raise ConfigError(f"bad value for {key!r} in the file: {exc}") from None


@config.command()
@click.argument("key")
def unset(key: str) -> None:
    """Remove KEY from the config file (its default applies again)."""
    _known(key)
    _edit(lambda doc: _remove(doc, key))


@config.command()
def edit() -> None:
    """Open the config file in $VISUAL or $EDITOR, then check it."""
    path = paths.config_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE, encoding="utf-8")
    click.edit(filename=str(path))
    config_mod.load()  # a broken edit is reported now, not at the next run
    click.echo(f"{path}: ok")


def _known(key: str) -> config_mod.Setting:
    setting = config_mod.SETTINGS.get(key)
    if setting is None:
        raise ConfigError(config_mod.unknown_key(key))
    return setting


def _show(key: str, value: object) -> str:
    """The value as it would be written in the file (TOML), so it can be copied there."""
    setting = config_mod.SETTINGS[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and setting.convert is config_mod.as_duration:
        return json.dumps(_duration(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = "
                          f"{json.dumps(_duration(v)) if isinstance(v, float) else json.dumps(v)}"
                          for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value))


def _duration(seconds: float) -> str:
    """``5400.0`` -> ``1h30m``; what ``parse_duration`` reads back to the same number."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (
        f"{secs}s" if secs else "")
    return text or "0s"


def _edit(change: Any) -> None:
    import tomlkit

    path = paths.config_path()
    config_mod.read_file(path)  # refuse to rewrite a file we cannot parse
    text = path.read_text(encoding="utf-8") if path.exists() else TEMPLATE
    doc = tomlkit.parse(text)
    change(doc)
    # The newlines of a text-mode write, as the file had before (CRLF on Windows).
    atomic_write(path, tomlkit.dumps(doc).replace("\n", os.linesep), mode=None)


def _assign(doc: Any, key: str, value: object) -> None:
    import tomlkit

    *tables, leaf = key.split(".")
    node = doc
    for name in tables:
        if name not in node:
            node[name] = tomlkit.table()
        node = node[name]
    node[leaf] = value


def _remove(doc: Any, key: str) -> None:
    *tables, leaf = key.split(".")
    node = doc
    for name in tables:
        if name not in node:
            return
        node = node[name]
    if leaf in node:
        del node[leaf]


