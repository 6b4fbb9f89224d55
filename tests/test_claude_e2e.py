"""The real Claude Code CLI, offline, firing the hooks ``claude-notify claude install`` wrote.

``claude -p`` runs against a stand-in of the Anthropic Messages API (``tests/claude_standin.py``)
in a scratch ``HOME``, with our hooks installed into ``$HOME/.claude/settings.json`` by our own
command; the notification is read back from a real dunst on a private D-Bus. This proves the
settings we write are accepted by Claude Code and that the hook it runs delivers with Claude's
reply. Without a desktop, an interactive session under a pty shows that the hook's
``terminalSequence`` answer reaches the user's terminal through Claude Code. Nothing here proves
anything about macOS or Windows.

The CLI comes from ``scripts/install_claude_cli.sh`` (or ``$CLAUDE_CLI``); without it the tests
skip locally and fail under ``CI``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_standin import MessagesStandIn
from desktop import DesktopSession
from helpers import cli_env, run_cli

from claude_notify.claude.settings import DEFAULT_EVENTS, installed_events

PROJECT = "standin-project"
REPLY = "Refactoring done: all 42 tests pass."

# Variables of a developer's own Claude Code (keys, endpoints, "running inside Claude") that
# must not reach the CLI under test.
_FOREIGN = re.compile(r"^(ANTHROPIC_|CLAUDE_CODE_|CLAUDECODE$|CLAUDE_CONFIG_DIR$|AWS_|"
                      r"GOOGLE_|VERTEX_|OTEL_|HTTPS?_PROXY$|https?_proxy$|NO_PROXY$|no_proxy$)")


def _find_claude() -> str | None:
    explicit = os.environ.get("CLAUDE_CLI")
    if explicit:
        return explicit
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = Path(os.environ.get("CLAUDE_CLI_DIR") or cache / "claude-notify-test" / "claude-cli")
    installed = prefix / "node_modules" / ".bin" / "claude"
    return str(installed) if installed.exists() else shutil.which("claude")


@pytest.fixture(scope="session")
def claude_cli() -> str:
    """The ``claude`` executable and proof that it runs (``--version`` works offline)."""
    path = _find_claude()
    reason = ("the Claude Code CLI is not installed: run scripts/install_claude_cli.sh "
              "(or point $CLAUDE_CLI at a claude executable)")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                             env={"PATH": os.environ.get("PATH", ""), "DISABLE_AUTOUPDATER": "1"},
                             check=False)
    assert version.returncode == 0, f"{path} --version failed: {version.stderr}"
    return path


@pytest.fixture
def standin() -> Iterator[MessagesStandIn]:
    with MessagesStandIn(reply=_reply) as server:
        yield server


def _reply(body: dict[str, Any]) -> str:
    """The first turn gets REPLY; a resumed turn says which turn it is, to tell them apart."""
    turns = sum(1 for m in body.get("messages", []) if m.get("role") == "user")
    return REPLY if turns <= 1 else f"Second turn answered, {turns} prompts seen."


@pytest.fixture
def scratch(tmp_path: Path, desktop: DesktopSession, standin: MessagesStandIn,
            ) -> tuple[Path, dict[str, str]]:
    """A project dir and the environment for both claude-notify and claude: scratch HOME,
    the stand-in as the API, the test desktop, and a short Stop debounce."""
    home, project = tmp_path / "home", tmp_path / "work" / PROJECT
    home.mkdir()
    project.mkdir(parents=True)
    base = {k: v for k, v in desktop.env.items() if not _FOREIGN.match(k)}
    env = cli_env(tmp_path, base,
                  HOME=str(home),
                  CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"),
                  CLAUDE_NOTIFY_CLAUDE_DEBOUNCE="0.2",
                  ANTHROPIC_BASE_URL=standin.url,
                  ANTHROPIC_API_KEY="sk-ant-test-0000000000000000000000",
                  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                  DISABLE_AUTOUPDATER="1")
    return project, env


def _claude(claude_cli: str, args: list[str], *, project: Path, env: dict[str, str],
            debug_log: Path, stdin: str | None = None) -> tuple[dict[str, Any], str]:
    """One ``claude -p`` turn; its parsed JSON result and its stderr."""
    result = subprocess.run(
        [claude_cli, "-p", *args, "--output-format", "json", "--debug-file", str(debug_log)],
        cwd=project, env=env, input=stdin or "", capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 0, f"claude failed ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout), result.stderr


def _transcript(env: dict[str, str], session_id: str) -> list[dict[str, Any]]:
    (path,) = Path(env["HOME"], ".claude", "projects").glob(f"*/{session_id}.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _hook_problems(*, stdout: dict[str, Any], stderr: str, transcript: list[dict[str, Any]],
                   debug_log: Path) -> list[str]:
    """Every trace of a failing hook Claude Code left: in its output, in the transcript (the
    ``hook_*_error`` attachments and the Stop summary's ``hookErrors``) and in its debug log."""
    problems = [f"output: {text}" for text in (json.dumps(stdout), stderr)
                if "hook error" in text.lower()]
    for entry in transcript:
        kind = str((entry.get("attachment") or {}).get("type", ""))
        if kind.startswith("hook_") and any(w in kind for w in ("error", "cancel", "timeout")):
            problems.append(f"transcript: {entry['attachment']}")
        if entry.get("subtype") == "stop_hook_summary" and entry.get("hookErrors"):
            problems.append(f"transcript: {entry['hookErrors']}")
    log = debug_log.read_text(encoding="utf-8", errors="replace") if debug_log.exists() else ""
    problems += [f"debug log: {line}" for line in log.splitlines()
                 if "[ERROR]" in line and "hook" in line.lower()]
    problems += [f"debug log: {m.group(0)}" for m in re.finditer(
        r"Hooks: \w+ \[[^\]]*claude.notify[^\]]*\] finished with status (\d+)", log)
        if m.group(1) != "0"]
    return problems


def _our_stop_hook_ran(transcript: list[dict[str, Any]], command: str) -> bool:
    """Claude Code's own record that it ran our Stop handler (not just that one was listed)."""
    return any(info.get("command") == command
               for entry in transcript if entry.get("subtype") == "stop_hook_summary"
               for info in entry.get("hookInfos", []))


def _install(project: Path, env: dict[str, str]) -> str:
    """``claude-notify claude install --user`` as the user would; returns our hook command."""
    done = run_cli(["claude", "install", "--user"], env=env, cwd=project)
    assert done.returncode == 0, done.stderr.decode()
    settings = json.loads(Path(env["HOME"], ".claude", "settings.json").read_text("utf-8"))
    events = installed_events(settings)
    assert set(events) == set(DEFAULT_EVENTS)
    (command,) = {c for commands in events.values() for c in commands}
    return command


@pytest.mark.desktop
def test_a_claude_turn_notifies_with_claudes_reply(
        claude_cli: str, scratch: tuple[Path, dict[str, str]], standin: MessagesStandIn,
        desktop: DesktopSession, tmp_path: Path) -> None:
    project, env = scratch
    command = _install(project, env)
    mark = desktop.marker()

    result, stderr = _claude(claude_cli, ["say hi"], project=project, env=env,
                             debug_log=tmp_path / "claude-debug.log")

    assert (result["type"], result["subtype"], result["is_error"]) == ("result", "success", False)
    assert result["result"] == REPLY
    assert standin.messages(), "claude talked to the stand-in"
    assert standin.messages()[-1]["messages"][0]["role"] == "user"
    got = desktop.wait_for(lambda n: f"Claude finished in {PROJECT}" in n["summary"],
                           since=mark, timeout=15)
    assert REPLY in got["body"], got
    # The duration suffix needs the prompt time, which only our UserPromptSubmit hook records.
    assert re.search(rf"Claude finished in {PROJECT} · \S", got["summary"]), got["summary"]
    transcript = _transcript(env, result["session_id"])
    assert _our_stop_hook_ran(transcript, command), "Claude Code ran our Stop hook"
    assert _hook_problems(stdout=result, stderr=stderr, transcript=transcript,
                          debug_log=tmp_path / "claude-debug.log") == []
    finished = [n for n in desktop.notifications_since(mark) if "finished" in n["summary"]]
    assert len(finished) == 1, finished
    hook_log = Path(env["CLAUDE_NOTIFY_STATE_DIR"], "hook.log")
    assert not hook_log.exists() or not hook_log.read_text(encoding="utf-8").strip()


@pytest.mark.desktop
def test_a_resumed_turn_notifies_again_with_its_own_reply(
        claude_cli: str, scratch: tuple[Path, dict[str, str]], standin: MessagesStandIn,
        desktop: DesktopSession, tmp_path: Path) -> None:
    project, env = scratch
    _install(project, env)
    mark = desktop.marker()
    first, _ = _claude(claude_cli, ["say hi"], project=project, env=env,
                       debug_log=tmp_path / "first.log")
    desktop.wait_for(lambda n: REPLY in n["body"], since=mark, timeout=15)
    mark = desktop.marker()

    second, stderr = _claude(claude_cli, ["--resume", first["session_id"]], project=project,
                             env=env, debug_log=tmp_path / "second.log",
                             stdin="--and one more thing")

    assert second["is_error"] is False
    assert second["result"].startswith("Second turn answered")
    got = desktop.wait_for(lambda n: f"Claude finished in {PROJECT}" in n["summary"],
                           since=mark, timeout=15)
    assert got["body"] == second["result"]
    assert standin.messages()[-1]["messages"][-1]["content"], "the resumed prompt reached it"
    assert _hook_problems(stdout=second, stderr=stderr,
                          transcript=_transcript(env, second["session_id"]),
                          debug_log=tmp_path / "second.log") == []


def test_without_a_desktop_claude_code_writes_our_notification_to_its_terminal(
        claude_cli: str, standin: MessagesStandIn, tmp_path: Path) -> None:
    """Over SSH or in a container the hook answers with ``terminalSequence``; Claude Code writes
    it to its own terminal. Only interactive sessions have one (``-p`` drops the sequence), so
    this runs ``claude "say hi"`` under a pty, as a user in Ghostty (OSC 777) would."""
    home, project = tmp_path / "home", tmp_path / "work" / PROJECT
    project.mkdir(parents=True)
    key = "sk-ant-test-0000000000000000000000"
    _skip_first_run_dialogs(home, project, key)
    env = cli_env(tmp_path)  # no DISPLAY, no D-Bus: no desktop to reach
    env = {k: v for k, v in env.items() if not _FOREIGN.match(k) and k != "WAYLAND_DISPLAY"}
    env |= {"HOME": str(home), "TERM": "xterm-256color", "TERM_PROGRAM": "ghostty",
            "ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    _install(project, env)

    screen = _run_in_pty([claude_cli, "say hi"], cwd=project, env=env,
                         until=re.compile(rb"\x1b\]777;notify;[^\x07]*\x07"), timeout=60)

    (sequence,) = re.findall(rb"\x1b\]777;notify;[^\x07]*\x07", screen)
    title, body = sequence[len(b"\x1b]777;notify;"):-1].decode().split(";")
    assert f"Claude finished in {PROJECT}" in title
    assert body == REPLY
    assert standin.messages(), "claude talked to the stand-in"


def _skip_first_run_dialogs(home: Path, project: Path, key: str) -> None:
    """What a user's ``~/.claude.json`` holds after onboarding, approving the API key (by its
    last 20 characters) and trusting the project; otherwise an interactive start asks first."""
    home.mkdir(parents=True, exist_ok=True)
    state = {"hasCompletedOnboarding": True, "theme": "dark",
             "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
             "projects": {str(project.resolve()): {"hasTrustDialogAccepted": True}}}
    (home / ".claude.json").write_text(json.dumps(state), encoding="utf-8")


def _run_in_pty(argv: list[str], *, cwd: Path, env: dict[str, str], until: re.Pattern[bytes],
                timeout: float) -> bytes:
    """Run ``argv`` on a new pty until its output matches ``until``; everything it wrote.

    Popen rather than ``pty.fork``: forking the threaded test process (the stand-in) is unsafe.
    """
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while not until.search(out):
            if time.monotonic() >= deadline:
                screen = re.sub(rb"\x1b\[[0-9;?>]*[A-Za-z]", b" ", out)[-1500:]
                pytest.fail(f"no match within {timeout}s; the screen ended with {screen!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the pty
                    chunk = b""
                if not chunk:
                    pytest.fail(f"{argv[0]} exited ({proc.wait()}) before the match")
                out += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        os.close(master)
    return out
