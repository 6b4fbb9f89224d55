"""The parts of Claude Code's hook schema approvals rely on, read back from the real CLI.

If a new Claude Code version renames a field, stops sending one, or changes what ``defer`` does,
these tests say which, instead of approvals quietly falling back to the terminal. A recording
hook (a few lines of Python) stands in for ours, so what is checked is Claude Code alone:

* ``PreToolUse`` brings ``tool_name``, ``tool_input`` and ``tool_use_id``; ``PermissionRequest``
  brings ``tool_name`` and ``tool_input`` (and ``permission_suggestions`` entries with a
  ``type`` and a ``destination`` when there are any); a ``deny`` decision's message reaches the
  model and the call is listed in ``permission_denials``.
* A ``PreToolUse`` ``defer`` ends the run with ``terminal_reason: "tool_deferred"`` and
  ``deferred_tool_use`` (``id``, ``name``, ``input``), nothing run; ``--resume`` with no prompt
  asks ``PreToolUse`` again for the same ``tool_use_id`` (and deferred again, says so in
  ``stop_reason``).
* Interactive only (``-p`` offers neither tool): ``AskUserQuestion``'s ``PermissionRequest``
  brings ``questions`` (``question``, ``header``, ``options`` with ``label``, ``multiSelect``),
  and ``allow`` with the call's input plus ``answers`` (question text → label) is the answer the
  model reads; ``ExitPlanMode``'s brings the plan file's text as ``plan``, and ``allow`` with the
  call's own input as ``updatedInput`` leaves plan mode. Once run, both calls' ``PostToolUse``
  input differs from the asked one (approvals withdraw them by the tool's name).

The CLI comes from ``scripts/install_claude_cli.sh`` (or ``$CLAUDE_CLI``); without it the tests
skip locally and fail under ``CI``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_standin import MessagesStandIn, ToolCall
from test_claude_e2e import _FOREIGN, _find_claude

RECORDER = """
import json, pathlib, sys
where = pathlib.Path(sys.argv[1])
payload = json.load(sys.stdin)
event = payload["hook_event_name"]
n = len(list(where.glob(event + "-*.json")))
(where / f"{event}-{n}.json").write_text(json.dumps(payload))
answer = (where / f"answer-{event}.json")
if answer.exists():
    print(answer.read_text())
"""


@pytest.fixture(scope="module")
def claude_cli() -> str:
    path = _find_claude()
    if path is None:
        reason = "the Claude Code CLI is not installed: run scripts/install_claude_cli.sh"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def run(tmp_path: Path, claude_cli: str) -> Iterator[Any]:
    """``run(args, stdin)``: one ``claude -p`` turn in a scratch HOME whose only hooks are the
    recorder's; Bash ``touch marker`` is what the model asks for."""
    home, project, seen = tmp_path / "home", tmp_path / "proj", tmp_path / "seen"
    for made in (home / ".claude", project, seen):
        made.mkdir(parents=True)
    (tmp_path / "record.py").write_text(RECORDER)
    command = f"{sys.executable} {tmp_path / 'record.py'} {seen}"
    handler = [{"hooks": [{"type": "command", "command": command, "timeout": 30}]}]
    (home / ".claude" / "settings.json").write_text(json.dumps(
        {"hooks": {"PreToolUse": handler, "PermissionRequest": handler}}))

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Tool said: " + json.dumps([b.get("content") for b in last])
        return ToolCall("Bash", {"command": "touch marker", "description": "Make a marker"})

    with MessagesStandIn(reply=reply) as standin:
        env = {k: v for k, v in os.environ.items() if not _FOREIGN.match(k)} | {
            "HOME": str(home), "ANTHROPIC_BASE_URL": standin.url,
            "ANTHROPIC_API_KEY": "sk-ant-test-0000000000000000000000",
            "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        version = subprocess.run([claude_cli, "--version"], env=env, capture_output=True,
                                 text=True, timeout=60, check=False).stdout.strip()

        def turn(args: list[str], stdin: str = "") -> dict[str, Any]:
            done = subprocess.run([claude_cli, "-p", *args, "--output-format", "json",
                                   "--permission-mode", "default"], cwd=project, env=env,
                                  input=stdin, capture_output=True, text=True, timeout=120,
                                  check=False)
            assert done.returncode == 0, f"claude {version}: {done.stderr}"
            result: dict[str, Any] = json.loads(done.stdout)
            return result

        turn.seen = seen  # type: ignore[attr-defined]
        turn.project = project  # type: ignore[attr-defined]
        turn.version = version  # type: ignore[attr-defined]
        turn.standin = standin  # type: ignore[attr-defined]
        yield turn


