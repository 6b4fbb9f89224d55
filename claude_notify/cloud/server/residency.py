"""Data residency: each deployment serves one region, and each account lives in one region.

A deployment that sets ``region`` also names every region's server (``region_urls``, e.g.
``eu=https://eu.example.com,cn=https://cn.example.cn``) and a shared *region directory*
(``region_directory``). The directory holds one entry per account: a file named after the
SHA-256 of the normalized e-mail address, whose content is the region code. It is a folder
(shared storage the regions' servers all mount) or an ``http(s)://`` prefix (any static file
server), read with one GET per lookup under ``region_directory_timeout_s``.

Why this shape: the lookup sends only the address's hash across regions, and the directory holds
nothing else about a person; the person's own browser or CLI carries the address to its home
region. Redirects go only to ``region_urls``' values, whatever an entry says (an entry is a
region code or it is refused), so a tampered directory cannot send anyone elsewhere.

Sign-in on the wrong region's server asks the directory first and, for another region's account,
stores nothing (no login request, no rate-limit row, no mail): the answer is an HTTP 421
``wrong_region`` naming that region's server (the API) or a redirect to its sign-in page (web).
An address without an entry signs up here, and a folder directory gets its entry then.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from claude_notify.cloud.server.settings import Settings

log = logging.getLogger(__name__)

REGION_CODE = re.compile(r"[a-z][a-z0-9-]{0,31}")
"""A region's code: what the directory's entries and ``region`` hold."""
MAX_ENTRY_BYTES = 64


class ResidencyError(Exception):
    """The region directory cannot say where an address lives; the sign-in stops here.

    ``code`` is the API's error code; the message is one line for the person signing in."""

    code = "region_directory_unavailable"


class UnknownRegion(ResidencyError):
    """The directory names a region this deployment has no server for (or is not a code)."""

    code = "region_unknown"


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """An address whose account lives in another region."""

    region: str
    server: str
    """That region's public URL, from this deployment's own settings."""


def region_urls(settings: Settings) -> dict[str, str]:
    """``region_urls`` as a mapping (validated by :func:`validate`)."""
    pairs = (item.partition("=") for item in settings.region_urls)
    return {code.strip(): url.strip().rstrip("/") for code, _, url in pairs}


def validate(settings: Settings) -> str | None:
    """What is wrong with the residency settings, as ``NAME: why``; None when they agree."""
    if settings.region is None:
        if settings.region_directory or settings.region_urls:
            return "REGION: is needed with REGION_DIRECTORY and REGION_URLS"
        return None
    if not REGION_CODE.fullmatch(settings.region):
        return "REGION: must be a lowercase code such as eu or cn"
    urls = region_urls(settings)
    for item in settings.region_urls:
        code, eq, url = item.partition("=")
        if not eq or not REGION_CODE.fullmatch(code.strip()):
            return f"REGION_URLS: {item!r} is not CODE=URL"
        parts = urlsplit(url.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
            return f"REGION_URLS: {url.strip()!r} must be an http(s):// URL without a query"
    if settings.region not in urls:
        return f"REGION_URLS: must name this region ({settings.region}) too"
    if not settings.region_directory:
        return "REGION_DIRECTORY: is needed with REGION (a folder or an http(s):// URL)"
    if settings.region_directory_timeout_s <= 0:
        return "REGION_DIRECTORY_TIMEOUT_S: must be positive"
    return None


def entry_name(email: str) -> str:
    """The directory entry's name for a normalized address: its SHA-256, in hex."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _remote(settings: Settings) -> bool:
    return (settings.region_directory or "").startswith(("https://", "http://"))


def _read_entry(settings: Settings, name: str) -> str | None:
    """The entry's text, None when there is none; :class:`ResidencyError` when unreachable."""
    directory = settings.region_directory or ""
    if _remote(settings):
        import httpx

        url = f"{directory.rstrip('/')}/{name}"
        try:
            with httpx.Client(timeout=settings.region_directory_timeout_s,
                              follow_redirects=False) as client, \
                    client.stream("GET", url) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise ResidencyError(f"the region directory answered HTTP "
                                         f"{response.status_code}; try again later")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ENTRY_BYTES:
                        raise UnknownRegion("the region directory's entry is not a region")
        except httpx.HTTPError as exc:
            raise ResidencyError("the region directory cannot be reached "
                                 f"({type(exc).__name__}); try again later") from None
        return body.decode("utf-8", "replace")
    try:
        with (Path(directory) / name).open("rb") as entry:
            return entry.read(MAX_ENTRY_BYTES + 1).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResidencyError(f"the region directory cannot be read ({exc.strerror}); try "
                             "again later") from None


def home(settings: Settings, email: str) -> Elsewhere | None:
    """Where ``email``'s account lives when that is not here; None for this region, for an
    address the directory does not know (it signs up here), or without residency settings."""
    if settings.region is None:
        return None
    text = _read_entry(settings, entry_name(email))
    if text is None:
        return None
    region = text.strip()
    if len(text) > MAX_ENTRY_BYTES or not REGION_CODE.fullmatch(region):
        raise UnknownRegion("the region directory's entry for this address is not a region "
                            "code; ask this server's operator")
    if region == settings.region:
        return None
    server = region_urls(settings).get(region)
    if server is None:
        raise UnknownRegion(f"this address belongs to region {region}, which this server does "
                            "not know; ask its operator")
    return Elsewhere(region, server)


_pointed: dict[str, deque[float]] = {}
"""When each client IP was last told where an account lives (this process's count)."""
_POINTED_IPS = 10_000


def may_point(ip: str, per_hour: int, *, now: float | None = None) -> bool:
    """Whether ``ip`` may be told another region's address once more this hour.

    A wrong-region answer says that an address has an account, and where, which a same-region
    sign-in never says; nothing is stored for it (another region's data), so the limits counted
    from stored requests do not see it. Counted here instead, per process: with N replicas a
    client gets at most N times ``per_hour``."""
    now = time.monotonic() if now is None else now
    seen = _pointed.setdefault(ip, deque())
    while seen and now - seen[0] > 3600.0:
        seen.popleft()
    if len(seen) >= per_hour:
        return False
    seen.append(now)
    if len(_pointed) > _POINTED_IPS:  # forget the quietest clients, not the busy ones
        for stale in [k for k, v in _pointed.items() if not v or now - v[-1] > 3600.0]:
            del _pointed[stale]
        while len(_pointed) > _POINTED_IPS:
            del _pointed[next(iter(_pointed))]
    return True


def claim(settings: Settings, email: str) -> str | None:
    """Record a new account's region in a folder directory (an http(s) one is written by its
    owner, not by the servers). The first region to claim an address keeps it: the region the
    entry names afterwards, None when there is no folder directory or it cannot be written."""
    if settings.region is None or _remote(settings) or not settings.region_directory:
        return None
    path = Path(settings.region_directory) / entry_name(email)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as entry:
            entry.write(settings.region + "\n")
    except FileExistsError:
        try:
            return path.read_text(encoding="utf-8", errors="replace")[:MAX_ENTRY_BYTES].strip()
        except OSError:
            return None
    except OSError as exc:  # the account exists either way; other regions just cannot see it
        log.warning("could not record a new account in the region directory: %s", exc.strerror)
        return None
    return settings.region


def remote(settings: Settings) -> bool:
    """Whether the directory is an http(s) one, which the servers only read."""
    return _remote(settings)
