"""The one outbound guard every user-supplied URL passes, at creation and again at send time.

It refuses non-HTTP schemes, credentials in URLs, hosts outside a provider's domains where a
provider is pinned, and — unless the operator allows it — any private, loopback, link-local or
otherwise non-global address. The host is re-resolved right before each send, so a name that
pointed at a public address when saved cannot later be turned towards the internal network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    """The URL may not be called; the message says why in one line."""


def check_url(url: str, *, allow_private: bool, pinned: Iterable[str] = ()) -> str:
    """Validate the URL's shape (no network); returns its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise UnsafeURL("URL must use https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("URL must not carry credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURL("URL has no host")
    try:
        _ = parts.port
    except ValueError:
        raise UnsafeURL("URL has an invalid port") from None
    domains = tuple(pinned)
    if domains and not any(host == d or host.endswith("." + d) for d in domains):
        raise UnsafeURL(f"URL host must be under {', '.join(domains)}")
    literal = _literal_ip(host)
    if literal is not None and not allow_private and not literal.is_global:
        raise UnsafeURL("URL points at a private or loopback address")
    return host


async def check_resolved(url: str, *, allow_private: bool) -> None:
    """Resolve the URL's host now and refuse it if any address is not public."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise UnsafeURL(f"{host} resolves to a non-public address")


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
