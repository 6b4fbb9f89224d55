"""What the cloud records and prints must be true, tried as a user would: the real server as a
subprocess (SQLite and PostgreSQL), the CLI in an isolated home, a real webhook receiver.

Task times are the machine's (when the command ran), not when the server heard of it; a webhook
signing secret is shown once; a spool file set aside is said, with where; a refused token is
not "connection ok".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, Receiver, wait_for
from relay_kit import CLI, Server, cli, email, user_env
from standardwebhooks.webhooks import Webhook


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    """One server per database for the module; each test signs up a user of its own."""
    srv = Server.make(module_db_url, module_smtp)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


_TOKEN = "_TEST_TOKEN"  # noqa: S105 - an environment variable's name
"""Where a test keeps the account's token in its CLI environment (the CLI ignores it)."""
_EMAIL = "_TEST_EMAIL"
"""And the account's address."""


def _logged_in(server: Server, home: Path, receiver: Receiver | None) -> dict[str, str]:
    address = email()
    token = server.admin("create-user", address, "--plan", "pro")
    env = user_env(home, **{_TOKEN: token, _EMAIL: address})
    env.pop("CLAUDE_NOTIFY_QUIET")  # the run's one-line warnings are part of what is tested
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    if receiver is not None:
        cli(["channels", "add", "webhook", receiver.url, "--on", "finished"], env)
    return env


def _token(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env[_TOKEN]}"}


def _api(server: Server, env: dict[str, str], path: str, method: str = "GET",
         **kwargs: Any) -> Any:
    response = httpx.request(method, server.url + path, headers=_token(env), timeout=10,
                             **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def _when(value: object) -> datetime:
    assert isinstance(value, str), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _finished_task(server: Server, env: dict[str, str], receiver: Receiver) -> tuple[
        dict[str, Any], dict[str, Any]]:
    [call] = receiver.wait(1, timeout=30)
    event = json.loads(call.body)["data"]
    task = wait_for(lambda: (t := _api(server, env, f"/v1/tasks/{event['task_id']}"))
                    ["finished_at"] and t, timeout=30, what="the task to be finished")
    return event, task


def _assert_describes_the_run(task: dict[str, Any], event: dict[str, Any],
                              before: float, after: float) -> None:
    started, finished = _when(task["started_at"]), _when(task["finished_at"])
    assert started <= finished, (started, finished)
    span = (finished - started).total_seconds()
    assert abs(span - event["duration_s"]) < 0.002, (span, event["duration_s"])
    assert before <= started.timestamp() <= finished.timestamp() <= after
    assert started == _when(event["started_at"])


def test_a_short_run_is_recorded_as_it_ran(server: Server, tmp_path: Path,
                                           receiver: Receiver) -> None:
    """0.3 s of work: the registration reaches the server after the end, and must not make the
    task start after it finished."""
    env = _logged_in(server, tmp_path, receiver)
    before = time.time()
    cli(["run", "--", sys.executable, "-c", "import time; time.sleep(0.3)"], env)
    after = time.time()
    event, task = _finished_task(server, env, receiver)
    assert event["duration_s"] >= 0.3
    _assert_describes_the_run(task, event, before, after)


def test_a_run_that_reached_the_server_late_keeps_its_times(
        server: Server, tmp_path: Path, receiver: Receiver) -> None:
    """Three seconds while the server is down, then delivered by `sync`; a registration that
    arrives after the event (an old client's, without a start time) moves nothing."""
    env = _logged_in(server, tmp_path, receiver)
    server.stop()
    before = time.time()
    cli(["run", "--", sys.executable, "-c", "import time; time.sleep(3)"], env)
    after = time.time()
    server.start()
    wait_for(lambda: cli(["sync"], env, check=False).stdout.startswith(b"sent 2,")
             or b"0 still waiting" in cli(["status"], env).stdout, timeout=60,
             what="the spool to drain")
    event, task = _finished_task(server, env, receiver)
    assert event["duration_s"] >= 3.0
    _assert_describes_the_run(task, event, before, after)
    _api(server, env, "/v1/tasks", "POST", json={"task_id": event["task_id"], "cmd": "late"})
    assert _api(server, env, f"/v1/tasks/{event['task_id']}") == task | {
        "updated_at": _api(server, env, f"/v1/tasks/{event['task_id']}")["updated_at"]}


def test_a_running_task_starts_when_the_command_did(server: Server, tmp_path: Path,
                                                    receiver: Receiver) -> None:
    """Registered while it runs (after a second): the start is the machine's, not the arrival."""
    env = _logged_in(server, tmp_path, receiver)
    gate = tmp_path / "gate"
    script = ("import os, time\n"
              f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n")
    before = time.time()
    with subprocess.Popen([*CLI, "run", "--", sys.executable, "-c", script], env=env) as run:
        def registered() -> dict[str, Any] | None:
            items = _api(server, env, "/v1/tasks")["items"]
            return items[0] if items else None

        running = wait_for(registered, timeout=30, what="the task registered while it runs")
        seen = time.time()
        gate.touch()
        assert run.wait(timeout=30) == 0
    after = time.time()
    assert running["status"] == "running"
    assert before <= _when(running["started_at"]).timestamp() <= seen - 0.9
    event, task = _finished_task(server, env, receiver)
    _assert_describes_the_run(task, event, before, after)


def _signed_by(call: Any, secret: str) -> bool:
    try:
        Webhook(secret).verify(call.body, call.headers)
    except Exception:  # the library's WebhookVerificationError
        return False
    return True


def test_a_webhook_signing_secret_is_shown_once(server: Server, tmp_path: Path,
                                               receiver: Receiver) -> None:
    """At creation and on an explicit rotation; never in a list, a read or an update."""
    env = _logged_in(server, tmp_path, None)
    added = cli(["channels", "add", "webhook", receiver.url], env).stdout.decode()
    channel_id = added.split()[3]
    [shown] = [line.split(": ", 1)[1] for line in added.splitlines() if "shown once" in line]
    assert shown.startswith("whsec_")
    listed = cli(["channels", "list", "--json"], env).stdout.decode()
    assert channel_id in listed and shown not in listed
    assert [c["config"] for c in json.loads(listed)] == [{"url": receiver.url}]
    for path in ("/v1/channels", f"/v1/channels/{channel_id}"):
        assert shown not in json.dumps(_api(server, env, path))
    patched = _api(server, env, f"/v1/channels/{channel_id}", "PATCH",
                   json={"name": "ci", "config": {"url": receiver.url}})
    assert patched["config"] == {"url": receiver.url}  # and the secret was kept, not replaced
    cli(["channels", "test", channel_id], env)
    assert _signed_by(receiver.wait(1, timeout=30)[0], shown)

    rotated = cli(["channels", "rotate-secret", channel_id], env).stdout.decode()
    [new] = [line.split(": ", 1)[1] for line in rotated.splitlines() if "shown once" in line]
    assert new.startswith("whsec_") and new != shown
    assert new not in cli(["channels", "list", "--json"], env).stdout.decode()
    cli(["channels", "test", channel_id], env)
    call = receiver.wait(2, timeout=30)[1]
    assert _signed_by(call, new) and not _signed_by(call, shown)
    mail_id = cli(["channels", "add", "email", "me@example.com"], env).stdout.split()[3].decode()
    refused = cli(["channels", "rotate-secret", mail_id], env, check=False)
    assert refused.returncode == 1 and refused.stderr.count(b"\n") == 1
    assert b"webhook" in refused.stderr


def _set_aside(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["CLAUDE_NOTIFY_STATE_DIR"]) / "spool" / "dead").glob("*.json"))