def _payloads(seen: Path, event: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(seen.glob(f"{event}-*.json"))]


def test_permission_request_payload_and_deny_decision(run: Any) -> None:
    deny = {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {
        "behavior": "deny", "message": "Denied from Telegram by the owner"}}}
    (run.seen / "answer-PermissionRequest.json").write_text(json.dumps(deny))
    result = run(["make the marker"])
    version = run.version
    [pre] = _payloads(run.seen, "PreToolUse")
    assert {"session_id", "cwd", "hook_event_name", "tool_name", "tool_input",
            "tool_use_id"} <= set(pre), f"PreToolUse of {version}: {sorted(pre)}"
    [asked] = _payloads(run.seen, "PermissionRequest")
    assert {"session_id", "cwd", "hook_event_name", "tool_name", "tool_input"} <= set(asked), (
        f"PermissionRequest of {version}: {sorted(asked)}")
    assert (asked["tool_name"], asked["tool_input"]["command"]) == ("Bash", "touch marker")
    for suggestion in asked.get("permission_suggestions") or []:
        assert {"type", "destination"} <= set(suggestion), (version, suggestion)
    assert not (run.project / "marker").exists()
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"], version
    said = json.dumps(run.standin.messages()[-1]["messages"][-1]["content"])
    assert "Denied from Telegram by the owner" in said, version


def test_pre_tool_use_defer_and_resume(run: Any) -> None:
    defer = {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                                    "permissionDecision": "defer"}}
    (run.seen / "answer-PreToolUse.json").write_text(json.dumps(defer))
    result = run(["make the marker"])
    version = run.version
    assert result.get("terminal_reason") == "tool_deferred", (version, result)
    call = result["deferred_tool_use"]
    assert {"id", "name", "input"} <= set(call), (version, call)
    assert (call["name"], call["input"]["command"]) == ("Bash", "touch marker")
    assert not (run.project / "marker").exists()
    assert _payloads(run.seen, "PermissionRequest") == []
    again = run(["--resume", result["session_id"]])
    # 2.1.332 says so in stop_reason only on a resumed run (terminal_reason is left out).
    assert "tool_deferred" in (again.get("terminal_reason"), again.get("stop_reason")), (
        version, again)
    ids = [p["tool_use_id"] for p in _payloads(run.seen, "PreToolUse")]
    assert ids == [call["id"], call["id"]], (version, ids)


ANSWERING = """
import json, pathlib, sys
where = pathlib.Path(sys.argv[1])
payload = json.load(sys.stdin)
event, tool = payload["hook_event_name"], payload.get("tool_name", "")
n = len(list(where.glob(f"{event}-{tool}-*.json")))
(where / f"{event}-{tool}-{n}.json").write_text(json.dumps(payload))
if event == "PermissionRequest" and tool == "AskUserQuestion":
    first = payload["tool_input"]["questions"][0]
    answers = {first["question"]: first["options"][1]["label"]}
    print(json.dumps({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {
        "behavior": "allow", "updatedInput": {**payload["tool_input"], "answers": answers}}}}))
if event == "PermissionRequest" and tool == "ExitPlanMode":
    print(json.dumps({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {
        "behavior": "allow", "updatedInput": payload["tool_input"]}}}))
"""


