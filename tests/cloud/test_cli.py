"""``claude-notify server …``: account administration through the real click group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from standins.telegram import TOKEN, TelegramStandIn

from claude_notify.cloud.server.billing.models import BillingChange
from claude_notify.cloud.server.cli import server
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.errors import ConfigError, UsageError


@pytest.fixture
def env(runtime: Runtime) -> dict[str, str]:
    return {"DATABASE_URL": runtime.settings.database_url}


def test_create_user_prints_a_working_token(env: dict[str, str], client: TestClient,
                                            runtime: Runtime) -> None:
    result = CliRunner().invoke(
        server, ["create-user", "Cli@Example.com", "--plan", "pro"], env=env
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("cnt_")
    usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert usage.json()["plan"] == "pro"

    assert (
        CliRunner().invoke(server, ["set-plan", "cli@example.com", "free"], env=env).exit_code == 0
    )
    usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert usage.json()["plan"] == "free"
    again = CliRunner().invoke(server, ["set-plan", "cli@example.com", "free"], env=env)
    assert again.exit_code == 0  # no change: nothing recorded
    with runtime.sessions() as session:  # the operator's change is with the billing changes
        changes = session.execute(select(BillingChange.change, BillingChange.cause)).all()
    assert changes == [("free", "operator: server set-plan")]

    revoked = CliRunner().invoke(server, ["revoke", "--user", "cli@example.com"], env=env)
    assert revoked.output.strip() == "revoked 1 token(s)"
    assert client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_operator_mistakes_are_usage_errors(env: dict[str, str]) -> None:
    runner = CliRunner()
    twice = runner.invoke(server, ["create-user", "a@example.com"], env=env)
    assert twice.exit_code == 0
    again = runner.invoke(server, ["create-user", "a@example.com"], env=env)
    assert isinstance(again.exception, UsageError)
    neither = runner.invoke(server, ["revoke"], env=env)
    assert isinstance(neither.exception, UsageError)
    assert runner.invoke(server, ["set-plan", "a@example.com", "gold"], env=env).exit_code == 2


@pytest.mark.parametrize("address", ["not-an-address", "two words@example.com", "a@", "@x.com"])
def test_create_user_refuses_what_is_not_an_address(env: dict[str, str], address: str) -> None:
    """An account's address is where its sign-in links go: `create-user not-an-address` used to
    succeed and leave an account nobody could sign in to."""
    refused = CliRunner().invoke(server, ["create-user", address], env=env)
    assert isinstance(refused.exception, UsageError)
    assert "is not an e-mail address" in str(refused.exception)
    made = CliRunner().invoke(server, ["create-user", "ops@example.com"], env=env)
    assert made.exit_code == 0 and "created ops@example.com (free)" in made.stderr


def test_migrate_is_safe_to_repeat(env: dict[str, str]) -> None:
    for _ in range(2):
        result = CliRunner().invoke(server, ["migrate"], env=env)
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output


def test_the_server_group_loads_no_web_or_database_stack() -> None:
    code = (
        "import sys; from claude_notify.cloud.server.cli import server; "
        "heavy = {'fastapi', 'sqlalchemy', 'uvicorn', 'httpx', 'alembic', 'psycopg', 'redis'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_embedded_default_keeps_a_private_log_key_beside_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_notify.cloud.server.cli import _settings

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'server.db'}")
    monkeypatch.delenv("CLAUDE_NOTIFY_SERVER_LOG_KEYS", raising=False)
    first = _settings()
    key_file = tmp_path / "data" / "server.db.logkey"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.log_keys == (key_file.read_text().strip(),)
    assert _settings().log_keys == first.log_keys  # reused, never regenerated


def test_telegram_webhook_registers_this_server_with_the_bot(tmp_path: Path) -> None:
    with TelegramStandIn() as telegram:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
            "CLAUDE_NOTIFY_SERVER_PUBLIC_URL": "https://notify.example/",
            "CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE": telegram.base_url,
            "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN": TOKEN,
            "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET": "hook-secret_123",
        }
        runner = CliRunner()
        done = runner.invoke(server, ["telegram-webhook"], env=env)
        assert done.exit_code == 0, done.output
        url = "https://notify.example/v1/telegram/webhook"
        assert done.output == f"setWebhook {url}: Telegram: Webhook was set\n"
        [call] = telegram.requests
        assert call.path == f"/bot{TOKEN}/setWebhook"
        assert call.headers["content-type"] == "application/json"
        assert telegram.webhook == {
            "url": url,
            "secret_token": "hook-secret_123",
            "allowed_updates": ["message", "callback_query"],
        }
        again = runner.invoke(server, ["telegram-webhook"], env=env)
        assert again.output == f"setWebhook {url}: Telegram: Webhook is already set\n"

        # Telegram's own refusals come back as one line and a failing exit code.
        plain = runner.invoke(
            server, ["telegram-webhook", "--url", "http://a.example/hook"], env=env
        )
        assert plain.exit_code == 1
        assert str(plain.exception) == (
            "setWebhook http://a.example/hook: Telegram 400: "
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
        )
        port = runner.invoke(
            server, ["telegram-webhook", "--url", "https://a.example:8000/h"], env=env
        )
        assert "Telegram 400: Bad Request: bad webhook: Webhook can be set up only on ports" in str(
            port.exception
        )
        bad_secret = runner.invoke(
            server,
            ["telegram-webhook"],
            env={**env, "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET": "a b"},
        )
        assert str(bad_secret.exception).endswith(
            "Telegram 400: Bad Request: secret token contains unallowed characters"
        )
        wrong = runner.invoke(
            server,
            ["telegram-webhook"],
            env={**env, "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN": "1:x"},
        )
        assert str(wrong.exception).endswith(": Telegram 401: Unauthorized")
        assert telegram.webhook["url"] == url  # the refused calls changed nothing

    gone = runner.invoke(server, ["telegram-webhook"], env=env)  # the API is unreachable
    assert gone.exit_code == 1 and "Telegram: ConnectError" in str(gone.exception)
    unset = runner.invoke(
        server,
        ["telegram-webhook"],
        env={**env, "CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET": ""},
    )
    assert isinstance(unset.exception, ConfigError)
    assert str(unset.exception) == "set CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET first"


_NO_EXTRA = '''
import sys

class NoServerExtra:
    """What a venv without the [server] extra looks like to the import system."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"fastapi", "uvicorn", "sqlalchemy", "alembic", "celery"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoServerExtra())
'''


@pytest.mark.parametrize("args", [[], ["migrate"], ["worker"], ["create-user", "a@example.com"]])
def test_without_the_server_extra_one_line_names_the_install(tmp_path: Path,
                                                             args: list[str]) -> None:
    (tmp_path / "sitecustomize.py").write_text(_NO_EXTRA)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    done = subprocess.run([sys.executable, "-m", "claude_notify", "server", *args], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("claude-notify: the server needs the [server] extra (")
    assert "pipx install --force '.[server]'" in done.stderr
