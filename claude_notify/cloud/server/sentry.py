"""Errors to Sentry, when the operator sets ``CLAUDE_NOTIFY_SERVER_SENTRY_DSN``; else nothing.

``sentry_sdk`` is imported by :func:`init` only, and only with a DSN: a server without one, and
the ``claude-notify run`` path always, never load it. What leaves the server is built from an
allowlist (:func:`scrub`), not trimmed from Sentry's full event, because the things to keep out
are open-ended: users' command output, task tails and event payloads are data we hold for them,
and an exception's text is the usual way they would leak (SQLAlchemy quotes the parameters of a
failed statement, a channel's error may quote the message it was sending). So an event carries
the exception's type and stack (files, functions, lines, our source; no local variables, no
exception text), the log line that reported it (through :func:`~.redact.redact`), the request's
method and path (no headers, cookies, query string or body), release and environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from claude_notify import __version__
from claude_notify.cloud.server.redact import redact

if TYPE_CHECKING:
    from sentry_sdk._types import Breadcrumb, BreadcrumbHint, Event, Hint

    from claude_notify.cloud.server.settings import Settings

_TOP_LEVEL = ("event_id", "timestamp", "platform", "level", "logger", "server_name", "release",
              "environment", "sdk", "fingerprint", "type")
_FRAME = ("filename", "abs_path", "module", "function", "lineno", "colno", "in_app", "package")
_SOURCE = ("context_line", "pre_context", "post_context")
_TRACE = ("trace_id", "span_id", "parent_span_id", "op", "status")
"""Not ``dynamic_sampling_context``: it would put the DSN's key in the envelope's header."""
_BREADCRUMB = ("timestamp", "type", "category", "level")


def init(settings: Settings, *, component: str) -> bool:
    """Start reporting errors if a DSN is configured; whether it did.

    ``component`` (``api`` or ``worker``) becomes a tag, so the two kinds of process are told
    apart. Called after the runtime is built, which has taught :mod:`~.redact` the secrets.
    """
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=f"claude-notify@{__version__}",
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals hold messages, configs, tokens
        max_request_body_size="never",
        before_send=_before_send,
        # No performance tracing: spans carry SQL, URLs (a bot token is in Telegram's path)
        # and timings per user; exceptions are what the spec asks Sentry for.
        traces_sample_rate=None,
        before_send_transaction=lambda _event, _hint: None,
        before_breadcrumb=_before_breadcrumb,
    )
    sentry_sdk.set_tag("component", component)
    return True


def _before_send(event: Event, _hint: Hint) -> Event:
    return cast("Event", scrub(event))


def _before_breadcrumb(crumb: Breadcrumb, _hint: BreadcrumbHint) -> Breadcrumb | None:
    return _breadcrumb(crumb)


def scrub(event: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Sentry event that may leave the server (see the module's docstring)."""
    kept: dict[str, Any] = {k: event[k] for k in _TOP_LEVEL if k in event}
    values = (event.get("exception") or {}).get("values") or []
    if values:
        kept["exception"] = {"values": [_exception(v) for v in values]}
    logentry = event.get("logentry") or {}
    if isinstance(logentry.get("message"), str):  # the formatted line, already redacted once
        kept["logentry"] = {"message": redact(logentry["message"])}
    if isinstance(event.get("message"), str):
        kept["message"] = redact(event["message"])
    for key in ("transaction", "culprit"):
        if isinstance(event.get(key), str):
            kept[key] = redact(event[key])
    request = event.get("request") or {}
    if request:
        kept["request"] = {"method": request.get("method"), "url": _bare_url(request.get("url"))}
    contexts = event.get("contexts") or {}
    kept["contexts"] = {
        "trace": {k: v for k, v in (contexts.get("trace") or {}).items() if k in _TRACE},
        **{k: contexts[k] for k in ("runtime", "os") if k in contexts},
    }
    kept["tags"] = {str(k): redact(str(v)) for k, v in (event.get("tags") or {}).items()}
    crumbs = (event.get("breadcrumbs") or {}).get("values") or []
    kept["breadcrumbs"] = {"values": [c for c in (_breadcrumb(c) for c in crumbs) if c]}
    return kept


def _exception(value: Mapping[str, Any]) -> dict[str, Any]:
    # No "value": the exception's text is where users' data and secrets would be.
    out: dict[str, Any] = {k: value[k] for k in ("type", "module") if k in value}
    mechanism = value.get("mechanism") or {}
    out["mechanism"] = {k: mechanism[k] for k in ("type", "handled") if k in mechanism}
    frames = (value.get("stacktrace") or {}).get("frames") or []
    out["stacktrace"] = {"frames": [_frame(f) for f in frames]}
    return out


def _frame(frame: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: frame[k] for k in _FRAME if k in frame}
    # Source lines of Python files only: a Jinja2 template's frame (a user's notification
    # template) is named "<template>" and its "source" is the user's text.
    if str(frame.get("abs_path") or "").endswith(".py"):
        for key in _SOURCE:
            if key in frame:
                line = frame[key]
                out[key] = redact(line) if isinstance(line, str) else [redact(x) for x in line]
    return out


def _bare_url(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return redact(urlunsplit((parts.scheme, host, parts.path, "", "")))


def _breadcrumb(crumb: Mapping[str, Any]) -> dict[str, Any] | None:
    """Log lines only (already through the log redactor); HTTP, SQL, Redis and subprocess
    crumbs carry URLs with tokens, statements, keys and argv, so they are not kept at all."""
    if crumb.get("type") != "log":
        return None
    out = {k: crumb[k] for k in _BREADCRUMB if k in crumb}
    if isinstance(crumb.get("message"), str):
        out["message"] = redact(crumb["message"])
    return out
