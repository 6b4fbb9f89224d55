"""``claude-notify hook`` as Claude Code runs it: a process with JSON on stdin, against dunst.

Payloads are the documented ones from the Claude Code hooks reference (and those observed from
Claude Code 2.1.328), with paths adapted to the test's scratch dirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from desktop import DesktopSession
from helpers import CLI, cli_env

from claude_notify.claude.transcript import last_assistant_text


def hook(payload: object, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return subprocess.run([*CLI, "hook"], input=data, env=env, capture_output=True, timeout=10,
                          check=False)


def _payload(event: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    project = tmp_path / "my-project"
    project.mkdir(exist_ok=True)
    return {"session_id": "abc123", "transcript_path": str(tmp_path / "t.jsonl"),
            "cwd": str(project), "permission_mode": "default", "hook_event_name": event,
            **extra}


@pytest.fixture
def env(desktop: DesktopSession, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, desktop.env, CLAUDE_NOTIFY_CLAUDE_DEBOUNCE="0.3",
                   CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"))


@pytest.mark.desktop
def test_stop_notifies_with_last_message_and_turn_duration(desktop: DesktopSession,
                                                           env: dict[str, str],
                                                           tmp_path: Path) -> None:
    mark = desktop.marker()
    prompt = _payload("UserPromptSubmit", tmp_path, prompt="refactor", prompt_id="p-1")
    assert hook(prompt, env).returncode == 0
    stop = _payload("Stop", tmp_path, stop_hook_active=False, prompt_id="p-1",
                    last_assistant_message="I've completed the <refactoring> & all tests pass.",
                    background_tasks=[], session_crons=[], effort={"level": "medium"})
    result = hook(stop, env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    got = desktop.wait_for(lambda n: "Claude finished" in n["summary"], since=mark)
    assert got["summary"].startswith("✓ Claude finished in my-project · ")
    assert got["body"] == "I've completed the &lt;refactoring&gt; &amp; all tests pass."
    assert got["urgency"] == "normal"
    history = subprocess.run([*CLI, "history", "--json"], env=env, capture_output=True,
                             check=True).stdout.decode().splitlines()
    recorded = json.loads(history[0])
    assert (recorded["source"], recorded["session_id"], recorded["task_id"]) == (
        "claude-code", "abc123", "p-1")


@pytest.mark.desktop
def test_a_new_prompt_cancels_a_pending_stop(desktop: DesktopSession, env: dict[str, str],
                                             tmp_path: Path) -> None:
    env = {**env, "CLAUDE_NOTIFY_CLAUDE_DEBOUNCE": "1.5"}
    mark = desktop.marker()
    assert hook(_payload("Stop", tmp_path, last_assistant_message="first turn"),
                env).returncode == 0
    assert hook(_payload("UserPromptSubmit", tmp_path, prompt="more"), env).returncode == 0
    assert hook(_payload("Stop", tmp_path, last_assistant_message="second turn"),
                env).returncode == 0
    got = desktop.wait_for(lambda n: "Claude finished" in n["summary"], since=mark, timeout=8)
    assert got["body"] == "second turn"
    # A sentinel after the debounce window proves the first Stop never arrived late.
    sentinel = _payload("Notification", tmp_path, message="sentinel",
                        notification_type="idle_prompt")
    assert hook(sentinel, env).returncode == 0
    desktop.wait_for(lambda n: n["body"] == "sentinel", since=mark)
    bodies = [n["body"] for n in desktop.notifications_since(mark)]
    assert "first turn" not in bodies


@pytest.mark.desktop
def test_permission_notification_is_critical(desktop: DesktopSession, env: dict[str, str],
                                             tmp_path: Path) -> None:
    mark = desktop.marker()
    payload = _payload("Notification", tmp_path, message="Claude needs your permission to use Bash",
                       title="Permission needed", notification_type="permission_prompt")
    assert hook(payload, env).returncode == 0
    got = desktop.wait_for(lambda n: "permission" in n["summary"], since=mark)
    assert got["summary"] == "Claude needs your permission · my-project"
    assert got["body"] == "Claude needs your permission to use Bash"
    assert got["urgency"] == "critical"
    mark = desktop.marker()
    idle = _payload("Notification", tmp_path, message="Claude is waiting for your input",
                    notification_type="idle_prompt")
    assert hook(idle, env).returncode == 0
    got = desktop.wait_for(since=mark)
    assert (got["summary"], got["urgency"]) == (
        "Claude is waiting for your input · my-project", "normal")


@pytest.mark.desktop
def test_stop_failure_is_an_error(desktop: DesktopSession, env: dict[str, str],
                                  tmp_path: Path) -> None:
    mark = desktop.marker()
    payload = _payload("StopFailure", tmp_path, error="rate_limit",
                       error_details="429 Too Many Requests",
                       last_assistant_message="API Error: Rate limit reached")
    assert hook(payload, env).returncode == 0
    got = desktop.wait_for(since=mark)
    assert got["summary"] == "✗ Claude stopped in my-project: rate_limit"
    assert got["body"] == "429 Too Many Requests"
    assert got["urgency"] == "critical"


@pytest.mark.desktop
def test_transcript_fallback_for_older_claude_code(desktop: DesktopSession, env: dict[str, str],
                                                   tmp_path: Path) -> None:
    lines = [
        {"parentUuid": None, "isSidechain": False, "type": "user",
         "message": {"role": "user", "content": "say lol"}},
        {"isSidechain": False, "type": "assistant", "message": {
            "role": "assistant", "content": [{"type": "text", "text": "lol, done"}]}},
        {"isSidechain": True, "type": "assistant", "message": {
            "role": "assistant", "content": [{"type": "text", "text": "sidechain chatter"}]}},
        {"isSidechain": False, "type": "assistant", "message": {
            "role": "assistant", "content": [{"type": "tool_use", "name": "Bash"}]}},
        {"type": "summary", "summary": "x"},
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken")
    assert last_assistant_text(tmp_path / "t.jsonl") == "lol, done"
    mark = desktop.marker()
    assert hook(_payload("Stop", tmp_path, stop_hook_active=False), env).returncode == 0
    got = desktop.wait_for(lambda n: "Claude finished" in n["summary"], since=mark)
    assert got["body"] == "lol, done"


@pytest.mark.desktop
def test_stop_hook_active_and_short_turns_are_quiet(desktop: DesktopSession,
                                                    env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "CLAUDE_NOTIFY_CLAUDE_MIN_DURATION": "1h"}
    mark = desktop.marker()
    assert hook(_payload("Stop", tmp_path, stop_hook_active=True,
                         last_assistant_message="looping"), env).returncode == 0
    assert hook(_payload("UserPromptSubmit", tmp_path, prompt="quick"), env).returncode == 0
    assert hook(_payload("Stop", tmp_path, last_assistant_message="quick one"),
                env).returncode == 0
    sentinel = _payload("Notification", tmp_path, message="sentinel",
                        notification_type="idle_prompt")
    assert hook(sentinel, env).returncode == 0
    desktop.wait_for(lambda n: n["body"] == "sentinel", since=mark)
    bodies = [n["body"] for n in desktop.notifications_since(mark)]
    assert bodies == ["sentinel"]


@pytest.mark.desktop
def test_mute_holds_back_but_records(desktop: DesktopSession, env: dict[str, str],
                                     tmp_path: Path) -> None:
    subprocess.run([*CLI, "mute", "10m"], env=env, check=True, capture_output=True)
    try:
        assert hook(_payload("StopFailure", tmp_path, error="billing_error"),
                    env).returncode == 0
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run([*CLI, "history", "--json"], env=env, capture_output=True,
                                 check=True).stdout.decode().splitlines()
            if out or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        subprocess.run([*CLI, "unmute"], env=env, check=True, capture_output=True)
    entry = json.loads(out[0])
    assert entry["notified"] is False
    assert entry["muted"].startswith("muted until ")


@pytest.mark.parametrize("stdin", [b"", b"not json", b"[1,2]", b"{\"hook_event_name\": 5}",
                                   b"\xff\xfe", b"{" * 10000])
def test_malformed_input_exits_0_silently_and_is_logged(tmp_path: Path, stdin: bytes) -> None:
    env = cli_env(tmp_path)
    result = hook(stdin, env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    if stdin != b"{\"hook_event_name\": 5}":  # a valid object of an unknown event: ignored
        log = (tmp_path / "state" / "hook.log").read_text()
        assert " hook: " in log


def test_hostile_session_id_cannot_escape_the_state_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    payload = _payload("UserPromptSubmit", tmp_path, prompt="x")
    payload["session_id"] = "../../../../tmp/evil"
    assert hook(payload, env).returncode == 0
    written = list((tmp_path / "state" / "claude").iterdir())
    assert [p.name for p in written] == [".._.._.._.._tmp_evil.turn"]


def test_over_ssh_hands_back_a_terminal_sequence(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SSH_CONNECTION="10.0.0.1 5 10.0.0.2 22", TERM="xterm-256color")
    payload = _payload("Notification", tmp_path, message="Claude needs your permission",
                       notification_type="permission_prompt")
    result = hook(payload, env)
    assert result.returncode == 0
    output = json.loads(result.stdout)
    assert output == {"terminalSequence": "\x1b]777;notify;Claude needs your permission · "
                      "my-project;Claude needs your permission\x07"}


def test_hook_is_the_lean_path() -> None:
    code = ("import sys, io\nfrom claude_notify.cli import main\n"
            "sys.stdin = io.TextIOWrapper(io.BytesIO(b'{}'))\n"
            "try:\n    main(['hook'])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(m for m in ('click', 'sqlite3', 'jeepney', 'tomlkit') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=cli_env(Path("/nonexistent")))
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("kind", ["endless", "fifo", "huge-line"])
def test_the_transcript_reader_reads_a_bounded_amount(tmp_path: Path, kind: str) -> None:
    """A transcript path that is a device without end, a FIFO nobody writes, or a file whose
    last line is huge: the reader answers at once, within a 256 MB address-space limit."""
    path = tmp_path / "transcript.jsonl"
    expected = None
    if kind == "endless":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        last = {"type": "assistant", "message": {"content": "x" * (64 << 20)}}
        with path.open("w") as f:
            f.write(json.dumps({"type": "assistant", "message": {"content": "early"}}) + "\n")
            f.write(json.dumps(last) + "\n")
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))\n"
            "from claude_notify.claude.transcript import last_assistant_text\n"
            "print(repr(last_assistant_text(sys.argv[1])))\n")
    try:
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                                timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the reader blocked")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode().strip() == repr(expected)
