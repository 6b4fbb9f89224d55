"""The agent's local state: its settings, its credential and its journal of commands.

* ``agent.json`` (state dir): whether the relay is on for this machine, the allow-list,
  deny-list and directories, and the server the credential belongs to.
* The credential (a ``relay`` token bound to this machine) sits in the OS keyring under
  ``claude-notify-agent``, else in ``agent-token`` readable by the user only, like the login.
* ``agent-journal.jsonl``: one line when a command is started, one when it ends and one when the
  server acknowledged the result, each written (and flushed to disk) before the next step, so a
  command the server sends again after a reconnect or a restart is recognised and never run twice.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from claude_notify.cloud.account import _write_private
from claude_notify.config import state_dir
from claude_notify.errors import CloudError

SERVICE = "claude-notify-agent"


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


def settings_file() -> Path:
    return state_dir() / "agent.json"


def load() -> AgentSettings:
    try:
        data = json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return AgentSettings()
    if not isinstance(data, dict):
        return AgentSettings()
    return AgentSettings(enabled=bool(data.get("enabled")),
                         allow=tuple(_strings(data.get("allow"))),
                         deny=tuple(_strings(data.get("deny"))),
                         dirs=tuple(_strings(data.get("dirs"))),
                         server=str(data.get("server") or ""),
                         storage=str(data.get("storage") or ""),
                         claude=bool(data.get("claude")),
                         claude_bin=str(data.get("claude_bin") or "claude"),
                         claude_permission_mode=str(data.get("claude_permission_mode")
                                                    or "default"),
                         claude_allowed_tools=tuple(_strings(data.get("claude_allowed_tools"))))


def save(settings: AgentSettings) -> None:
    _write_private(settings_file(), json.dumps(asdict(settings), indent=2))


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def token_file() -> Path:
    return state_dir() / "agent-token"


def save_token(server: str, token: str) -> str:
    """Keep the credential; returns where (``keyring`` or ``file``)."""
    try:
        import keyring

        keyring.set_password(SERVICE, server, token)
        return "keyring"
    except Exception:  # no usable keyring backend: a private file, as for the login token
        _write_private(token_file(), token)
        return "file"


def token(settings: AgentSettings) -> str:
    value: str | None = None
    if settings.storage == "file":
        try:
            value = token_file().read_text(encoding="utf-8").strip()
        except OSError:
            value = None
    elif settings.storage == "keyring":
        try:
            import keyring

            value = keyring.get_password(SERVICE, settings.server)
        except Exception as exc:
            raise CloudError(f"cannot read the agent credential from the keyring: {exc}") from None
    if not value:
        raise CloudError("this machine has no agent credential: run `claude-notify agent "
                         "--register`")
    return value


@dataclass
class Journal:
    """What this machine started, finished and had acknowledged, by command id."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: Path | None = None) -> Journal:
        journal = cls(path or state_dir() / "agent-journal.jsonl")
        try:
            lines = journal.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                record = json.loads(line)
                journal.entries.setdefault(str(record["id"]), {}).update(record)
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash: the one before it still counts
        return journal

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

    def unacknowledged(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries.values() if "state" in e and not e.get("acked")]
