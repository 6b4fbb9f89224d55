"""Where this machine keeps its secrets: the login's token and the agent's credential.

Each is kept in the OS keyring under its service, with the server's URL as the user name. Where
there is no usable keyring (a headless Linux box, a D-Bus-less Secret Service), it goes to a file
in the state directory that only the user can read. The caller records which of the two it was
(``keyring`` or ``file``, in ``cloud.json`` or ``agent.json``) and asks there again; the services
and file names below are what existing installs hold, so they do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from claude_notify.errors import CloudError
from claude_notify.fsutil import atomic_write
from claude_notify.paths import state_dir


@dataclass(frozen=True, slots=True)
class SecretStore:
    """One kind of secret: its keyring service, its fallback file, its name in messages."""

    service: str
    file_name: str
    what: str
    """``the token``: how an error names it."""

    def file(self) -> Path:
        return state_dir() / self.file_name

    def save(self, server: str, secret: str) -> str:
        """Keep ``secret`` for ``server``; where it went: ``keyring`` or ``file``."""
        try:
            import keyring

            keyring.set_password(self.service, server, secret)
            return "keyring"
        except Exception:  # no usable keyring backend (NoKeyringError, D-Bus-less Secret Service…)
            atomic_write(self.file(), secret, mode=0o600)
            return "file"

    def load(self, server: str, storage: str) -> str | None:
        """The secret kept in ``storage`` for ``server``, ``None`` when there is none; a keyring
        that fails to answer is a :class:`CloudError` (the secret may be there, just locked)."""
        value: str | None = None
        if storage == "file":
            try:
                value = self.file().read_text(encoding="utf-8").strip()
            except OSError:
                value = None
        elif storage == "keyring":
            try:
                import keyring

                value = keyring.get_password(self.service, server)
            except Exception as exc:
                raise CloudError(f"cannot read {self.what} from the keyring: {exc}") from None
        return value or None

    def forget(self, server: str, storage: str) -> None:
        """Remove the keyring entry (when ``storage`` says it is there) and the file."""
        if storage == "keyring":
            try:
                import keyring

                keyring.delete_password(self.service, server)
            except Exception as exc:  # already gone, or the keyring went away
                from claude_notify.background import log

                log(f"{self.what} not removed from the keyring: {type(exc).__name__}")
        self.file().unlink(missing_ok=True)


LOGIN = SecretStore("claude-notify", "cloud-token", "the token")
"""The account token ``claude-notify login`` gets."""
AGENT = SecretStore("claude-notify-agent", "agent-token", "the agent credential")
"""The relay credential ``claude-notify agent register`` gets, bound to this machine."""
