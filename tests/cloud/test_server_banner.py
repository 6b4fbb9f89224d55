"""``claude-notify server`` says, as it starts, where it listens and what is set up.

The real server as a subprocess, a real TCP listener standing for the SMTP server: a self-hoster
reads this banner to learn whether e-mail, Telegram, Discord, Feishu and SMS will work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from cloud_kit import free_port, wait_for

from claude_notify.cloud.server.banner import _hide_password, lines
from claude_notify.cloud.server.cli import server
from claude_notify.cloud.server.runtime import Runtime

CLI = [sys.executable, "-m", "claude_notify"]


def _banner_of(env: dict[str, str], log: Path) -> list[str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "server", "--port", str(port)], env=env, stdout=out,
                                stderr=out, start_new_session=True)
    try:
        def told() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            return "  users " in log.read_text(errors="replace")

        wait_for(told, timeout=120, what="the server's banner")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return [line for line in log.read_text().splitlines() if not line.startswith("{")]


def test_the_banner_names_what_works_and_what_turns_the_rest_on(tmp_path: Path) -> None:
    smtp = socket.create_server(("127.0.0.1", 0))  # something answers where SMTP is expected
    smtp_port = smtp.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
        "CLAUDE_NOTIFY_SERVER_SMTP_PORT": str(smtp_port),
        "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN": "123:secret-token",
        "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_USERNAME": "my_notify_bot",
        "CLAUDE_NOTIFY_SERVER_DISCORD_PUBLIC_KEY": "ab" * 32,
    })
    try:
        banner = _banner_of(env, tmp_path / "first.log")
    finally:
        smtp.close()
    text = "\n".join(banner)
    assert banner[0].startswith("claude-notify server on http://127.0.0.1:")
    assert f"database    sqlite:///{tmp_path / 'server.db'}" in text
    assert f"e-mail      SMTP 127.0.0.1:{smtp_port}" in text
    assert "telegram    on (@my_notify_bot); replies off: set " \
           "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET" in text
    assert "discord     webhooks on; replies on" in text
    assert "feishu      webhooks on; replies off: set " \
           "CLAUDE_NOTIFY_SERVER_FEISHU_VERIFICATION_TOKEN" in text
    assert "sms         off: set CLAUDE_NOTIFY_SERVER_TWILIO_ACCOUNT_SID" in text
    assert "users       none yet: claude-notify server create-user" in text
    assert "secret-token" not in text

    made = CliRunner().invoke(server, ["create-user", "me@example.com"], env=env)
    assert made.exit_code == 0, made.output
    again = "\n".join(_banner_of(env, tmp_path / "second.log"))  # SMTP listener now gone
    assert "users       1" in again
    assert f"e-mail      off: nothing answers at SMTP 127.0.0.1:{smtp_port}" in again


def test_the_banner_never_shows_a_password(runtime: Runtime) -> None:
    assert _hide_password("postgresql://cn:hunter2@db.internal:5432/cn") \
        == "postgresql://cn:***@db.internal:5432/cn"
    assert _hide_password("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert _hide_password("redis://cache:6379/0") == "redis://cache:6379/0"
    settings = runtime.settings.replace(
        embedded_worker=False, redis_url="redis://default:hunter2@127.0.0.1:6379/0")
    replica = Runtime.build(settings)
    try:
        shown = "\n".join(lines(replica, "::1", 8000, reachable=lambda _host, _port: True))
    finally:
        replica.close()
    assert "hunter2" not in shown
    assert "claude-notify server on http://[::1]:8000" in shown
    assert "sent by `claude-notify server worker` processes, woken through Redis at " \
           "redis://default:***@127.0.0.1:6379/0" in shown


def test_the_banner_says_how_the_web_app_signs_people_in_and_where_cards_link(
    runtime: Runtime,
) -> None:
    def web(**changes: object) -> str:
        settings = runtime.settings.replace(**changes)
        built = Runtime.build(settings)
        try:
            shown = lines(built, "127.0.0.1", 8000, reachable=lambda _host, _port: True)
        finally:
            built.close()
        return next(line for line in shown if line.startswith("  web app"))

    plain = web(public_url="http://127.0.0.1:8000")
    assert plain == ("  web app     http://127.0.0.1:8000/app; sign-up open; GitHub sign-in off: "
                     "set CLAUDE_NOTIFY_SERVER_GITHUB_CLIENT_ID, _GITHUB_CLIENT_SECRET; cards "
                     "carry no task link: set CLAUDE_NOTIFY_SERVER_PUBLIC_URL to an address "
                     "phones can open")
    hosted = web(public_url="https://notify.example.com", web_signup_domains=("example.com",),
                 github_client_id="Iv1.x", github_client_secret="hush-secret")  # noqa: S106
    assert hosted == ("  web app     https://notify.example.com/app; sign-up for example.com; "
                      "GitHub sign-in on; cards link to https://notify.example.com/app")
    assert "off" in web(web_signup=False).split(";")[1]
