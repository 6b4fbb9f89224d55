"""The agent's local state: its settings, its credential and its journal of commands.

* ``agent.json`` (state dir): the server the credential belongs to, and what
  ``claude-notify agent`` flags set on this machine (whether the relay is on, the allow-list,
  deny-list, directories, Claude carry-over). The flags win over the config file's ``[agent]``
  table (``agent.allow`` …), which is enough on its own: a non-empty ``agent.allow`` or
  ``agent.claude = true`` turns the relay on.
* The credential (a ``relay`` token bound to this machine) sits in the OS keyring under
  ``claude-notify-agent``, else in ``agent-token`` readable by the user only, like the login
  (:data:`claude_notify.credentials.AGENT`).
* ``agent-journal.jsonl``: one line when a command is started, one when it ends and one when the
  server acknowledged the result, each written (and flushed to disk) before the next step, so a
  command the server sends again after a reconnect or a restart is recognised and never run twice.
  Rewritten now and then without the acknowledged commands, so it does not grow forever.
* ``agent.lock``: held by the running agent. A second agent on the same state would keep a
  journal of its own, and either one's rewrite could forget what the other started.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from claude_notify import config as config_mod
from claude_notify.config import Config
from claude_notify.credentials import AGENT
from claude_notify.errors import CloudError
from claude_notify.fsutil import atomic_write
from claude_notify.paths import state_dir

POLICY: Final = ("allow", "deny", "dirs", "claude", "claude_bin", "claude_permission_mode",
                  "claude_allowed_tools")
"""The settings that are also ``agent.*`` keys of the config file."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    enabled: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    """Working directories commands may run in (and below); empty: none."""
    server: str = ""
    storage: str = ""
    """Where the credential is: ``keyring`` or ``file``; empty before ``--register``."""
    claude: bool = False
    """Whether a reply to a "Claude finished" notification may continue that conversation."""
    claude_bin: str = "claude"
    claude_permission_mode: str = "default"
    """Never ``bypassPermissions``: the relay cannot be told to skip Claude Code's prompts."""
    claude_allowed_tools: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    """What was set on this machine with ``claude-notify agent`` flags (saved in ``agent.json``,
    winning over the config); ``enabled`` among them once ``--allow``/``--disable`` said so."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each of ``enabled`` and :data:`POLICY` came from, for ``--show``."""


def settings_file() -> Path:
    return state_dir() / "agent.json"


def load(config: Config | None = None) -> AgentSettings:
    """This machine's settings: its saved flags over the config's ``[agent]`` table (itself
    env > file > default); a bad config value is a :class:`ConfigError`."""
    try:
        data = json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    flags = _saved_flags(data)
    config = config_mod.load() if config is None else config
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    saved_in = f"flag, saved in {settings_file()}"
    for key in POLICY:
        if key in flags:
            values[key], sources[key] = flags[key], saved_in
        else:
            values[key], sources[key] = config[f"agent.{key}"], config.source(f"agent.{key}")
    if "enabled" in flags:
        enabled, sources["enabled"] = bool(flags["enabled"]), saved_in
    else:
        enabled = bool(values["allow"] or values["claude"])
        sources["enabled"] = "agent.allow or agent.claude"
    return AgentSettings(enabled=enabled, server=str(data.get("server") or ""),
                         storage=str(data.get("storage") or ""), flags=frozenset(flags),
                         sources=sources, **values)


def _saved_flags(data: dict[str, Any]) -> dict[str, Any]:
    """The flags kept in ``agent.json``, checked again (the file may have been edited); a file
    from before the config had an ``[agent]`` table counts what differs from the defaults."""
    raw = data.get("flags")
    if not isinstance(raw, dict):
        defaults = AgentSettings()
        raw = {k: data[k] for k in ("enabled", *POLICY)
               if k in data and data[k] != _plain(getattr(defaults, k))}
    flags: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "enabled":
            flags[key] = bool(value)
        elif key in POLICY:
            with contextlib.suppress(ValueError):
                flags[key] = config_mod.SETTINGS[f"agent.{key}"].convert(value)
    return flags


