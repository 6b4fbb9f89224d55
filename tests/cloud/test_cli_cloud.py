"""The CLI's cloud side against the real server, started as a subprocess (`claude-notify server`)
on SQLite and on PostgreSQL: login, forwarding, the spool when the server is down, two syncs at
once, a revoked token, the keyring and its file fallback.

The notifications arrive at a real webhook receiver on loopback, which is what a user's phone
would be told about.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloud_kit import Mailbox, Receiver, mail_text, wait_for
from relay_kit import CLI, Server, email


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    """One server per database for the whole module; each test signs up its own user."""
    srv = Server.make(module_db_url, module_smtp,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN="123456:test-token",  # noqa: S106
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_USERNAME="cn_test_bot")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


def _user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_NOTIFY", "DBUS_", "SSH_")) and k != "DISPLAY"}
    env.update({"CLAUDE_NOTIFY_CONFIG": str(tmp_path / "user" / "config.toml"),
                "CLAUDE_NOTIFY_STATE_DIR": str(tmp_path / "user" / "state"),
                "CLAUDE_NOTIFY_DATA_DIR": str(tmp_path / "user" / "data"),
                "XDG_DATA_HOME": str(tmp_path / "user" / "xdg-data"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                "CLAUDE_NOTIFY_BACKEND": "terminal"})
    env.update(extra)
    return env


def cli(args: list[str], env: dict[str, str], *, stdin: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([*CLI, *args], env=env, input=stdin, capture_output=True,
                            timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: {result.returncode} {result.stderr.decode()}")
    return result


def _logged_in(server: Server, tmp_path: Path, receiver: Receiver,
               **extra: str) -> dict[str, str]:
    """A pro user of their own, logged in, with a webhook channel; its address in ``EMAIL``."""
    address = email()
    token = server.admin("create-user", address, "--plan", "pro")
    env = _user_env(tmp_path, EMAIL=address, **extra)
    out = cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    assert b"pro plan" in out.stdout
    assert token.encode() not in out.stdout + out.stderr
    added = cli(["channels", "add", "webhook", receiver.url, "--on", "finished"], env)
    assert added.stdout.startswith(b"added webhook channel ")
    return env


def _events(receiver: Receiver, n: int, timeout: float = 20.0) -> list[dict[str, object]]:
    got = receiver.wait(n, timeout=timeout)
    return [json.loads(r.body)["data"] if "data" in json.loads(r.body) else json.loads(r.body)
            for r in got]


def test_run_is_forwarded_to_the_users_webhook(server: Server, tmp_path: Path,
                                               receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    result = cli(["run", "--", "sh", "-c", "echo from-the-task; exit 3"], env, check=False)
    assert (result.returncode, result.stdout) == (3, b"from-the-task\n")
    [event] = _events(receiver, 1)
    assert (event["type"], event["exit_code"], event["status"]) == ("finished", 3, "failure")
    assert "from-the-task" in str(event["tail"])
    tasks = httpx.get(f"{server.url}/v1/tasks", headers=_auth(env), timeout=10).json()
    [task] = tasks["items"]
    assert task["task_id"] == event["task_id"]  # the start registration and the event met
    assert task["cmd"] == "sh -c 'echo from-the-task; exit 3'"
    assert cli(["status"], env).stdout.decode().splitlines()[-1].startswith(
        "spool      0 waiting, 0 refused")
    whoami = cli(["whoami"], env).stdout.decode()
    assert "pro plan" in whoami and "notification(s) sent" in whoami


def test_server_down_spools_then_delivers_exactly_once(server: Server, tmp_path: Path,
                                                       receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    server.stop()
    for i in range(3):
        assert cli(["run", "--", "sh", "-c", f"exit {i}"], env, check=False).returncode == i
    # Each run also starts a background sync; while one of those holds a file (and finds the
    # server down), the spool shows one fewer, so wait for them to give everything back.
    status = wait_for(lambda: "6 waiting" in (out := cli(["status"], env).stdout.decode())
                      and out, what="3 registrations and 3 events spooled")
    assert "connection cannot reach" in status
    server.start()
    # Two CLIs drain the same spool at once: every request goes once.
    procs = [subprocess.Popen([*CLI, "sync"], env=env, stdout=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    sent = sum(int(o.split()[1].rstrip(",")) for o in outs)
    assert sent == 6, outs
    events = _events(receiver, 3)
    assert sorted(e["exit_code"] for e in events) == [0, 1, 2]  # type: ignore[type-var]
    assert cli(["sync"], env).stdout.startswith(b"sent 0, refused 0, 0 still waiting")
    assert receiver.count() == 3


def test_revoked_token_keeps_events_spooled(server: Server, tmp_path: Path,
                                            receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    server.admin("revoke", "--user", env["EMAIL"])
    assert cli(["run", "--", "true", "x"], env).returncode == 0
    result = cli(["sync"], env, check=False)
    assert result.returncode == 1
    assert b"run `claude-notify login`" in result.stderr
    assert result.stderr.count(b"\n") == 1
    assert len(list((tmp_path / "user/state/spool").glob("*.json"))) == 2
    assert receiver.count() == 0


def test_claude_hook_events_are_forwarded(server: Server, tmp_path: Path,
                                          receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver, CLAUDE_NOTIFY_CLAUDE_DEBOUNCE="0.1",
                     DISPLAY=":999", DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent")
    payload = {"session_id": "s-1", "cwd": str(tmp_path), "hook_event_name": "Stop",
               "stop_hook_active": False, "last_assistant_message": "All done."}
    assert cli(["hook"], env, stdin=json.dumps(payload).encode()).stdout == b""
    [event] = _events(receiver, 1)
    assert (event["source"], event["session_id"], event["message"]) == (
        "claude-code", "s-1", "All done.")


def test_no_login_no_network_and_no_cloud_flag(server: Server, tmp_path: Path,
                                               receiver: Receiver) -> None:
    env = _user_env(tmp_path)
    assert cli(["run", "--", "true", "x"], env).returncode == 0
    assert not (tmp_path / "user/state/spool").exists()
    env = _logged_in(server, tmp_path, receiver)
    assert cli(["run", "--no-cloud", "--", "true", "x"], env).returncode == 0
    assert cli(["run", "--on", "failure", "--", "true", "y"], env).returncode == 0
    assert cli(["run", "--", "false", "z"], env, check=False).returncode == 1
    [event] = _events(receiver, 1)
    assert event["command"] == "false z"


def test_token_storage_keyring_and_file_fallback(server: Server, tmp_path: Path) -> None:
    token = server.admin("create-user", email("k"))
    env = _user_env(tmp_path)
    out = cli(["login", "--server", server.url, "--token"], env, stdin=token.encode())
    assert b"token kept in the keyring" in out.stdout
    stored = list((tmp_path / "user/xdg-data").rglob("keyring_pass.cfg"))
    assert stored and token not in stored[0].read_text()  # keyrings.alt keeps it encoded
    assert cli(["logout"], env).stdout.startswith(b"logged out of ")
    env = _user_env(tmp_path / "b", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    out = cli(["login", "--server", server.url, "--token", token], env)  # the value form
    assert b"token kept in the file" in out.stdout
    token_file = tmp_path / "b/user/state/cloud-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text() == token
    assert b"file" in cli(["status"], env).stdout


def test_bad_logins_are_one_line(server: Server, tmp_path: Path) -> None:
    env = _user_env(tmp_path)
    cases = [
        (["login", "--server", "http://example.com", "--token"], b"refusing plain http://"),
        (["login", "--server", server.url, "--token"], b"run `claude-notify login`"),
        (["login", "--server", "http://127.0.0.1:9", "--token"], b"cannot reach"),
        (["whoami"], b"not logged in"),
    ]
    for args, needle in cases:
        result = cli(args, env, stdin=b"not-a-token\n", check=False)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)
        assert result.stderr.count(b"\n") == 1, result.stderr


def _auth(env: dict[str, str]) -> dict[str, str]:
    from claude_notify.cloud import account

    saved = {k: os.environ.get(k) for k in ("CLAUDE_NOTIFY_STATE_DIR", "PYTHON_KEYRING_BACKEND",
                                            "XDG_DATA_HOME")}
    try:
        for key in saved:
            os.environ[key] = env[key]
        who = account.current()
        assert who is not None
        return {"Authorization": f"Bearer {account.token(who)}"}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_stream_sends_the_output_while_the_task_runs(server: Server, tmp_path: Path,
                                                     receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    script = ("import sys, time\n"
              "for i in range(40):\n"
              "    sys.stdout.write(f'line {i} ' + 'x' * 50000 + '\\n'); sys.stdout.flush()\n"
              "    time.sleep(0.02)\n")
    result = cli(["run", "--stream", "--", sys.executable, "-c", script], env)
    expected = "".join(f"line {i} " + "x" * 50000 + "\n" for i in range(40)).encode()
    assert result.stdout == expected  # the command's own output, untouched
    [event] = _events(receiver, 1)
    log = httpx.get(f"{server.url}/v1/tasks/{event['task_id']}/log", headers=_auth(env),
                    timeout=10)
    assert log.status_code == 200
    assert log.content == expected
    assert log.headers["X-Log-Truncated"] == "false"

    def digest() -> str | None:
        got = httpx.get(f"{server.url}/v1/tasks/{event['task_id']}/log", headers=_auth(env),
                        timeout=10)
        return got.headers.get("X-Output-SHA256")

    # The machine's SHA-256 of the whole output, checked by the server against the full log.
    wait_for(lambda: digest() is not None, timeout=10, what="the output digest")
    assert digest() == hashlib.sha256(expected).hexdigest()


def test_stream_without_login_is_a_usage_error(tmp_path: Path) -> None:
    env = _user_env(tmp_path)
    result = cli(["run", "--stream", "--no-cloud", "--", "true", "x"], env, check=False)
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1


def test_login_by_e_mailed_link(server: Server, tmp_path: Path, module_smtp: Mailbox) -> None:
    """The device flow: the CLI waits; the link in the real e-mail is opened and confirmed; the
    waiting CLI receives its token (never shown) and can use it."""
    env = _user_env(tmp_path)
    me, before = email("me"), module_smtp.count()
    with subprocess.Popen([*CLI, "login", "--server", server.url, "--email", me],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as login:
        assert login.stderr is not None
        said = login.stderr.readline().decode()  # the code to type, before the waiting starts
        assert said.startswith(f"We e-mailed a sign-in link to {me}."), said
        code = said.rsplit(" ", 1)[1].strip()
        [mail] = module_smtp.wait(before + 1, timeout=30)[before:]
        assert mail.rcpt_tos == [me]
        assert socket.gethostname() in mail_text(mail)  # the machine that asked
        link = next(word for word in mail_text(mail).split() if "/v1/auth/approve?" in word)
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and me in page.text
        assert html.escape(socket.gethostname()) in page.text
        token = link.split("token=")[1]
        confirmed = httpx.post(f"{server.url}/v1/auth/approve",
                               data={"token": token, "code": code}, timeout=10)
        assert confirmed.status_code == 200
        out, _ = login.communicate(timeout=60)
    assert login.returncode == 0
    assert out.decode().startswith(f"logged in to {server.url} as {me}")
    whoami = cli(["whoami"], env).stdout.decode()
    assert whoami.startswith(f"{me} on {server.url}: free plan")


def test_plan_limits_and_channel_management(server: Server, tmp_path: Path,
                                            receiver: Receiver) -> None:
    address = email("free")
    token = server.admin("create-user", address)
    env = _user_env(tmp_path)
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode())
    refused = cli(["channels", "add", "telegram", "12345"], env, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith(b"claude-notify: a Telegram chat is linked with a code")
    sms = cli(["channels", "add", "sms", "+14155550100"], env, check=False)
    assert (sms.returncode, sms.stderr) == (
        1, b"claude-notify: the free plan sends e-mail only; sms needs pro\n")
    bad = cli(["channels", "add", "email", "not-an-address"], env, check=False)
    assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1
    assert b"not a valid e-mail address" in bad.stderr and b"HTTP" not in bad.stderr
    server.admin("set-plan", address, "pro")
    added = cli(["channels", "add", "webhook", receiver.url, "--name", "ci"], env)
    channel_id = added.stdout.split()[3].decode()
    listed = cli(["channels", "list"], env).stdout.decode()
    assert channel_id in listed and "webhook" in listed and "ci" in listed
    assert cli(["channels", "test", channel_id], env).stdout == b"test message queued\n"
    receiver.wait(1, timeout=20)
    assert cli(["channels", "remove", channel_id], env).stdout.startswith(b"removed ")
    assert channel_id not in cli(["channels", "list"], env).stdout.decode()


def test_server_killed_mid_stream_loses_nothing(server: Server, tmp_path: Path,
                                                receiver: Receiver) -> None:
    """The server dies while --stream uploads: the command is untouched, the rest of the log
    and the finished event are spooled, and `sync` delivers them once it is back."""
    env = _logged_in(server, tmp_path, receiver)
    gate = tmp_path / "gate"
    script = ("import os, sys, time\n"
              "for i in range(400):\n"
              "    sys.stdout.write(f'line {i}\\n'); sys.stdout.flush(); time.sleep(0.005)\n"
              f"    if i == 100:\n        open({str(gate)!r}, 'w').close()\n"
              f"        while os.path.exists({str(gate)!r}): time.sleep(0.01)\n")
    with subprocess.Popen([*CLI, "run", "--stream", "--", sys.executable, "-c", script],
                          env=env, stdout=subprocess.PIPE) as run:
        wait_for(gate.exists, timeout=30, what="the task to reach line 100")
        server.stop()
        gate.unlink()
        out, _ = run.communicate(timeout=60)
    expected = "".join(f"line {i}\n" for i in range(400)).encode()
    assert (run.returncode, out) == (0, expected)
    server.start()
    assert cli(["sync"], env).stdout.endswith(b"0 still waiting\n")
    [event] = _events(receiver, 1)
    log = httpx.get(f"{server.url}/v1/tasks/{event['task_id']}/log", headers=_auth(env),
                    timeout=10).content
    assert log.endswith(b"line 399\n")
    assert log.count(b"line 100\n") == 1  # nothing sent twice


def test_telegram_is_linked_by_a_code(server: Server, tmp_path: Path,
                                      receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    out = cli(["channels", "add", "telegram", "--name", "phone"], env).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("added telegram channel ")
    assert lines[1].startswith("to link your chat, send this to the bot or open "
                               "https://t.me/cn_test_bot?start=")
    assert " /start " in lines[1]
    bad = cli(["channels", "add", "sms"], env, check=False)
    assert (bad.returncode, bad.stderr) == (2, b"claude-notify: a sms channel needs its number\n")


def test_a_running_task_is_registered_while_it_runs(server: Server, tmp_path: Path,
                                                    receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    gate = tmp_path / "gate"
    script = ("import os, time\n"
              f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n")
    with subprocess.Popen([*CLI, "run", "--", sys.executable, "-c", script], env=env) as run:
        def running() -> bool:
            items = httpx.get(f"{server.url}/v1/tasks", headers=_auth(env), timeout=10).json()
            return any(t["status"] == "running" for t in items["items"])

        wait_for(running, timeout=30, what="the task registered while it runs")
        gate.touch()
        assert run.wait(timeout=30) == 0
    [event] = _events(receiver, 1)
    items = httpx.get(f"{server.url}/v1/tasks", headers=_auth(env), timeout=10).json()["items"]
    assert [(t["task_id"], t["status"]) for t in items] == [(event["task_id"], "success")]


def test_unwritable_spool_sends_directly_or_says_so(server: Server, tmp_path: Path,
                                                    receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    spool_dir = tmp_path / "user/state/spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    spool_dir.rmdir()
    spool_dir.write_text("not a directory: the spool cannot be written")
    result = cli(["run", "--", "sh", "-c", "exit 4"], env, check=False)
    assert result.returncode == 4
    assert b"cloud" not in result.stderr  # sent directly: nothing to say
    [event] = _events(receiver, 1)
    assert event["exit_code"] == 4
    server.stop()
    result = cli(["run", "--", "sh", "-c", "exit 5"], env, check=False)
    assert result.returncode == 5
    lines = [line for line in result.stderr.decode().splitlines() if "cloud" in line]
    assert len(lines) == 2  # the registration and the event, each said once
    assert all(line.startswith("claude-notify: cloud: cannot spool (") for line in lines)
    assert "this event was not forwarded" in lines[-1]
    server.start()


def test_headless_claude_hook_still_forwards(server: Server, tmp_path: Path,
                                             receiver: Receiver) -> None:
    """Over SSH the hook answers Claude Code with a terminal sequence, and the phone still
    hears about it through the cloud."""
    env = _logged_in(server, tmp_path, receiver, SSH_CONNECTION="10.0.0.1 5 10.0.0.2 22",
                     TERM="xterm-256color")
    payload = {"session_id": "s-2", "cwd": str(tmp_path), "hook_event_name": "Stop",
               "stop_hook_active": False, "last_assistant_message": "Done remotely."}
    out = cli(["hook"], env, stdin=json.dumps(payload).encode()).stdout
    assert "terminalSequence" in json.loads(out)
    [event] = _events(receiver, 1)
    assert (event["source"], event["message"]) == ("claude-code", "Done remotely.")
