"""``claude-notify server``: run the API, run delivery workers, migrate, and manage accounts.

Registered lazily by the main CLI, and itself imports only click and the stdlib at module level:
``claude-notify server --help`` must not pay for FastAPI or SQLAlchemy. Errors are raised as
:class:`~claude_notify.errors.ClaudeNotifyError` subclasses, which the main CLI prints as one line
with their exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pathlib import Path

    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings


def _settings() -> Settings:
    from claude_notify.cloud.server.settings import Settings

    settings = Settings.from_env().validate()
    if settings.is_sqlite:
        from pathlib import Path

        path = settings.sqlalchemy_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if not settings.log_keys:
                settings = settings.replace(log_keys=(_embedded_log_key(Path(path)),))
    return settings


def _embedded_log_key(database: Path) -> str:
    """The one-machine default keeps its log key beside the database, readable by its owner only.

    Deployments on PostgreSQL set ``CLAUDE_NOTIFY_SERVER_LOG_KEYS`` instead, so every replica
    shares the keys and a database dump alone does not reveal the logs.
    """
    import os

    from claude_notify.cloud.server.logcrypt import new_key

    key_file = database.with_name(database.name + ".logkey")
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key("local") + "\n")
    return key_file.read_text().strip()


def _runtime(settings: Settings | None = None) -> Runtime:
    from claude_notify.cloud.server.runtime import Runtime

    return Runtime.build(settings or _settings())


_EXTRA_MODULES = frozenset({
    "fastapi", "starlette", "pydantic", "uvicorn", "celery", "kombu", "uvloop", "httptools",
    "sqlalchemy", "alembic", "psycopg", "httpx_aiohttp", "aiohttp", "aiosmtplib",
    "email_validator", "redis", "prometheus_client", "cryptography", "multipart", "jinja2",
    "regex", "sniffio", "stripe", "requests", "sentry_sdk", "pywebpush", "py_vapid", "http_ece",
})
"""Top-level modules of the ``[server]`` extra: missing, they mean the extra is not installed."""


class _ServerGroup(click.Group):
    """Turns a missing ``[server]`` dependency into one line with the install command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
                raise
            from claude_notify.errors import UsageError

            raise UsageError(
                f"the server needs the [server] extra ({exc.name} is missing): from a checkout, "
                "pipx install --force '.[server]' (or pip install '.[server]' in its venv)"
            ) from None