def test_plan_and_question_payloads_and_answers(tmp_path: Path, claude_cli: str) -> None:
    """One interactive session in plan mode, under tmux: the model asks a question, writes its
    plan and asks to leave plan mode; a recording hook answers both as approvals do."""
    import re
    import shutil
    import time

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    home, project, seen = tmp_path / "home", tmp_path / "proj", tmp_path / "seen"
    for made in (home / ".claude", project, seen):
        made.mkdir(parents=True)
    key = "sk-ant-test-0000000000000000000000"
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark",
        "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
        "projects": {str(project.resolve()): {"hasTrustDialogAccepted": True}}}))
    (tmp_path / "answer.py").write_text(ANSWERING)
    command = f"{sys.executable} {tmp_path / 'answer.py'} {seen}"
    handler = [{"hooks": [{"type": "command", "command": command, "timeout": 30}]}]
    (home / ".claude" / "settings.json").write_text(json.dumps(
        {"hooks": {"PermissionRequest": handler, "PostToolUse": handler}}))
    plan = "# Plan\n\n1. Edit app.py\n"
    question = {"question": "Which color?", "header": "Color", "multiSelect": False,
                "options": [{"label": "Red", "description": "warm"},
                            {"label": "Blue", "description": "cool"}]}

    def reply(body: dict[str, Any]) -> str | ToolCall:
        messages = body["messages"]
        done = sum(1 for m in messages if isinstance(m["content"], list)
                   and any(b.get("type") == "tool_result" for b in m["content"]))
        if done == 0:
            return ToolCall("AskUserQuestion", {"questions": [question]})
        if done == 1:
            path = re.search(r"(/[^\s\"\\]*/plans/[^\s\"\\]*\.md)", json.dumps(messages))
            assert path is not None, "no plan file named"
            return ToolCall("Write", {"file_path": path.group(1), "content": plan})
        return ToolCall("ExitPlanMode", {}) if done == 2 else "Done."

    server = f"cn-schema-{os.getpid()}"
    with MessagesStandIn(reply=reply) as standin:
        env = {k: v for k, v in os.environ.items() if not _FOREIGN.match(k)
               and not k.startswith("TMUX")} | {
            "HOME": str(home), "TERM": "xterm-256color", "ANTHROPIC_BASE_URL": standin.url,
            "ANTHROPIC_API_KEY": key, "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        subprocess.run(["tmux", "-L", server, "-f", "/dev/null", "new-session", "-d", "-x", "160",
                        "-y", "50", "-c", str(project), claude_cli, "--permission-mode", "plan",
                        "go"], env=env, check=True, timeout=30)
        try:
            deadline = time.monotonic() + 120
            while "Exited Plan Mode" not in json.dumps(standin.messages()[-1:]):
                assert time.monotonic() < deadline, (
                    "the session did not get past the plan: " + json.dumps(
                        [m["messages"][-1]["content"] for m in standin.messages()])[-3000:])
                time.sleep(0.2)
        finally:
            subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True,
                           timeout=30, check=False)
    said = json.dumps([m["messages"][-1]["content"] for m in standin.messages()])
    assert '\\"Which color?\\"=\\"Blue\\"' in said, said  # the answer reached the model
    [asked] = _payloads(seen, "PermissionRequest-AskUserQuestion")
    assert asked["tool_input"] == {"questions": [question]}, asked
    [planned] = _payloads(seen, "PermissionRequest-ExitPlanMode")
    assert planned["tool_input"]["plan"] == plan, planned
    [ran] = _payloads(seen, "PostToolUse-ExitPlanMode")
    assert ran["tool_input"] != planned["tool_input"]
    [answered] = _payloads(seen, "PostToolUse-AskUserQuestion")
    assert answered["tool_input"]["answers"] == {"Which color?": "Blue"}
