"""One error shape for every error the API returns, including the framework's own.

Every non-2xx body is ``{"error": {"code": ..., "message": ..., "details": [...]}}``: ``code`` is
a stable machine word, ``message`` one line safe to show the user, ``details`` optional per-field
reasons. Handlers raise :class:`ApiError`; the framework's 404/405/422 and any crash are mapped
here, so clients never see two shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("claude_notify.server")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: status, stable code, one-line message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def not_found(what: str) -> ApiError:
    """The answer for anything missing *or belonging to someone else*: the two are the same."""
    return ApiError(404, f"{what} not found")


def error_body(
    code: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:  # long: one short handler per exception type
    """Route every exception the app can meet to the one shape (the handlers side by side, so
    the whole mapping reads in one place)."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        return error_response(exc)

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(ApiError(exc.status_code, message, headers=exc.headers))

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        details = [
            {"loc": ".".join(str(p) for p in err.get("loc", ())), "message": str(err.get("msg"))}
            for err in exc.errors()
        ]
        first = details[0] if details else {"loc": "", "message": "invalid request"}
        message = f"{first['loc']}: {first['message']}" if first["loc"] else first["message"]
        return error_response(ApiError(422, message, details=details))

    async def on_database_down(_request: Request, exc: Exception) -> JSONResponse:
        # Clients (the CLI's spool) retry on 503: an outage must not read as a bad request.
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            ApiError(
                503,
                "the database is unavailable; retry shortly",
                code="unavailable",
                headers={"Retry-After": "5"},
            )
        )

    async def on_bad_data(_request: Request, exc: Exception) -> JSONResponse:
        # Input valid as JSON that the database refuses, e.g. a NUL character in text.
        log.info("database refused input: %s", type(exc).__name__)
        message = "input contains characters or values the server cannot store (e.g. NUL)"
        return error_response(ApiError(422, message))

    async def on_conflict(_request: Request, exc: Exception) -> JSONResponse:
        log.info("concurrent change conflicted: %s", type(exc).__name__)
        return error_response(ApiError(409, "a concurrent change conflicted; retry the request"))

    async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(ApiError(500, "internal server error", code="internal_error"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(DataError, on_bad_data)
    app.add_exception_handler(IntegrityError, on_conflict)
    app.add_exception_handler(OperationalError, on_database_down)
    app.add_exception_handler(InterfaceError, on_database_down)
    app.add_exception_handler(Exception, on_crash)


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, by header or while streaming.

    Checking ``Content-Length`` alone is not enough: a chunked upload has none, so the body is
    counted as it arrives and the request is cut off the moment it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Raising here would reach the framework's body parser, which turns any error into
            # a 400; instead answer 413 ourselves and tell the app the client went away.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body larger than {self.limit} bytes"
        await error_response(ApiError(413, message))(scope, receive, send)
