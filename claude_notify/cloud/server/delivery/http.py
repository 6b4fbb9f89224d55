"""The HTTP client deliveries go out on: httpx's API over aiohttp's connection pool.

The adapters speak httpx (requests, responses, errors); only the pool underneath differs.
httpcore's pool walks every connection, with a readability syscall for each, whenever a request
is queued or finishes, so at the worker's 32 sends in flight one webhook cost 1.7 ms of CPU;
through ``httpx-aiohttp`` (aiohttp's pool and C parser) it costs 0.3 ms. The ``sni_hostname``
extension the URL guard sets is honoured, so pinned addresses still verify the name's
certificate.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


def delivery_client(*, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for provider and webhook calls; its pool opens on the first request.

    The library's client, not a plain ``AsyncClient(transport=…)``: given a transport, httpx
    ignores ``HTTP(S)_PROXY``/``NO_PROXY``, and an operator's egress proxy must still apply.
    """
    return _client_class()(verify=verify)


@functools.cache
def _client_class() -> type[httpx.AsyncClient]:
    import aiohttp
    from httpx_aiohttp import HttpxAiohttpClient

    class DeliveryClient(HttpxAiohttpClient):
        """Translates the aiohttp errors the library lets through into httpx's.

        An answer aiohttp cannot parse (not HTTP, a bad ``Content-Length`` or chunk) escapes
        as ``aiohttp.ClientResponseError``, whose text holds the request URL: for the Bot API,
        the operator's token. The adapters only catch httpx errors, so it used to reach the
        worker's catch-all and be stored, shown and logged as it was.
        """

        async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            try:
                return await super().send(request, **kwargs)
            except aiohttp.ClientError as exc:
                raise httpx.RemoteProtocolError(NOT_HTTP, request=request) from exc

    return DeliveryClient


NOT_HTTP = "the answer was not valid HTTP"
_PHRASES: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "no connection within the timeout"),
    (httpx.ReadTimeout, "no answer within the timeout"),
    (httpx.WriteTimeout, "the request could not be sent within the timeout"),
    (httpx.PoolTimeout, "no free connection within the timeout"),
    (httpx.TimeoutException, "timed out"),
    (httpx.ProxyError, "the proxy refused or failed the request"),
    (httpx.ConnectError, "cannot connect"),
    (httpx.ReadError, "the answer was cut off"),
    (httpx.WriteError, "the request could not be sent"),
    (httpx.RemoteProtocolError, NOT_HTTP),
    (httpx.UnsupportedProtocol, "the URL's scheme is not supported"),
    (httpx.TooManyRedirects, "too many redirects"),
    (httpx.HTTPStatusError, "error status"),
)
"""What a failed call is called when its cause is not one of the connection failures named
below. Never the exception's own text: httpx and aiohttp put the request URL in it, and the Bot
API's URLs hold the operator's token."""


def describe(exc: httpx.HTTPError) -> str:
    """One line for a failed call, naming what went wrong on the wire from a fixed vocabulary.

    ``httpx-aiohttp`` files every connection-level failure under one httpx class (a refused
    connection reads as ``ConnectTimeout``), so the aiohttp error it chains is read instead.
    """
    import aiohttp

    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return f"ConnectError: certificate check failed: {cause.certificate_error}"
    if isinstance(cause, aiohttp.ClientConnectorError):
        reason = cause.os_error.strerror or type(cause.os_error).__name__
        return f"ConnectError: cannot connect to {cause.host}:{cause.port}: {reason}"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "RemoteProtocolError: the server closed the connection without an answer"
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout: no connection within the timeout"
    if isinstance(cause, aiohttp.SocketTimeoutError):
        return "ReadTimeout: no answer within the timeout"
    phrase = next((p for kind, p in _PHRASES if isinstance(exc, kind)), "the request failed")
    return f"{type(exc).__name__}: {phrase}"
