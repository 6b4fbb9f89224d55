"""Who this machine is signed in as: the server, the account, and where the token is kept.

The token lives in the OS keyring. Where there is none (a headless Linux box), it goes to a file
only the user can read, and ``status`` says so. The rest — server URL, e-mail, where the token is
— is not secret and sits in ``cloud.json`` in the state dir; its existence is what turns the
cloud sink on, so a machine that never logged in never touches the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from claude_notify.errors import CloudError, UsageError
from claude_notify.fsutil import atomic_write
from claude_notify.paths import state_dir

SERVICE = "claude-notify"
DEFAULT_SERVER = "https://api.claude-notify.dev"


@dataclass(frozen=True, slots=True)
class Account:
    """The non-secret half of a login."""

    server: str
    email: str
    storage: str
    """``keyring`` or ``file``: where the token is."""
    scopes: tuple[str, ...] = ()


def account_file() -> Path:
    return state_dir() / "cloud.json"


def token_file() -> Path:
    return state_dir() / "cloud-token"


def current() -> Account | None:
    """The login of this machine, if any (cheap: one small file)."""
    try:
        data = json.loads(account_file().read_text(encoding="utf-8"))
        return Account(server=data["server"], email=data.get("email", ""),
                       storage=data.get("storage", "keyring"),
                       scopes=tuple(data.get("scopes", ())))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_server_url(url: str) -> str:
    """The URL normalised; plain ``http://`` only to loopback (tokens travel in it)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise UsageError(f"not a server URL: {url!r} (expected https://host)")
    if parts.scheme == "http" and host not in ("127.0.0.1", "::1", "localhost"):
        raise UsageError(f"refusing plain http:// to {host}: tokens need TLS (use https://)")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def save(account: Account, token: str) -> Account:
    """Store the token (keyring, else a 0600 file) and the account facts."""
    storage = "keyring"
    try:
        import keyring
        import keyring.errors

        keyring.set_password(SERVICE, account.server, token)
    except Exception:  # no usable keyring backend (NoKeyringError, D-Bus-less Secret Service…)
        storage = "file"
        _write_private(token_file(), token)
    saved = Account(account.server, account.email, storage, account.scopes)
    _write_private(account_file(), json.dumps(asdict(saved)))
    return saved


def token(account: Account) -> str:
    """The stored token; :class:`CloudError` when it is gone."""
    value: str | None = None
    if account.storage == "file":
        try:
            value = token_file().read_text(encoding="utf-8").strip()
        except OSError:
            value = None
    else:
        try:
            import keyring

            value = keyring.get_password(SERVICE, account.server)
        except Exception as exc:
            raise CloudError(f"cannot read the token from the keyring: {exc}") from None
    if not value:
        raise CloudError("no token stored: run `claude-notify login`")
    return value


def forget() -> Account | None:
    """Remove the token and the account facts; the account that was logged in, if any."""
    account = current()
    if account is not None and account.storage == "keyring":
        try:
            import keyring

            keyring.delete_password(SERVICE, account.server)
        except Exception as exc:  # already gone, or the keyring went away
            from claude_notify.background import log

            log(f"logout: keyring entry not removed: {type(exc).__name__}")
    for path in (token_file(), account_file()):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return account


def _write_private(path: Path, text: str) -> None:
    atomic_write(path, text, mode=0o600)
