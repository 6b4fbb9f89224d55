"""The one outbound guard every user-supplied URL passes, at creation and again at send time.

It refuses non-HTTP schemes, credentials in URLs, hosts outside a provider's domains where a
provider is pinned, and — unless the operator allows it — any private, loopback, link-local or
otherwise non-global address — including a public-looking IPv6 address that carries a private
IPv4 address inside it (NAT64, 6to4, Teredo, IPv4-mapped or -compatible), which a gateway or the
kernel would turn back into that IPv4 address. The host is re-resolved right before each send,
so a name that pointed at a public address when saved cannot later be turned towards the
internal network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class UnsafeURL(ValueError):
    """The URL may not be called; the message says why in one line."""


ALLOW_PRIVATE_HINT = ("its operator can allow private addresses with "
                      "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE=1")
"""Said with every private-address refusal: on a self-hosted server the webhook receiver is
often on the same network, and the setting is what a self-hoster must find."""


class Unresolvable(UnsafeURL):
    """The host name does not resolve now: usually transient, so worth a retry."""


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
    if literal is not None and not allow_private and not is_public(literal):
        raise UnsafeURL(f"URL points at a private or loopback address ({ALLOW_PRIVATE_HINT})")
    return host


@dataclass(frozen=True, slots=True)
class Pinned:
    """Where to connect: the URL with its host replaced by the checked address.

    Connecting to the address that was checked — not re-resolving the name inside the HTTP
    client — closes the DNS-rebinding window between the check and the connection. ``host`` goes
    in the Host header and ``sni`` in the TLS handshake, so virtual hosts and certificate checks
    still see the name.
    """

    url: str
    host: str
    sni: str


async def check_resolved(url: str, *, allow_private: bool) -> Pinned:
    """Resolve the URL's host now, refuse it if any address is not public, and pin one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal_ip = _literal_ip(host)
    if literal_ip is not None:  # nothing to resolve: spare the resolver thread a round trip
        addresses = [literal_ip]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unresolvable(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise Unresolvable(f"cannot resolve {host}")
    if not allow_private and any(not is_public(a) for a in addresses):
        raise UnsafeURL(f"{host} resolves to a non-public address ({ALLOW_PRIVATE_HINT})")
    first = addresses[0]
    literal = f"[{first}]" if first.version == 6 else str(first)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    return Pinned(url=urlunsplit(parts._replace(netloc=netloc)), host=host_header, sni=host)


_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 (RFC 6052): a DNS64 resolver's answers
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, still routed by some stacks)
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 2765)
)
_NOT_GLOBAL_V6 = (
    # Local-use NAT64 (RFC 8215): translated by the operator's own gateway, into any network.
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a connection to ``address`` reaches only the public internet.

    ``is_global`` alone looks at the IPv6 prefix; an address that embeds IPv4 (a NAT64 or 6to4
    gateway, Teredo, the kernel's own IPv4-mapped sockets) is public only if the embedded IPv4
    address is too.
    """
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    if any(address in net for net in _NOT_GLOBAL_V6):
        return False
    return all(inner.is_global for inner in _embedded_ipv4(address))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    inner = [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
             for net in _LAST_32_BITS if address in net]
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.extend(address.teredo)  # (server, client)
    return inner


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
