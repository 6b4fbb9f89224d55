"""The URL guard against IPv6 addresses that carry a private IPv4 address inside them.

A NAT64 or 6to4 gateway, a Teredo relay or the kernel's IPv4-mapped sockets turn such an address
back into the IPv4 one, so ``64:ff9b::10.0.0.1`` reaches 10.0.0.1 although its IPv6 prefix is
public. Checked on the guard itself (creation and send time) and through ``POST /v1/channels``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient

from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.urlguard import UnsafeURL, check_resolved, check_url

EMBEDDING_PRIVATE = [
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
    "::10.0.0.1",  # IPv4-compatible
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:0:a00:1",  # IPv4-translated (SIIT)
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:a00:1::f5ff:fffe",  # Teredo, server 10.0.0.1
]
EMBEDDING_PUBLIC = [
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: what a DNS64 network answers for a public host
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2606:4700:4700::1111",  # plain public IPv6
]


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_ipv6_embedding_a_private_ipv4_address_is_refused(address: str) -> None:
    url = f"http://[{address}]/hook"
    with pytest.raises(UnsafeURL, match="private"):
        check_url(url, allow_private=False)
    with pytest.raises(UnsafeURL, match="non-public"):
        asyncio.run(check_resolved(url, allow_private=False))
    assert check_url(url, allow_private=True) == address  # the operator's switch still wins


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_ipv6_embedding_a_public_ipv4_address_is_allowed(address: str) -> None:
    url = f"https://[{address}]:8443/hook"
    assert check_url(url, allow_private=False) == address
    pinned = asyncio.run(check_resolved(url, allow_private=False))
    assert pinned.url == url


def test_channels_api_refuses_webhooks_to_embedded_private_addresses(
    runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    from claude_notify.cloud.server.app import create_app

    strict = Runtime(settings=runtime.settings.replace(webhook_allow_private=False),
                     engine=runtime.engine, sessions=runtime.sessions, waker=runtime.waker)
    user = make_user(plan="pro")
    with TestClient(create_app(runtime=strict)) as client:
        def add(address: str) -> int:
            body = {"type": "webhook", "config": {"url": f"http://[{address}]/x"}}
            return client.post("/v1/channels", headers=user.headers, json=body).status_code

        assert {a: add(a) for a in EMBEDDING_PRIVATE} == dict.fromkeys(EMBEDDING_PRIVATE, 422)
        assert add("64:ff9b::808:808") == 201
