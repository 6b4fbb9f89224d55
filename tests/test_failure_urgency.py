"""How loud a failure is: ``failure_urgency`` for what you wrapped, ``shell.failure_urgency``
for what the shell integration reports on its own (a real dunst reads back the urgency)."""

from __future__ import annotations

from pathlib import Path

import pytest
from desktop import DesktopSession
from helpers import cli_env, run_cli

pytestmark = pytest.mark.desktop


@pytest.mark.parametrize(("setting", "expected"), [
    (None, "critical"), ("normal", "normal"), ("low", "low"),
])
def test_a_wrapped_failure_takes_failure_urgency(
    desktop: DesktopSession, tmp_path: Path, setting: str | None, expected: str,
) -> None:
    env = cli_env(tmp_path, desktop.env)
    if setting is not None:
        env["CLAUDE_NOTIFY_FAILURE_URGENCY"] = setting
    mark = desktop.marker()
    assert run_cli(["run", "--", "sh", "-c", "exit 4"], env=env).returncode == 4
    assert desktop.wait_for(since=mark)["urgency"] == expected


def test_an_explicit_urgency_still_wins(desktop: DesktopSession, tmp_path: Path) -> None:
    env = cli_env(tmp_path, desktop.env)
    env["CLAUDE_NOTIFY_FAILURE_URGENCY"] = "low"
    mark = desktop.marker()
    assert run_cli(["run", "--urgency", "critical", "--", "false"], env=env).returncode == 1
    assert desktop.wait_for(since=mark)["urgency"] == "critical"


def test_a_bad_failure_urgency_is_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, {})
    env["CLAUDE_NOTIFY_FAILURE_URGENCY"] = "loud"
    done = run_cli(["config", "get", "failure_urgency"], env=env)
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1 and "FAILURE_URGENCY" in done.stderr.decode()