def save(settings: AgentSettings) -> None:
    flags = {key: _plain(getattr(settings, key)) for key in ("enabled", *POLICY)
             if key in settings.flags}
    atomic_write(settings_file(), json.dumps(
        {"server": settings.server, "storage": settings.storage, "flags": flags}, indent=2),
        mode=0o600)


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def save_token(server: str, token: str) -> str:
    """Keep the credential; returns where (``keyring`` or ``file``)."""
    return AGENT.save(server, token)


def token(settings: AgentSettings) -> str:
    value = AGENT.load(settings.server, settings.storage)
    if not value:
        raise CloudError("this machine has no agent credential: run `claude-notify agent "
                         "register`")
    return value


def hold_agent_lock(directory: Path | None = None) -> int:
    """Take the agent's lock for the life of the process (the descriptor is kept open, and the
    lock goes with the process however it ends); ``CloudError`` when another agent holds it."""
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        except OSError:  # Windows refuses reads of a locked byte
            holder = "?"
        os.close(fd)
        raise CloudError(f"another `claude-notify agent` is already running on this machine "
                         f"(pid {holder}; its lock is {path})") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


COMPACT_LINES: Final = 2000
"""Lines the journal may reach before it is rewritten without the acknowledged commands."""
KEEP_ACKED: Final = 200
"""Acknowledged commands kept anyway, newest first: a margin, since the server never sends an
acknowledged command again (its result is committed before the ``ack`` goes out)."""


@dataclass
class Journal:
    """What this machine started, finished and had acknowledged, by command id.

    Appended line by line; once it reaches ``compact_lines`` lines (and at least twice what it
    would keep), it is rewritten with one line per command still unacknowledged plus the
    ``keep_acked`` newest acknowledged ones. The rewrite goes to a temporary file, is fsynced,
    renamed over the journal and the directory fsynced: a crash at any point leaves either the
    whole old journal or the whole new one, so no unacknowledged command is forgotten (and run
    twice when the server sends it again).
    """

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    compact_lines: int = COMPACT_LINES
    keep_acked: int = KEEP_ACKED
    lines: int = 0
    """Lines in the file now (torn ones included)."""

    @classmethod
    def open(cls, path: Path | None = None, *, compact_lines: int = COMPACT_LINES,
             keep_acked: int = KEEP_ACKED) -> Journal:
        journal = cls(path or state_dir() / "agent-journal.jsonl", compact_lines=compact_lines,
                      keep_acked=keep_acked)
        # A rewrite a crash interrupted: the journal itself is whole, this copy is not needed.
        with contextlib.suppress(OSError):
            journal.scratch.unlink()
        try:
            lines = journal.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        journal.lines = len(lines)
        for line in lines:
            try:
                record = json.loads(line)
                journal.entries.setdefault(str(record["id"]), {}).update(record)
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash: the one before it still counts
        with journal.lock:
            journal._compact_if_due()
        return journal

    @property
    def scratch(self) -> Path:
        return self.path.with_name(self.path.name + ".compacting")

    def get(self, command_id: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.entries.get(command_id)
            return dict(entry) if entry is not None else None

    def record(self, command_id: str, **facts: Any) -> None:
        """Append and flush to disk before the caller goes on."""
        record = {"id": command_id, **facts}
        with self.lock:
            self.entries.setdefault(command_id, {}).update(record)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(record) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.lines += 1
            self._compact_if_due()

    def unacknowledged(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries.values() if "state" in e and not e.get("acked")]

    def compact(self) -> None:
        """Rewrite the journal with what must be remembered (see the class)."""
        with self.lock:
            self._compact()

    def _kept(self) -> dict[str, dict[str, Any]]:
        acked = [key for key, entry in self.entries.items() if entry.get("acked")]
        dropped = set(acked[:max(0, len(acked) - self.keep_acked)])
        return {key: entry for key, entry in self.entries.items() if key not in dropped}

    def _compact_if_due(self) -> None:
        if self.lines >= self.compact_lines and self.lines >= 2 * len(self._kept()):
            self._compact()

    def _compact(self) -> None:
        kept = self._kept()
        # A fixed scratch name, not a fresh one: one agent writes (it holds agent.lock), and
        # open() clears a leftover of a crash by that name.
        atomic_write(self.path, (json.dumps(entry) + "\n" for entry in kept.values()),
                     mode=0o600, sync_dir=True, temp=self.scratch)
        self.entries, self.lines = kept, len(kept)
