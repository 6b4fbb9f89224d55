"""Who this machine is signed in as: the server, the account, and where the token is kept.

The token lives in the OS keyring. Where there is none (a headless Linux box), it goes to a file
only the user can read, and ``status`` says so (both through :mod:`claude_notify.credentials`).
The rest — server URL, e-mail, where the token is — is not secret and sits in ``cloud.json`` in
the state dir; its existence is what turns the cloud sink on, so a machine that never logged in
never touches the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from claude_notify.credentials import LOGIN
from claude_notify.errors import CloudError, UsageError
from claude_notify.fsutil import atomic_write
from claude_notify.paths import state_dir

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
    storage = LOGIN.save(account.server, token)
    saved = Account(account.server, account.email, storage, account.scopes)
    atomic_write(account_file(), json.dumps(asdict(saved)), mode=0o600)
    return saved


def token(account: Account) -> str:
    """The stored token; :class:`CloudError` when it is gone."""
    # An account file from before "file" existed, or edited, means the keyring.
    value = LOGIN.load(account.server, "file" if account.storage == "file" else "keyring")
    if not value:
        raise CloudError("no token stored: run `claude-notify login`")
    return value


def forget() -> Account | None:
    """Remove the token and the account facts; the account that was logged in, if any."""
    account = current()
    if account is not None:
        LOGIN.forget(account.server, account.storage)
    else:
        LOGIN.file().unlink(missing_ok=True)
    account_file().unlink(missing_ok=True)
    return account
