"""What ``claude-notify server`` prints before it serves: where it listens and what works.

A self-hoster's first question after starting it is "is it set up?". The banner answers it in
one screen: the URL, the database (password hidden), how deliveries run, which providers are
configured and — for the ones that are not — which variable turns each on, and what to do when
there are no users yet. It is plain text on stderr, beside the JSON log lines.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claude_notify.cloud.server.runtime import Runtime
    from claude_notify.cloud.server.settings import Settings

_ENV = "CLAUDE_NOTIFY_SERVER_"


def lines(runtime: Runtime, host: str, port: int,
          reachable: Callable[[str, int], bool] | None = None) -> list[str]:
    """The banner, one line per fact."""
    settings = runtime.settings
    reachable = reachable or _reachable
    listen = f"http://{_bracket(host)}:{port}"
    out = [f"claude-notify server on {listen}"]
    if settings.public_url.rstrip("/") != listen:
        out.append(f"  public URL  {settings.public_url} (in links sent to people)")
    out.append(f"  database    {_hide_password(settings.database_url)}")
    out.append(f"  deliveries  {_deliveries(settings)}")
    smtp = f"{settings.smtp_host}:{settings.smtp_port}"
    if reachable(settings.smtp_host, settings.smtp_port):
        out.append(f"  e-mail      SMTP {smtp}")
    else:
        out.append(f"  e-mail      off: nothing answers at SMTP {smtp} (set {_ENV}SMTP_HOST and "
                   "_PORT); sign-in links by e-mail and e-mail channels cannot be sent")
    out.extend(f"  {name:<11} {state}" for name, state in _providers(settings))
    out.append(f"  web app     {_web(settings)}")
    users = _count_users(runtime)
    if users == 0:
        out.append("  users       none yet: claude-notify server create-user YOU@EXAMPLE.COM")
    elif users is not None:
        out.append(f"  users       {users}")
    return out


def _web(settings: Settings) -> str:
    signup = ("sign-up off" if not settings.web_signup else
              "sign-up for " + ", ".join(settings.web_signup_domains)
              if settings.web_signup_domains else "sign-up open")
    github = ("GitHub sign-in on" if settings.github_enabled else
              f"GitHub sign-in off: set {_ENV}GITHUB_CLIENT_ID, _GITHUB_CLIENT_SECRET")
    cards = (f"cards link to {settings.dashboard_url}" if settings.dashboard_url else
             f"cards carry no task link: set {_ENV}PUBLIC_URL to an address phones can open")
    return f"{settings.public_url.rstrip('/')}/app; {signup}; {github}; {cards}"


def _providers(settings: Settings) -> list[tuple[str, str]]:
    def off(*names: str) -> str:
        return "off: set " + ", ".join(_ENV + n for n in names)

    telegram = ("on" + (f" (@{settings.telegram_bot_username})"
                        if settings.telegram_bot_username else "")
                if settings.telegram_bot_token else off("TELEGRAM_BOT_TOKEN"))
    if settings.telegram_bot_token and not settings.telegram_webhook_secret:
        telegram += "; replies off: set " + _ENV + "TELEGRAM_WEBHOOK_SECRET"
    discord = ("webhooks on; replies on" if settings.discord_public_key
               else "webhooks on; replies " + off("DISCORD_PUBLIC_KEY"))
    feishu = ("webhooks on; replies on" if settings.feishu_verification_token
              else "webhooks on; replies " + off("FEISHU_VERIFICATION_TOKEN"))
    twilio = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from)
    sms = "on (Twilio)" if all(twilio) else off("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                                "TWILIO_FROM")
    return [("telegram", telegram), ("discord", discord), ("feishu", feishu), ("sms", sms),
            ("webhooks", "on" + (" (private addresses allowed)"
                                 if settings.webhook_allow_private else ""))]


def _deliveries(settings: Settings) -> str:
    if settings.embedded_worker:
        return "sent by this process"
    woken = f", woken through Redis at {_hide_password(settings.redis_url)}" \
        if settings.redis_url else ""
    return f"sent by `claude-notify server worker` processes{woken}"


def _count_users(runtime: Runtime) -> int | None:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from claude_notify.cloud.server.db.models import User

    try:
        with runtime.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(User)) or 0)
    except SQLAlchemyError:  # not migrated yet: the start-up proper says so, in its own words
        return None


def _hide_password(url: str | None) -> str:
    if not url:
        return ""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # redis:// and other schemes SQLAlchemy does not know
        scheme, sep, rest = url.partition("://")
        credentials, at, where = rest.rpartition("@")
        if not at or ":" not in credentials:
            return url
        return f"{scheme}{sep}{credentials.partition(':')[0]}:***@{where}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reachable(host: str, port: int) -> bool:
    """Whether something accepts connections there: a quick look, not a mail session."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False
