"""Self-hosting without traps, as a self-hoster meets them: the real server as a subprocess (SQLite
and PostgreSQL) and the real CLI. The server runs with ``DEFAULT_PLAN=pro`` and no Telegram bot;
a second one's SMTP is first absent, then hangs up on every mail."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloud_kit import Mailbox, Receiver, free_port, wait_for
from relay_kit import CLI, Server, cli, email, user_env


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    srv = Server.make(module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_DEFAULT_PLAN="pro")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


def created(server: Server, *args: str) -> tuple[str, str]:
    """``server create-user ARGS``: what it told the operator, and the token."""
    out = subprocess.run([*CLI, "server", "create-user", *args], env=server.env,
                         capture_output=True, check=True, timeout=60)
    return out.stderr.decode().strip(), out.stdout.decode().strip()


def logged_in(server: Server, home: Path, *plan: str) -> tuple[str, dict[str, str]]:
    address = email("hoster")
    _, token = created(server, address, *plan)
    env = user_env(home)
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    return address, env


def one_line_error(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("claude-notify: "), err
    return err.strip().removeprefix("claude-notify: ")


def test_create_user_gives_the_default_plan_and_whoami_names_the_address(
    server: Server, tmp_path: Path
) -> None:
    address = email("op")
    said, _ = created(server, address)
    assert said == f"created {address} (pro); API token (shown once):"
    said, _ = created(server, email("guest"), "--plan", "free")
    assert "(free)" in said
    _, env = logged_in(server, tmp_path, "--plan", "free")
    whoami = cli(["whoami"], env).stdout.decode()
    assert "(token login)" not in whoami
    assert whoami.splitlines()[0].endswith(f" on {server.url}: free plan")
    assert whoami.startswith("hoster-")


def test_the_plan_and_the_server_refuse_channels_in_one_line(
    server: Server, tmp_path: Path, receiver: Receiver
) -> None:
    address, env = logged_in(server, tmp_path, "--plan", "free")
    refused = cli(["channels", "add", "webhook", receiver.url], env, check=False)
    assert one_line_error(refused, 1) == "the free plan sends e-mail only; webhook needs pro"
    server.admin("set-plan", address, "pro")
    no_bot = cli(["channels", "add", "telegram"], env, check=False)
    assert one_line_error(no_bot, 1) == (
        "this server has no Telegram bot: its operator has not set "
        "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN")
    assert cli(["channels", "list", "--json"], env).stdout.decode().strip() == "[]"


def test_prefixes_tests_and_the_deliveries_list(
    server: Server, tmp_path: Path, receiver: Receiver
) -> None:
    address, env = logged_in(server, tmp_path)  # pro, the server's default
    added = cli(["channels", "add", "webhook", receiver.url], env).stdout.decode()
    channel_id = added.split()[3]
    assert cli(["channels", "test", channel_id[:6]], env).stdout == b"test message queued\n"
    receiver.wait(1, timeout=20)
    sent = wait_for(lambda: "sent" in (out := cli(["deliveries"], env).stdout.decode()) and out,
                    timeout=20, what="the test message listed as sent")
    assert sent.splitlines()[0].split()[2:5] == ["webhook", "sent", "test"]
    unknown = cli(["channels", "remove", "zzzz"], env, check=False)
    assert one_line_error(unknown, 2) == (
        "no channel id starts with 'zzzz': see `claude-notify channels list`")

    server.admin("set-plan", address, "free")  # the channel stays, the plan refuses it
    test = cli(["channels", "test", channel_id[:6]], env, check=False)
    assert one_line_error(test, 1) == "the free plan sends e-mail only; webhook needs pro"
    assert cli(["run", "--", "true"], env).returncode == 0
    cli(["sync"], env)
    failed = wait_for(
        lambda: "refused" in (out := cli(["deliveries", "--failed"], env).stdout.decode()) and out,
        timeout=20, what="the refused event listed")
    assert failed.splitlines()[0].split()[2:5] == ["webhook", "refused", "event"]
    assert failed.splitlines()[0].endswith(": the free plan sends e-mail only; webhook needs pro")
    records = json.loads(cli(["deliveries", "--failed", "--json"], env).stdout)
    assert [(r["state"], r["kind"]) for r in records] == [("refused", "event")]
    assert len(json.loads(cli(["deliveries", "--json", "--limit", "1"], env).stdout)) == 1


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(
    server: Server, tmp_path: Path, receiver: Receiver
) -> None:
    _, env = logged_in(server, tmp_path)
    ids = [cli(["channels", "add", "webhook", receiver.url], env).stdout.decode().split()[3]
           for _ in range(17)]  # 17 ids, 16 hex digits: two share a first one
    first = next(c[0] for c in ids if sum(i.startswith(c[0]) for i in ids) > 1)
    refused = cli(["channels", "remove", first], env, check=False)
    said = one_line_error(refused, 2)
    assert said.startswith(f"'{first}' is the start of ") and said.endswith(": give more of it")
    assert len(json.loads(cli(["channels", "list", "--json"], env).stdout)) == 17


@contextlib.contextmanager
def smtp_port_opened_later() -> Iterator[tuple[int, threading.Event]]:
    """A port where nothing answers until the event is set; then every connection is accepted
    and hung up on at once (the server's quick check passes, every mail fails)."""
    port = free_port()
    opened, done = threading.Event(), threading.Event()

    def serve() -> None:
        opened.wait()
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(0.2)
            while not done.is_set():
                with contextlib.suppress(OSError):
                    listener.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, opened
    finally:
        opened.set()
        done.set()
        thread.join(5)


def test_login_by_email_says_at_once_when_the_server_cannot_mail(
    shared_server: Server, module_db_url: str, module_smtp: Mailbox, tmp_path: Path
) -> None:
    shared_server.stop()  # its worker, on the same database, would send the sign-in mail
    with smtp_port_opened_later() as (port, opened):
        srv = Server.make(module_db_url, module_smtp,
                          CLAUDE_NOTIFY_SERVER_SMTP_PORT=str(port))
        srv.start()
        try:
            env = user_env(tmp_path)
            login = ["login", "--server", srv.url, "--email", email()]
            refused = cli(login, env, check=False)
            assert one_line_error(refused, 1) == (
                f"this server cannot send e-mail: nothing answers at SMTP 127.0.0.1:{port}; "
                "ask its operator for a token (claude-notify login --token)")
            opened.set()

            def mail_failed() -> str | None:
                result = cli(login, env, check=False)
                last = result.stderr.decode().strip().splitlines()[-1]
                return last if "the sign-in e-mail failed" in last else None

            said = wait_for(mail_failed, timeout=60, what="the failed sign-in mail reported")
        finally:
            srv.stop()
    assert said.startswith("claude-notify: this server cannot send e-mail: the sign-in e-mail "
                           "failed (")
    assert said.endswith("; ask its operator for a token (claude-notify login --token)")
