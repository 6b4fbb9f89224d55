"""The hosted backend's API, as the CLI uses it.

httpx errors are translated here, at the edge: a connection problem is :class:`CloudUnreachable`
(retryable — the caller spools), a 401 says to log in again, and any other refusal carries the
server's own one-line message ("SMS needs the pro plan"), never a bare status code. The token is
sent in a header and never appears in a message, a log line or a child's argv.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claude_notify.cloud.account import check_server_url
from claude_notify.errors import CloudUnreachable, Refused, Unauthorized, WrongRegion

if TYPE_CHECKING:
    import httpx

USER_AGENT = "claude-notify"
OPERATOR_CODES = frozenset({"email_unavailable", "not_configured", "region_directory_unavailable",
                            "region_unknown"})
"""503s that no retry mends (the server cannot send e-mail, has no Telegram bot): refusals
carrying the server's reason, not "busy or failing"."""


class CloudClient:
    """A thin, synchronous client; one per process."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 10.0) -> None:
        import httpx

        self.server = check_server_url(server)
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, content: bytes | None = None) -> Any:
        """Call the API; the decoded JSON answer (``None`` for 204). ``content`` is sent as
        raw bytes (a log chunk)."""
        import httpx

        headers = {"Content-Type": "application/octet-stream"} if content is not None else None
        try:
            response = self._http.request(method, path, json=json, params=params,
                                          content=content, headers=headers)
        except httpx.TimeoutException:
            raise CloudUnreachable(f"{self.server} did not answer in time") from None
        except httpx.TransportError as exc:
            raise CloudUnreachable(f"cannot reach {self.server}: {_reason(exc)}") from None
        if response.status_code == 401:
            raise Unauthorized("the server did not accept this machine's token: "
                               "run `claude-notify login`")
        if response.status_code == 421 and _code(response) == "wrong_region":
            raise _wrong_region(response)
        if response.status_code == 503 and _code(response) in OPERATOR_CODES:
            raise Refused(_message(response), response.status_code)
        if response.status_code in (409, 429) or response.status_code >= 500:
            # 409 is a concurrent change the server asks us to retry, not a refusal.
            raise CloudUnreachable(f"{self.server} is busy or failing "
                                   f"({response.status_code}): {_message(response)}")
        if response.status_code >= 400:
            raise Refused(_message(response), response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CloudUnreachable(f"{self.server} answered with something that is not "
                                   "JSON: is this a claude-notify server?") from None


def _wrong_region(response: httpx.Response) -> Refused:
    """The account's own region and server from a ``wrong_region`` answer (a plain refusal
    when they are missing: nothing to follow)."""
    error = response.json().get("error", {})
    details = error.get("details") or [{}]
    region, server = details[0].get("region"), details[0].get("server")
    if not isinstance(region, str) or not isinstance(server, str):
        return Refused(_message(response), 421)
    return WrongRegion(_message(response), region=region, server=server)


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else None


def _message(response: httpx.Response) -> str:
    """The server's own one-line message from its error shape, else the status line; escape
    sequences in it (it may quote what someone typed) are shown, not acted on."""
    from claude_notify.render import printable

    return printable(_said(response))


def _said(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"]).splitlines()[0][:300]
        if isinstance(body.get("detail"), str):
            return str(body["detail"]).splitlines()[0][:300]
    return f"HTTP {response.status_code} {response.reason_phrase}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
