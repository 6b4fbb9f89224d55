"""``docs/self-hosting.md``, steps 1–3, followed as written: the commands are read from the page
and run one by one (the real server as a subprocess, the real CLI), with only what cannot be
true here replaced — the public ntfy URL by a receiver on 127.0.0.1 (hence
``WEBHOOK_ALLOW_PRIVATE``), the example channel id by the one the server gave, port 8000 by a
free one. If the page drifts from what the product does, this fails.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from cloud_kit import Receiver, free_port, wait_for
from relay_kit import CLI, user_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "self-hosting.md"
NTFY = "https://ntfy.sh/my-secret-topic-4821"
EXAMPLE_ID = "6bd20f20"  # the page shows a unique prefix of the id the server gave


def _commands(section: str) -> list[str]:
    """The shell lines of a numbered section's ``sh`` blocks, comments dropped."""
    text = DOC.read_text(encoding="utf-8")
    body = re.search(rf"^## {section}\.[^\n]*\n(.*?)(?=^## )", text, re.S | re.M)
    assert body, f"docs/self-hosting.md has no section {section}"
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", body.group(1), re.S):
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_the_webhook_walkthrough_works_as_written(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    env = user_env(tmp_path, CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE="1",
                   CLAUDE_NOTIFY_SERVER_PUBLIC_URL=f"http://127.0.0.1:{port}")

    def real(command: str) -> list[str]:
        command = (command.replace(NTFY, receiver.url)
                   .replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
        argv = shlex.split(command)
        assert argv[0] == "claude-notify", command
        return [*CLI, *argv[1:]]

    install, start = _commands("1")
    assert install.startswith("pipx install --force '.[server]'")  # this venv is that install
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*real(start), "--port", str(port)], env=env, stdout=log,
                              stderr=log, start_new_session=True)
    try:
        wait_for(lambda: "  users " in (tmp_path / "server.log").read_text(errors="replace"),
                 timeout=120, what="the server's banner")
        token = b""
        shown: dict[str, str] = {}
        for command in _commands("2") + _commands("3"):
            if EXAMPLE_ID in command:
                command = command.replace(EXAMPLE_ID, shown["id"][:8])
            done = subprocess.run(real(command), env=env, input=token, capture_output=True,
                                  timeout=120, check=False)
            out = done.stdout.decode()
            if "create-user" in command:
                token = done.stdout  # "paste the token": login --token reads it from stdin
            if "run --" in command:
                assert done.returncode == 1, done.stderr  # the example fails on purpose
                continue
            assert done.returncode == 0, (command, done.stderr.decode())
            if "whoami" in command:
                assert "you@example.com" in out and "pro" in out, out
            if command.endswith("deliveries"):
                assert "sent" in out or "pending" in out or "sending" in out, out
            if "channels add webhook" in command:
                found = re.search(r"added webhook channel (\S+)", out)
                assert found, out
                shown["id"] = found.group(1)
        calls = receiver.wait(2, timeout=60)  # the test message, then the failed task
        bodies = [call.body.decode() for call in calls]
        assert any("exit 1" in body or '"exit_code": 1' in body for body in bodies), bodies
        assert all("webhook-signature" in call.headers for call in calls)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
