"""The application factory: settings are validated and resources built here, never at import."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from claude_notify import __version__
from claude_notify.agent import wire
from claude_notify.cloud.server.api.errors import BodyLimitMiddleware, install_error_handlers
from claude_notify.cloud.server.api.routes import (
    account,
    channels,
    commands,
    events,
    health,
    inbound,
    linking,
    login,
    logs,
    metrics,
    notifications,
    tasks,
    templates,
    usage,
    workspace,
)
from claude_notify.cloud.server.billing import routes as billing
from claude_notify.cloud.server.db.migrate import migrate
from claude_notify.cloud.server.logsetup import AccessLogMiddleware
from claude_notify.cloud.server.relay import tunnel
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import roles
from claude_notify.cloud.server.web import pages

if TYPE_CHECKING:
    from claude_notify.cloud.server.delivery.worker import Worker


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment).

    Pass ``runtime`` to share a database and waker with something else in the process (tests,
    the embedded worker).
    """
    if runtime is None:
        runtime = Runtime.build((settings or Settings.from_env()).validate())
    if runtime.settings.should_migrate_on_start:
        migrate(runtime.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _embedded_worker(runtime) as worker:
            if worker is not None:
                app.state.on_stopping.append(worker.stop)
            yield

    app = ServerApp(
        title="claude-notify server",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        **_NO_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.on_stopping = []  # see ServerApp.stopping
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=runtime.settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    runtime.metrics.watch_queue(runtime.sessions)
    # First: FastAPI tries routes in order, and Stripe's webhook must answer 50 deliveries at
    # once within its timeout; after the hundred other routes, matching cost a fifth of its CPU.
    app.include_router(billing.router)  # Checkout, the Portal and Stripe's webhook
    routers = (health, metrics, login, account, events, tasks, logs, channels, notifications, usage)
    for module in (*routers, linking, templates):  # linking, templates: chat and SMS channels
        app.include_router(module.router)
    app.include_router(workspace.router)  # members, invites, handover, activity
    app.include_router(commands.router)  # the command relay (its tunnel: ServerApp)
    app.include_router(inbound.router)  # Telegram's, Discord's and Feishu's webhooks
    pages.install(app)  # the web app under /app
    if forgot := roles.missing(app):  # every route says who may use it: see teams.roles
        raise RuntimeError(f"routes missing from teams.roles.ROLES: {', '.join(forgot)}")
    return app


_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters else {})
"""FastAPI (0.16x) asks OpenTelemetry on every request whether anyone listens; nobody does (the
server exports its own Prometheus metrics), and the question cost each request a twentieth of
its CPU."""


class ServerApp(FastAPI):
    """The API, with the agent tunnel answered ahead of its middleware stack and router.

    Done here rather than by whoever serves the app, so the CLI's uvicorn, a test client and any
    other ASGI server serve the tunnel the same way (see :mod:`~.relay.tunnel` for why it skips
    the stack).
    """

    def stopping(self) -> None:
        """SIGTERM arrived (the CLI's server calls this before draining requests): the embedded
        worker stops claiming now, so its drain and the requests' share one grace period."""
        for callback in self.state.on_stopping:
            callback()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == wire.PATH:
            scope["app"] = self  # where the tunnel finds the app's state, as behind the router
            await tunnel.serve(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@asynccontextmanager
async def _embedded_worker(runtime: Runtime) -> AsyncIterator[Worker | None]:
    """Run the delivery worker beside the API when no distributed workers are configured."""
    if not runtime.settings.embedded_worker:
        yield None
        return
    from claude_notify.cloud.server.delivery.worker import Worker

    async with Worker(runtime).running() as worker:
        yield worker
