"""Server settings: one frozen value, read from the environment and checked in one place.

Nothing is read at import time: :func:`Settings.from_env` is called by the CLI, and
:func:`create_app` calls :meth:`Settings.validate`, so a bad value fails at start-up with a
:class:`~claude_notify.errors.ConfigError` naming the variable, and tests build settings directly.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from claude_notify.errors import ConfigError

StartTLS = Literal["auto", "require", "off"]
Plan = Literal["free", "pro"]

RELAY_BANNED: tuple[str, ...] = (
    "rm -rf /", "mkfs", ":(){", "dd if=", "shutdown", "reboot", "halt", "poweroff",
    "chmod -r 777 /", "> /dev/sd")
"""Spec §11's keyword banlist: refused by the server whatever the agent's allow-list says."""

_ENV_PREFIX = "CLAUDE_NOTIFY_SERVER_"


def default_database_url() -> str:
    """The embedded default: a SQLite file in the user's data directory."""
    from platformdirs import user_data_dir

    return f"sqlite:///{Path(user_data_dir('claude-notify')) / 'server.db'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the server needs; operator credentials live here and never in users' rows."""

    database_url: str = field(default_factory=default_database_url)
    """SQLAlchemy URL; ``postgresql://`` is read as psycopg 3."""
    redis_url: str | None = None
    """When set, deliveries are handed to the distributed workers instead of the embedded one."""
    embedded_worker: bool = True
    """Run the delivery worker inside the API process (the one-machine default)."""
    auto_migrate: bool | None = None
    """Apply migrations on start; ``None`` means "only for SQLite"."""
    public_url: str = "http://127.0.0.1:8000"
    """Base URL put in verification links."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted; bigger ones get 413."""
    max_tail_bytes: int = 65_536
    """Largest ``tail`` accepted in an event; the plan decides how much of it is kept."""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "claude-notify <noreply@localhost>"
    smtp_starttls: StartTLS = "auto"
    """``auto`` upgrades when the server offers STARTTLS; ``require`` refuses a plain session."""
    smtp_ca_file: str | None = None
    """Extra CA bundle to trust for the SMTP server's certificate (private relays, tests)."""
    smtp_timeout_s: float = 30.0
    webhook_allow_private: bool = False
    """Let webhooks reach private and loopback addresses (single-host installs, tests)."""
    webhook_timeout_s: float = 15.0
    retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0)
    """Backoff schedule before jitter; the last value repeats until ``max_attempts``."""
    max_attempts: int = 8
    """Attempts before a retryable failure becomes a dead letter."""
    lease_s: float = 60.0
    """How long a claimed delivery is owned by a worker before another may take it."""
    worker_poll_s: float = 1.0
    """The worker's fallback poll interval; new deliveries wake it immediately."""
    shutdown_grace_s: float = 20.0
    """How long SIGTERM's drain may take: requests in flight finish and deliveries in flight are
    sent and recorded; a send still unanswered then is cut off and its row released at once for
    another worker (not after its lease). Keep the orchestrator's kill deadline above it
    (``terminationGracePeriodSeconds``, ``stop_grace_period``: 30 s in ``deploy/``)."""
    worker_concurrency: int = 32
    """Deliveries one worker has in flight; it claims them in batches of at least half that."""
    default_plan: Plan = "free"
    """The plan of an account made by e-mail sign-in, and ``server create-user``'s default
    (``pro`` suits a private server whose users are the operator's own)."""
    free_daily_notifications: int = 3
    events_per_minute: int = 600
    """Events one API token may post a minute, counted by each API process; beyond it, 429 with
    ``Retry-After`` (clients keep the event spooled and send it later). 0 turns it off."""
    max_channels_per_user: int = 20
    max_agents_per_user: int = 10
    """Machines registered for the relay; registering one again replaces its own agent."""
    max_sockets_per_user: int = 20
    """Agent connections one account holds open to one API process (a reconnecting agent's
    old connection may linger until its silence limit, hence more than the agents)."""
    max_sends_per_event: int = 10
    """Notifications queued for one event; the channels beyond it are refused with a reason."""
    pro_daily_sms: int = 30
    verification_ttl_s: float = 86_400.0
    verifications_per_hour: int = 10
    """Confirmation messages (e-mail links, SMS codes) one user may trigger an hour: enough to
    fix a typo, too few to spam."""
    link_ttl_s: float = 900.0
    """How long a code from ``POST /v1/channels/{id}/link`` stays good."""
    login_ttl_s: float = 900.0
    """How long a sign-in link and its device code stay valid."""
    login_per_address_per_hour: int = 5
    """Sign-in requests for one address from one client IP: a stranger's requests use up their
    own allowance, not the owner's."""
    login_per_ip_per_hour: int = 20
    log_keys: tuple[str, ...] = ()
    """AES-256-GCM keys for stored logs, ``id:base64``; the first encrypts, all decrypt."""
    pro_log_cap_bytes: int = 10 * 1024 * 1024
    """How much of a pro user's log is kept (at most 10 MB; free keeps a 10 KB tail)."""
    app_url: str | None = None
    """Public base URL of the dashboard: cards and buttons link to ``{app_url}/t/{task_id}``.
    Unset, they link to this server's own web app, ``{public_url}/app``, once ``public_url``
    is one a phone can open (not loopback; see :attr:`dashboard_url`)."""
    channel_plugins: tuple[str, ...] = ()
    """Channel plugins (``claude_notify.channels`` entry points) this server offers, by name,
    comma-separated: a plugin is code running in the server, so none is used unless named."""
    web_signup: bool = True
    """Whether the web app's e-mail sign-in may create accounts (off: only existing users)."""
    web_signup_domains: tuple[str, ...] = ()
    """If set, only addresses at these domains may sign up through the web app (lower case,
    comma-separated in the variable); existing accounts still sign in."""
    web_session_ttl_s: float = 30 * 86_400.0
    """How long a browser stays signed in without signing in again."""
    github_client_id: str | None = None
    github_client_secret: str | None = None
    """The operator's GitHub OAuth app; with both set the sign-in page offers "Sign in with
    GitHub" (its callback URL is ``{public_url}/app/signin/github/callback``)."""
    github_url: str = "https://github.com"
    """Where the browser is sent to authorize and the code is exchanged (tests: a stand-in)."""
    github_api_url: str = "https://api.github.com"
    provider_timeout_s: float = 15.0
    """Timeout of one call to Telegram, Discord, Feishu, Twilio or GitHub."""
    telegram_bot_token: str | None = None
    """The operator's bot (``123456:ABC…``); users only link their chats to it."""
    telegram_bot_username: str | None = None
    """The bot's @name without the @, for ``https://t.me/<name>?start=CODE`` links."""
    telegram_webhook_secret: str | None = None
    """``secret_token`` given to ``setWebhook``; the bot webhook refuses calls without it."""
    telegram_api_base: str = "https://api.telegram.org"
    discord_api_base: str = "https://discord.com"
    """Where Discord webhook paths are sent; users' URLs are pinned to Discord's hosts."""
    slack_api_base: str = "https://hooks.slack.com"
    """Where Slack incoming-webhook paths are sent; users' URLs are pinned to hooks.slack.com."""
    teams_api_base: str | None = None
    """Tests only: send Teams workflow calls to this base instead of the URL's own host."""
    slack_signing_secret: str | None = None
    """The operator's Slack app signing secret: turns on ``POST /v1/slack/commands`` (its slash
    command's request URL), through which a linked Slack user links and replies."""
    slack_command: str = "/claude-notify"
    """The name the operator gave that slash command, quoted in link instructions."""
    discord_public_key: str | None = None
    """The operator's Discord application public key (hex): turns on the interactions endpoint
    (``/link`` and ``/run`` slash commands); without it that endpoint is 404."""
    discord_application_id: str | None = None
    discord_bot_token: str | None = None
    """For ``claude-notify server discord-commands``, which registers the slash commands; with
    the public key too, permission requests go to linked Discord accounts as direct messages
    from the bot, with buttons."""
    feishu_api_base: str = "https://open.feishu.cn"
    lark_api_base: str = "https://open.larksuite.com"
    feishu_verification_token: str | None = None
    """The Verification Token of the operator's Feishu/Lark app: turns on its event callback."""
    feishu_encrypt_key: str | None = None
    """The app's Encrypt Key, if it has one: events then arrive encrypted and signed."""
    feishu_app_id: str | None = None
    feishu_app_secret: str | None = None
    """With both, answers to ``/link`` and ``/run`` are written into the chat they came from
    (a tenant token, at ``feishu_api_base``); without, through the owner's Feishu channel.
    With both and the Encrypt Key, permission requests go to linked Feishu accounts as cards
    with buttons (the app's ``card.action.trigger`` callback at the same URL)."""
    twilio_api_base: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    """Sender number (E.164) or ``MG…`` messaging service SID."""
    twilio_whatsapp_from: str | None = None
    """The WhatsApp sender on the same Twilio account (E.164, sent as ``whatsapp:+…``) or an
    ``MG…`` messaging service with one: turns on ``whatsapp`` channels (pro)."""
    twilio_whatsapp_content_sid: str | None = None
    """An approved WhatsApp template (``HX…``) whose one variable ``{{1}}`` is the text: without
    one, WhatsApp delivers only to numbers that wrote to the sender in the last 24 hours."""
    vapid_private_key: str | None = None
    """The server's Web Push (VAPID) key: a P-256 private key, base64url of its 32 raw bytes
    (``claude-notify server vapid-keys`` makes one). Set, the web app offers "Enable
    notifications" and ``webpush`` channels; changing it orphans every browser's subscription."""
    vapid_subject: str | None = None
    """Who push services contact about this server's pushes: ``mailto:you@example.com`` or an
    https:// URL; unset, ``public_url`` when it is https://."""
    relay_ttl_s: float = 3600.0
    """How long a relayed command waits for an offline agent before it expires."""
    relay_per_minute: int = 10
    """Commands (accepted or refused) one sender may send in a minute: counted per actor, so a
    stranger pressing a group chat's buttons cannot use up the owner's minute."""
    relay_banned: tuple[str, ...] = RELAY_BANNED
    """Keywords that refuse a shell command (case-insensitive; comma-separated in the variable,
    which replaces the list)."""
    relay_poll_s: float = 30.0
    """How often a connected agent's queue is re-read without a wake-up (expiry, other replicas)."""
    relay_idle_s: float = 90.0
    """An agent silent this long (no heartbeat) is disconnected."""
    relay_reply_token_ttl_s: float = 86_400.0
    """How long a notification's reply token can queue a command for its session."""
    stripe_secret_key: str | None = None
    """The operator's Stripe secret (``sk_…``, or a restricted ``rk_…``): turns on self-serve
    billing (Checkout, the Billing Portal, the webhook). Unset, plans change only by
    ``server set-plan`` and ``default_plan``."""
    stripe_webhook_secret: str | None = None
    """The signing secret (``whsec_…``) of the endpoint ``{public_url}/v1/stripe/webhook``."""
    stripe_price_id: str | None = None
    """The Pro plan's recurring Price (``price_…``)."""
    stripe_api_base: str = "https://api.stripe.com"
    """Where the Stripe SDK sends its calls (tests: a stand-in on 127.0.0.1)."""
    billing_success_url: str | None = None
    """Where Checkout returns after paying; default ``{public_url}/app/billing/success``."""
    billing_cancel_url: str | None = None
    """Where Checkout returns when abandoned; default ``{public_url}/app/billing``."""
    billing_grace_days: float = 7.0
    """How long a ``past_due`` subscription (a failed renewal) keeps Pro before it drops to
    free: time to update the card without losing anything."""
    sentry_dsn: str | None = None
    """A Sentry project's DSN: unhandled errors and logged errors of the API and the workers
    are reported there, scrubbed of secrets and of users' data (see docs/deploy.md). Unset,
    ``sentry-sdk`` is not even imported."""
    sentry_environment: str | None = None
    """The environment events are filed under (``production``, ``eu``…); Sentry's default
    when unset."""
    region: str | None = None
    """This deployment's region (``eu``, ``cn``…) for data residency: accounts of other regions
    are sent to their own server at sign-in (docs/deploy.md, "Regions"). Unset: one region."""
    region_urls: tuple[str, ...] = ()
    """Every region's server as ``CODE=URL`` (this one's included): the only places a sign-in
    is ever sent to, whatever the directory says."""
    region_directory: str | None = None
    """The shared directory of which region each account lives in: a folder every region
    mounts, or an http(s):// URL prefix. Entries are named by the address's SHA-256."""
    region_directory_timeout_s: float = 3.0
    """How long a sign-in waits for the region directory before saying it is unreachable."""

    def validate(self) -> Settings:
        """Return ``self`` if consistent, else raise :class:`ConfigError` naming the setting."""
        if not self.database_url.startswith(("sqlite:", "postgresql")):
            _bad("DATABASE_URL", self.database_url, "must be sqlite:/// or postgresql://")
        if self.smtp_starttls not in ("auto", "require", "off"):
            _bad("SMTP_STARTTLS", self.smtp_starttls, "must be auto, require or off")
        if self.default_plan not in ("free", "pro"):
            _bad("DEFAULT_PLAN", self.default_plan, "must be free or pro")
        for name in ("max_body_bytes", "max_tail_bytes", "max_attempts", "worker_concurrency",
                     "max_channels_per_user", "max_agents_per_user", "max_sockets_per_user",
                     "max_sends_per_event", "verifications_per_hour", "relay_per_minute"):
            if getattr(self, name) < 1:
                _bad(name.upper(), getattr(self, name), "must be at least 1")
        if self.events_per_minute < 0:
            _bad("EVENTS_PER_MINUTE", self.events_per_minute, "must be 0 (no limit) or more")
        for name in ("lease_s", "worker_poll_s", "webhook_timeout_s", "smtp_timeout_s",
                     "link_ttl_s", "relay_poll_s", "relay_idle_s", "relay_reply_token_ttl_s",
                     "web_session_ttl_s", "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                _bad(name.upper(), getattr(self, name), "must be positive")
        if self.relay_ttl_s < 0:  # 0: a command for an offline agent expires at once
            _bad("RELAY_TTL_S", self.relay_ttl_s, "must be 0 or more")
        if not 0 < self.pro_log_cap_bytes <= 10 * 1024 * 1024:
            _bad("PRO_LOG_CAP_BYTES", self.pro_log_cap_bytes, "must be between 1 and 10 MB")
        if self.log_keys:
            from claude_notify.cloud.server.logcrypt import LogKeyError, parse_keys

            try:
                parse_keys(self.log_keys)
            except LogKeyError as exc:
                _bad("LOG_KEYS", "…", str(exc))
        key = self.discord_public_key
        if key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", key):
            _bad("DISCORD_PUBLIC_KEY", key, "must be the application's 64-hex-digit public key")
        if bool(self.github_client_id) != bool(self.github_client_secret):
            unset, other = (("GITHUB_CLIENT_SECRET", "GITHUB_CLIENT_ID") if self.github_client_id
                            else ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"))
            _bad(unset, None, f"is needed with {other}: GitHub sign-in takes both")
        for name in ("github_url", "github_api_url"):
            if not getattr(self, name).startswith(("https://", "http://")):
                _bad(name.upper(), getattr(self, name), "must be an http(s):// URL")
        self._validate_billing()
        self._validate_vapid()
        self._validate_whatsapp()
        if self.sentry_dsn and not re.fullmatch(r"https?://[^@/\s]+@[^/\s]+/\S+",
                                                self.sentry_dsn):
            _bad("SENTRY_DSN", "…", "must be a DSN, https://<key>@<host>/<project>")
        self._validate_region()
        if not self.retry_delays_s or any(d < 0 for d in self.retry_delays_s):
            _bad("RETRY_DELAYS_S", self.retry_delays_s, "must be non-negative numbers")
        return self

    def _validate_region(self) -> None:
        from claude_notify.cloud.server import residency

        problem = residency.validate(self)
        if problem is not None:
            name, _, why = problem.partition(": ")
            _bad(name, getattr(self, name.lower()), why)

    def _validate_billing(self) -> None:
        if self.billing_grace_days < 0:
            _bad("BILLING_GRACE_DAYS", self.billing_grace_days, "must be 0 or more")
        if not self.stripe_api_base.startswith(("https://", "http://")):
            _bad("STRIPE_API_BASE", self.stripe_api_base, "must be an http(s):// URL")
        if not self.stripe_secret_key:
            return
        if not self.stripe_secret_key.startswith(("sk_", "rk_")):
            _bad("STRIPE_SECRET_KEY", "…", "must be a secret (sk_…) or restricted (rk_…) key")
        for name, prefix in (("stripe_webhook_secret", "whsec_"), ("stripe_price_id", "price_")):
            value = getattr(self, name)
            if not value:
                _bad(name.upper(), None, "is needed with STRIPE_SECRET_KEY")
            if not value.startswith(prefix):
                _bad(name.upper(), "…" if "secret" in name else value, f"must start {prefix}")

    def _validate_whatsapp(self) -> None:
        sender = self.twilio_whatsapp_from
        if sender and not re.fullmatch(r"\+[1-9]\d{6,14}|MG[0-9a-fA-F]{32}", sender):
            _bad("TWILIO_WHATSAPP_FROM", sender, "must be an E.164 number (+14155238886) or a "
                 "messaging service SID (MG…), without the whatsapp: prefix")
        content = self.twilio_whatsapp_content_sid
        if content and not re.fullmatch(r"HX[0-9a-fA-F]{32}", content):
            _bad("TWILIO_WHATSAPP_CONTENT_SID", content, "must be a Content SID (HX…)")

    def _validate_vapid(self) -> None:
        if not self.vapid_private_key:
            return
        from claude_notify.cloud.server.channels.vapid import VapidKeyError, public_key

        try:
            public_key(self.vapid_private_key)
        except VapidKeyError as exc:
            _bad("VAPID_PRIVATE_KEY", "…", str(exc))
        if self.push_subject is None:
            _bad("VAPID_SUBJECT", self.vapid_subject,
                 "must be mailto:<address> or an https:// URL (needed with VAPID_PRIVATE_KEY "
                 "when PUBLIC_URL is not https://)")

    @property
    def push_subject(self) -> str | None:
        """The VAPID ``sub`` claim: :attr:`vapid_subject`, else an https:// ``public_url``; an
        https:// one as its origin (``https://host``), the only form push libraries accept."""
        subject = self.vapid_subject or (
            self.public_url if self.public_url.startswith("https://") else None)
        if subject is None:
            return None
        if subject.startswith("mailto:"):
            address = r"mailto:[^@\s]+@(localhost|[\w-]+(\.[\w-]+)+)"
            return subject if re.fullmatch(address, subject) else None
        host = urlsplit(subject).hostname if subject.startswith("https://") else None
        if host and re.fullmatch(r"localhost|[\w-]+\.[\w.-]+", host):
            return f"https://{host}"
        return None

    @property
    def billing_enabled(self) -> bool:
        """Whether self-serve billing is on: the operator configured Stripe."""
        return bool(self.stripe_secret_key)

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver spelled out, so ``postgresql://`` means psycopg 3."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def dashboard_url(self) -> str | None:
        """Where cards' "Open task" links point: ``app_url``, else the web app at
        ``public_url`` unless that is loopback (the default): a link to 127.0.0.1 opens
        nothing on a phone, and Telegram refuses such a button outright."""
        if self.app_url:
            return self.app_url
        host = (urlsplit(self.public_url).hostname or "").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return None
        try:
            if ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return f"{self.public_url.rstrip('/')}/app"

    @property
    def github_enabled(self) -> bool:
        return bool(self.github_client_id and self.github_client_secret)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def replace(self, **changes: object) -> Settings:
        """A copy with some values changed (tests and the CLI use it)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``DATABASE_URL``, ``REDIS_URL`` and ``CLAUDE_NOTIFY_SERVER_<FIELD>`` variables."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
            values["embedded_worker"] = False
        for f in dataclasses.fields(cls):
            raw = env.get(_ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, raw, str(f.type))
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, annotation: str) -> object:
    """Turn one environment string into the field's type, naming the variable when it cannot."""
    try:
        if annotation.startswith("bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if annotation == "int":
            return int(raw)
        if annotation == "float":
            return float(raw)
        if annotation == "tuple[float, ...]":
            return tuple(float(x) for x in raw.split(",") if x.strip())
        if annotation == "tuple[str, ...]":
            return tuple(x.strip() for x in raw.split(",") if x.strip())
    except ValueError:
        _bad(_ENV_PREFIX + name.upper(), raw, f"is not a valid {annotation}")
    return raw or None if "None" in annotation else raw


def _bad(name: str, value: object, why: str) -> NoReturn:
    raise ConfigError(f"server setting {name}={value!r} {why}")