@click.group(cls=_ServerGroup, invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
def server(ctx: click.Context, host: str, port: int) -> None:
    """Run the hosted backend (API and, by default, an in-process delivery worker).

    With no settings it uses a SQLite file in the user data directory. Set DATABASE_URL to a
    postgresql:// URL and REDIS_URL to run stateless API replicas beside `server worker`
    processes. Other settings: CLAUDE_NOTIFY_SERVER_<NAME> (e.g. _SMTP_HOST, _PUBLIC_URL).
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from claude_notify.cloud.server.app import create_app
    from claude_notify.cloud.server.banner import lines
    from claude_notify.cloud.server.httpproto import HeaderDeadlineProtocol, raise_fd_limit
    from claude_notify.cloud.server.logsetup import configure
    from claude_notify.cloud.server.sentry import init as init_sentry
    from claude_notify.cloud.server.shutdown import DrainingServer

    configure()
    raise_fd_limit()
    runtime = _runtime()
    init_sentry(runtime.settings, component="api")
    app = create_app(runtime=runtime)
    for line in lines(runtime, host, port):
        click.echo(line, err=True)
    # uvicorn's own access log would print query strings, which carry one-time link secrets.
    # No per-message deflate: the agents do not ask for it, and a zlib context per idle agent
    # would cost ~90 KB of the server's memory. Request headers have a deadline (slowloris).
    grace = max(1, round(runtime.settings.shutdown_grace_s))
    config = uvicorn.Config(app, host=host, port=port, proxy_headers=True, access_log=False,
                            log_config=None, ws_per_message_deflate=False,
                            http=HeaderDeadlineProtocol, timeout_graceful_shutdown=grace)
    served = DrainingServer(config)
    _freeze_heap()
    served.run()
    if not served.started:  # as uvicorn.run: the port was taken, the app failed to start
        raise SystemExit(3)


@server.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve this worker's Prometheus metrics (deliveries sent, retried, dead; "
                   "latency) on this port, for scraping and as a liveness probe.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the metrics port listens on (0.0.0.0 in a container).")
def worker(metrics_port: int | None, metrics_host: str) -> None:
    """Run a delivery worker until interrupted (for DATABASE_URL + REDIS_URL deployments)."""
    import asyncio

    from claude_notify.cloud.server.delivery.standalone import run_worker
    from claude_notify.cloud.server.logsetup import configure
    from claude_notify.cloud.server.sentry import init as init_sentry

    configure()
    runtime = _runtime()
    init_sentry(runtime.settings, component="worker")
    if metrics_port is not None:
        # The delivery outcomes are counted where deliveries happen: with distributed workers
        # that is here, not in the API, so each worker is scraped too.
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host, registry=runtime.metrics.registry)
    _freeze_heap()
    asyncio.run(run_worker(runtime))


def _freeze_heap() -> None:
    """Take what start-up made (modules, the app and its routes, ~all of a server's objects)
    out of the garbage collector's sight. Its full collections walked all of it and stalled
    whole bursts of requests: under 50 concurrent Stripe deliveries the webhook's p99 went from
    243-280 ms to 100-178 ms with this (``scripts/bench_billing.py``, loaded machine)."""
    import gc

    gc.collect()
    gc.freeze()


@server.command()
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    from claude_notify.cloud.server.db.migrate import migrate as apply

    runtime = _runtime()
    try:
        apply(runtime.engine)
    finally:
        runtime.close()
    click.echo("database is up to date")


@server.command("create-user")
@click.argument("email")
@click.option("--plan", type=click.Choice(["free", "pro"]), default=None,
              help="The account's plan  [default: CLAUDE_NOTIFY_SERVER_DEFAULT_PLAN, or free]")
def create_user(email: str, plan: str | None) -> None:
    """Create an account and print its first API token (shown once)."""
    from claude_notify.cloud.server import auth, residency
    from claude_notify.errors import CloudError

    runtime = _ready_runtime()
    plan = plan or runtime.settings.default_plan
    try:
        try:
            elsewhere = residency.home(runtime.settings, email)
        except residency.ResidencyError as exc:
            raise CloudError(f"cannot create {email}: {exc}") from None
        if elsewhere is not None:
            raise CloudError(
                f"{email} belongs to region {elsewhere.region}: create it on {elsewhere.server}")
        with runtime.sessions.begin() as session:
            user, token = auth.create_user(session, email, plan=plan)
            address = user.email
        residency.claim(runtime.settings, address)
    finally:
        runtime.close()
    click.echo(f"created {address} ({plan}); API token (shown once):", err=True)
    click.echo(token.secret)


@server.command("region-entries")
def region_entries() -> None:
    """Enter this region's accounts in the region directory (once, when residency is turned on
    for a deployment that has accounts already; new ones are entered as they are made).

    A folder directory gets the missing entries; an entry naming another region is left as it
    is and listed (that address has an account in two regions: the operators decide). An
    http(s) directory is only read by the servers: this prints "NAME REGION" lines for its
    owner to publish instead.
    """
    from sqlalchemy import select

    from claude_notify.cloud.server import residency
    from claude_notify.cloud.server.db.models import User
    from claude_notify.errors import ConfigError

    runtime = _ready_runtime()
    settings = runtime.settings
    try:
        if settings.region is None:
            raise ConfigError("set CLAUDE_NOTIFY_SERVER_REGION (and its directory) first")
        with runtime.sessions() as session:
            emails = list(session.scalars(select(User.email).order_by(User.email)))
    finally:
        runtime.close()
    if residency.remote(settings):
        for email in emails:
            click.echo(f"{residency.entry_name(email)} {settings.region}")
        return
    elsewhere = []
    for email in emails:
        held = residency.claim(settings, email)
        if held is None:
            raise ConfigError(f"cannot write the region directory {settings.region_directory}")
        if held != settings.region:
            elsewhere.append(email)
            click.echo(f"{email}: the directory says region {held}; left as it is", err=True)
    click.echo(f"{len(emails) - len(elsewhere)} account(s) entered for region {settings.region}"
               f"{f', {len(elsewhere)} entered for another region' if elsewhere else ''}")
    if elsewhere:
        raise SystemExit(1)


@server.command("set-plan")
@click.argument("email")
@click.argument("plan", type=click.Choice(["free", "pro"]))
def set_plan(email: str, plan: str) -> None:
    """Move a user to another plan (recorded with the billing changes, as the operator's)."""
    from sqlalchemy import select

    from claude_notify.cloud.server import auth
    from claude_notify.cloud.server.billing.models import BillingChange
    from claude_notify.cloud.server.db.models import User

    runtime = _ready_runtime()
    try:
        with runtime.sessions.begin() as session:
            user_id = session.scalar(select(User.id).where(
                User.email == auth.normalise_email(email)))
            was = auth.plan_of(session, auth.home(session, user_id)) if user_id else None
            workspace = auth.set_plan(session, email, plan)
            if was != plan:
                session.add(BillingChange(workspace_id=workspace.id, change=plan, plan=plan,
                                          status=None, cause="operator: server set-plan"))
    finally:
        runtime.close()
    click.echo(f"{email.strip().lower()} is now on {plan}")


@server.command("billing-sync")
@click.option("--user", "email", help="Only this account (by e-mail address).")
def billing_sync(email: str | None) -> None:
    """Re-read subscriptions from Stripe and put right any plan a missed webhook left wrong.

    Also retries Stripe events whose handling failed and ends plans whose grace or paid period
    is over (the worker does both every hour). Safe to run at any time, on any replica.
    """
    from claude_notify.cloud.server.billing.errors import BillingOff
    from claude_notify.cloud.server.billing.service import sync_all
    from claude_notify.errors import ClaudeNotifyError, ConfigError

    runtime = _ready_runtime()
    try:
        report = sync_all(runtime.sessions, runtime.settings, email=email)
    except BillingOff as exc:
        raise ConfigError(f"{exc}: set CLAUDE_NOTIFY_SERVER_STRIPE_SECRET_KEY first") from None
    finally:
        runtime.close()
    for address, changes in report.changed.items():
        click.echo(f"{address}: {', '.join(changes)}")
    for address, why in report.failed.items():
        click.echo(f"{address}: not re-read: {why}", err=True)
    click.echo(f"{report.checked} account(s) checked, {len(report.changed)} account(s) "
               f"changed, {len(report.failed)} failed")
    if report.failed:
        raise ClaudeNotifyError(f"{len(report.failed)} account(s) could not be re-read")


@server.command()
@click.option("--token", "token", help="A token, or a token id, to revoke.")
@click.option("--user", "email", help="Revoke every token of this user.")
def revoke(token: str | None, email: str | None) -> None:
    """Revoke one API token, or all of a user's tokens.

    Agents connected with a revoked token are disconnected within a second on every API replica
    (told over REDIS_URL when it is set; each replica also looks in the database).
    """
    from claude_notify.cloud.server import auth
    from claude_notify.errors import UsageError

    if (token is None) == (email is None):
        raise UsageError("give exactly one of --token or --user")
    from sqlalchemy import select

    from claude_notify.cloud.server.db.models import ApiToken
    from claude_notify.cloud.server.relay.queue import drop_unserved

    runtime = _ready_runtime()
    try:
        with runtime.sessions.begin() as session:
            revoked = auth.revoke(session, email=email, token=token)
            owners = list(session.scalars(
                select(ApiToken.user_id).where(ApiToken.id.in_(revoked)).distinct()))
            dropped = drop_unserved(session, owners) if owners else 0
        if revoked and runtime.settings.redis_url:
            from claude_notify.cloud.server.relay.hub import announce_revoked

            announce_revoked(runtime.settings.redis_url, revoked)
    finally:
        runtime.close()
    click.echo(f"revoked {len(revoked)} token(s)"
               + (f"; {dropped} waiting relay command(s) expired" if dropped else ""))


@server.command("telegram-webhook")
@click.option(
    "--url", help="Where Telegram posts updates [default: PUBLIC_URL/v1/telegram/webhook]."
)
def telegram_webhook(url: str | None) -> None:
    """Point the operator's Telegram bot at this server (Bot API setWebhook).

    Telegram then sends the configured TELEGRAM_WEBHOOK_SECRET with every update, and only
    messages (linking codes, replies to notifications) and button presses ("Run again", "Show
    log"). Prints Telegram's answer in one line.
    """
    import asyncio

    from claude_notify.cloud.server.settings import Settings
    from claude_notify.errors import ClaudeNotifyError, ConfigError

    settings = Settings.from_env().validate()
    for name in ("telegram_bot_token", "telegram_webhook_secret"):
        if not getattr(settings, name):
            raise ConfigError(f"set CLAUDE_NOTIFY_SERVER_{name.upper()} first")
    target = url or settings.public_url.rstrip("/") + "/v1/telegram/webhook"
    ok, answer = asyncio.run(_set_telegram_webhook(settings, target))
    if not ok:
        raise ClaudeNotifyError(f"setWebhook {target}: {answer}")
    click.echo(f"setWebhook {target}: {answer}")


async def _set_telegram_webhook(settings: Settings, url: str) -> tuple[bool, str]:
    """Whether Telegram accepted the webhook, and its answer as one line."""
    import httpx

    from claude_notify.cloud.server.channels.telegram import TelegramChannel
    from claude_notify.cloud.server.channels.text import clean

    payload = {
        "url": url,
        "secret_token": settings.telegram_webhook_secret,
        "allowed_updates": ["message", "callback_query"],  # replies and button presses
    }
    async with httpx.AsyncClient() as http:
        body = await TelegramChannel(settings, http).call("setWebhook", payload)
    description = clean(str(body.get("description") or "")).replace("\n", " ")[:300]
    if body.get("ok") is True:
        return True, f"Telegram: {description or 'ok'}"
    code = int(body.get("error_code") or 0)
    return False, f"Telegram {code}: {description}" if code else f"Telegram: {description}"


@server.command("discord-commands")
def discord_commands() -> None:
    """Register the /link and /run slash commands of the operator's Discord application.

    Needs DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN; set the application's Interactions
    Endpoint URL to PUBLIC_URL/v1/discord/interactions in the developer portal (Discord checks
    it with a PING, so DISCORD_PUBLIC_KEY must be set on the running server first).
    """
    import asyncio

    import httpx

    from claude_notify.cloud.server.relay.discord import register
    from claude_notify.cloud.server.settings import Settings
    from claude_notify.errors import ClaudeNotifyError, ConfigError

    settings = Settings.from_env().validate()
    for name in ("discord_application_id", "discord_bot_token"):
        if not getattr(settings, name):
            raise ConfigError(f"set CLAUDE_NOTIFY_SERVER_{name.upper()} first")

    async def go() -> tuple[bool, str]:
        async with httpx.AsyncClient() as http:
            return await register(settings, http)

    ok, answer = asyncio.run(go())
    if not ok:
        raise ClaudeNotifyError(answer)
    click.echo(answer)


@server.command("vapid-keys")
def vapid_keys() -> None:
    """Make a key pair for Web Push (VAPID) and print it as settings.

    Set CLAUDE_NOTIFY_SERVER_VAPID_PRIVATE_KEY (and VAPID_SUBJECT, unless PUBLIC_URL is
    https://) on every replica; the web app then offers "Enable notifications". Keep the key:
    a new one orphans every browser's subscription.
    """
    from claude_notify.cloud.server.channels.vapid import new_private_key, public_key

    key = new_private_key()
    click.echo(f"CLAUDE_NOTIFY_SERVER_VAPID_PRIVATE_KEY={key}")
    click.echo(f"# public key (browsers get it from the web app): {public_key(key)}")


def _ready_runtime() -> Runtime:
    """A runtime whose database is migrated when that is the embedded default's job."""
    runtime = _runtime()
    if runtime.settings.should_migrate_on_start:
        from claude_notify.cloud.server.db.migrate import migrate as apply

        apply(runtime.engine)
    return runtime
