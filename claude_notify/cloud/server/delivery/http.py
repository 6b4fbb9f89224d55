"""The HTTP client deliveries go out on: httpx's API over aiohttp's connection pool.

The adapters speak httpx (requests, responses, errors); only the pool underneath differs.
httpcore's pool walks every connection, with a readability syscall for each, whenever a request
is queued or finishes, so at the worker's 32 sends in flight one webhook cost 1.7 ms of CPU;
through ``httpx-aiohttp`` (aiohttp's pool and C parser) it costs 0.3 ms. The ``sni_hostname``
extension the URL guard sets is honoured, so pinned addresses still verify the name's
certificate.
"""

from __future__ import annotations

import ssl

import httpx


def delivery_client(*, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for provider and webhook calls; its pool opens on the first request.

    The library's client, not a plain ``AsyncClient(transport=…)``: given a transport, httpx
    ignores ``HTTP(S)_PROXY``/``NO_PROXY``, and an operator's egress proxy must still apply.
    """
    from httpx_aiohttp import HttpxAiohttpClient

    return HttpxAiohttpClient(verify=verify)


def describe(exc: httpx.HTTPError) -> str:
    """One line for a failed call, naming what went wrong on the wire.

    ``httpx-aiohttp`` files every connection-level failure under one httpx class (a refused
    connection reads as ``ConnectTimeout``), so the aiohttp error it chains is read instead.
    """
    import aiohttp

    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return f"ConnectError: certificate check failed: {cause.certificate_error}"
    if isinstance(cause, aiohttp.ClientConnectorError):
        reason = cause.os_error.strerror or cause.os_error
        return f"ConnectError: cannot connect to {cause.host}:{cause.port}: {reason}"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "RemoteProtocolError: the server closed the connection without an answer"
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout: no connection within the timeout"
    if isinstance(cause, aiohttp.SocketTimeoutError):
        return "ReadTimeout: no answer within the timeout"
    return f"{type(exc).__name__}: {exc}"