def test_a_corrupt_spool_file_is_said_by_sync_and_the_next_run(
        server: Server, tmp_path: Path, receiver: Receiver) -> None:
    env = _logged_in(server, tmp_path, receiver)
    spool = Path(env["CLAUDE_NOTIFY_STATE_DIR"]) / "spool"
    dead = spool / "dead"
    server.stop()
    cli(["run", "--", "true"], env)
    spool.joinpath("00000000000000000001-torn.json").write_text('{"method": "PO')
    server.start()
    synced = cli(["sync"], env).stdout.decode().splitlines()
    assert synced[0] == "sent 2, refused 0, 0 still waiting"
    assert any(line.startswith("set aside 00000000000000000001-torn.json (unreadable spool file")
               for line in synced), synced
    assert synced[-1].startswith(f"1 set aside in {dead}")
    again = cli(["sync"], env).stdout.decode().splitlines()  # every run says so, and where
    assert again == ["sent 0, refused 0, 0 still waiting", synced[-1]]

    # Set aside by the background sync after a run: the next run says it, in one line, once.
    spool.joinpath("00000000000000000002-torn.json").write_bytes(b"\xff\xfe")
    assert _cloud_lines(cli(["run", "--", "true"], env)) == []
    wait_for(lambda: len(_set_aside(env)) == 2, timeout=60, what="the file set aside")
    [warned] = _cloud_lines(cli(["run", "--", "true"], env))
    assert warned.startswith("claude-notify: cloud: 1 spooled request set aside "
                             "(00000000000000000002-torn.json: unreadable spool file")
    assert warned.endswith(f"in {dead}")
    assert _cloud_lines(cli(["run", "--", "true"], env)) == []
    receiver.wait(4, timeout=30)


def _cloud_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    """The CLI's own lines about the cloud (the terminal backend has no tty to write to here)."""
    return [line for line in result.stderr.decode().splitlines() if "cloud" in line]


def test_status_says_a_refused_token_and_how_to_log_in(server: Server, tmp_path: Path) -> None:
    env = _logged_in(server, tmp_path, None)
    assert "connection ok" in cli(["status"], env).stdout.decode()
    server.admin("revoke", "--user", env[_EMAIL])
    out = cli(["status"], env).stdout.decode()
    assert "connection ok" not in out
    [line] = [line for line in out.splitlines() if line.startswith("connection")]
    assert "refused this machine's token" in line
    assert f"claude-notify login --server {server.url}" in line
