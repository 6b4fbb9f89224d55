"""Approvals end to end with real processes: the server (`claude-notify server`), the agent
(`claude-notify agent` with ``claude.approvals = "phone"``), Claude Code's permission hook
(`claude-notify hook` fed a ``PermissionRequest`` payload on stdin, as Claude Code runs it) and
the Telegram stand-in as the owner's phone.

What each test proves: the hook prints Claude Code's decision exactly when the owner pressed
a button on the card, and only for the call it asked about; a press by anyone else, a press
after the terminal answered, an agent that is down or an answer that never comes all leave the
hook silent (the terminal's dialog decides), quickly."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_standin import MessagesStandIn, ToolCall
from cloud_kit import Mailbox, wait_for
from relay_kit import AgentProc, Server, api, cli, email, user_env
from standins.telegram import TOKEN, TelegramStandIn
from tg_kit import OWNER, STRANGER, update

from claude_notify.claude.approval import digest

HOOK_SECRET = "approvals-hook-secret_1"  # noqa: S105 - the test bot's webhook secret
HOOK = {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
SESSION = "0b8e4a52-3c1d-4f7e-9a61-2f4d5e6c7b80"
_CHATS = itertools.count(6100)
ALWAYS = {"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "make test"}],
          "behavior": "allow", "destination": "session"}
SAVED = {"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "make:*"}],
         "behavior": "allow", "destination": "localSettings"}


@pytest.fixture(scope="module")
def telegram(module_db_url: str) -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn(per_chat_interval_s=0)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox,
                  telegram: TelegramStandIn) -> Iterator[Server]:
    srv = Server.make(module_db_url, module_smtp, CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN=TOKEN,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_API_BASE=telegram.base_url,
                      CLAUDE_NOTIFY_SERVER_TELEGRAM_WEBHOOK_SECRET=HOOK_SECRET)
    srv.start()
    yield srv
    srv.stop()


class Phone:
    """A pro user with a linked Telegram chat, a registered agent with approvals on, and the
    hook as Claude Code would run it."""

    def __init__(self, server: Server, telegram: TelegramStandIn, home: Path,
                 timeout: str = "60s", on: tuple[str, ...] = ("finished",)) -> None:
        self.server, self.telegram, self.chat = server, telegram, next(_CHATS)
        self.token = server.admin("create-user", email(), "--plan", "pro")
        self.env = user_env(home)
        (home / "config.toml").write_text(
            f'[claude]\napprovals = "phone"\napproval_timeout = "{timeout}"\n')
        cli(["login", "--server", server.url, "--token"], self.env,
            stdin=self.token.encode() + b"\n")
        made = api(server, self.token, "POST", "/v1/channels",
                   json={"type": "telegram", "config": {}, "rules": {"on": list(on)}})
        code = api(server, self.token, "POST", f"/v1/channels/{made.json()['id']}/link").json()
        assert self.webhook(update(code["command"], chat=self.chat)) == 200
        wait_for(lambda: len(telegram.sent_to(self.chat)) == 1, what="the chat to be linked")
        cli(["agent", "--register"], self.env)
        self.agent = AgentProc(self.env, home, home / "agent.log")
        self.socket = home / "state" / "agent.sock"

    def start_agent(self) -> None:
        self.agent.start()
        wait_for(self.socket.exists, what="the agent's approval socket")
        assert self.socket.stat().st_mode & 0o777 == 0o600

    def webhook(self, body: dict[str, Any]) -> int:
        return httpx.post(f"{self.server.url}/v1/telegram/webhook", json=body, headers=HOOK,
                          timeout=10).status_code

    def hook(self, event: str, **fields: Any) -> subprocess.Popen[bytes]:
        payload = {"session_id": SESSION, "transcript_path": "/dev/null",
                   "cwd": "/srv/project", "hook_event_name": event} | fields
        proc = subprocess.Popen([sys.executable, "-m", "claude_notify", "hook"], env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        proc.stdin = None  # sent: communicate() only reads
        return proc

    def ask(self, command: str, suggestions: list[Any] | None = None) -> subprocess.Popen[bytes]:
        return self.hook("PermissionRequest", tool_name="Bash",
                         tool_input={"command": command, "description": "the model's words"},
                         permission_suggestions=suggestions or [])

    def cards(self, n: int = 1) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = wait_for(
            lambda: len(c := [m for m in self.telegram.sent_to(self.chat)
                              if m["text"].startswith("🔐")]) >= n and c,
            timeout=30, what=f"{n} approval card(s)")
        return found

    def press(self, card: dict[str, Any], button: str, sender: int = OWNER) -> dict[str, Any]:
        rows = card["reply_markup"]["inline_keyboard"]
        data = {b["text"]: b["callback_data"] for row in rows for b in row}[button]
        pressed = self.telegram.callback_query(card["message_id"], data, sender=sender)
        assert self.webhook(pressed) == 200
        answers = self.telegram.answers_for(pressed)
        assert len(answers) == 1
        return answers[0]

    def edited(self, card: dict[str, Any]) -> str:
        edits = wait_for(lambda: self.telegram.edits_of(self.chat, card["message_id"]),
                         timeout=10, what="the card to be edited")
        text: str = edits[-1]["text"]
        return text


@pytest.fixture
def phone(shared_server: Server, telegram: TelegramStandIn, tmp_path: Path) -> Iterator[Phone]:
    made = Phone(shared_server.running(), telegram, tmp_path)
    yield made
    made.agent.stop()


def finished(proc: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    assert err == b"", err
    return proc.returncode, out.decode()


def test_allow_from_the_phone_reaches_the_hook_and_a_stranger_cannot(phone: Phone) -> None:
    phone.start_agent()
    hook = phone.ask("make deploy")
    [card] = phone.cards()
    assert "make deploy" in card["text"] and "the model's words" not in card["text"]
    assert phone.press(card, "Allow", sender=STRANGER) == {
        "callback_query_id": phone.telegram.callback_answers[-1]["callback_query_id"]}
    assert hook.poll() is None  # still waiting: the stranger answered nothing
    assert phone.press(card, "Allow")["text"] == "Allowed."
    assert finished(hook) == (0, json.dumps({"hookSpecificOutput": {
        "hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}) + "\n")
    assert phone.edited(card).endswith("✅ Allowed")
    assert phone.press(card, "Deny")["text"] == "Already answered."
    audit = api(phone.server, phone.token, "GET", "/v1/audit").json()
    assert [(a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("asked", "agent"), ("refused", f"telegram:{STRANGER}"), ("allowed", f"telegram:{OWNER}")]


def test_deny_and_always_from_the_phone_answered_out_of_order(phone: Phone) -> None:
    phone.start_agent()
    first = phone.ask("rm -rf build")
    wait_for(lambda: phone.cards(1), what="the first card")
    second = phone.ask("make test", [SAVED, ALWAYS])
    deny_card, always_card = phone.cards(2)
    assert "make test" in always_card["text"]
    assert phone.press(always_card, "Always in this session")["text"] == (
        "Allowed for this session.")
    # Of the two suggestions only the session one is offered, and it comes back verbatim.
    assert json.loads(finished(second)[1])["hookSpecificOutput"]["decision"] == {
        "behavior": "allow", "updatedPermissions": [ALWAYS]}
    assert first.poll() is None
    assert phone.press(deny_card, "Deny")["text"] == "Denied."
    assert json.loads(finished(first)[1])["hookSpecificOutput"]["decision"] == {
        "behavior": "deny", "message": "Denied from Telegram by the owner"}


def test_the_terminal_answering_first_withdraws_the_card(phone: Phone) -> None:
    phone.start_agent()
    hook = phone.ask("make deploy")
    [card] = phone.cards()
    answered_at = time.monotonic()
    # The user pressed 1 in the dialog: the tool ran and PostToolUse fired for the same call.
    post = phone.hook("PostToolUse", tool_name="Bash", tool_use_id="toolu_01",
                      tool_input={"command": "make deploy", "description": "the model's words"},
                      tool_response={"stdout": ""})
    assert finished(post) == (0, "")
    assert finished(hook) == (0, "")  # the waiting hook lets go, printing nothing
    assert phone.edited(card).endswith("↩️ Answered in the terminal")
    assert time.monotonic() - answered_at < 2.0
    assert phone.press(card, "Allow")["text"] == "Already answered."


def test_a_hook_claude_code_ended_withdraws_its_card(phone: Phone) -> None:
    """Esc at the dialog (or the session quitting) ends the waiting hook: the agent notices its
    end of the socket closed and withdraws the approval, so the card does not wait for a press
    that could no longer apply."""
    phone.start_agent()
    hook = phone.ask("make deploy")
    [card] = phone.cards()
    hook.kill()
    hook.communicate(timeout=10)
    assert phone.edited(card).endswith("↩️ Answered in the terminal")
    assert phone.press(card, "Allow")["text"] == "Already answered."


def test_the_permission_prompt_notification_folds_into_the_pending_card(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    """Claude Code's "needs your permission" Notification (~6 s into the dialog) does not reach
    the phone a second time while its card is there; for a session with nothing pending it
    does, as before (and after it, so the first one had its chance to arrive)."""
    phone = Phone(shared_server.running(), telegram, tmp_path, on=("finished", "needs_input"))
    phone.start_agent()
    hook = phone.ask("make deploy")
    try:
        [card] = phone.cards()
        for session in (SESSION, "another-session"):
            prompt = phone.hook("Notification", message="Claude needs your permission",
                                notification_type="permission_prompt", session_id=session)
            # No desktop here: the local notification goes to the terminal as before.
            assert "Claude needs your permission" in finished(prompt)[1]
        wait_for(lambda: [m for m in telegram.sent_to(phone.chat)
                          if "Claude needs your permission" in m["text"]], timeout=60,
                 what="the other session's permission notification")
        [notified] = [m for m in telegram.sent_to(phone.chat)
                      if "Claude needs your permission" in m["text"]]
        assert phone.press(card, "Allow")["text"] == "Allowed."
        assert finished(hook)[1]
        tasks = api(phone.server, phone.token, "GET", "/v1/tasks").json()["items"]
        assert sorted(t["session_id"] for t in tasks) == ["another-session"], tasks
        assert notified["message_id"] > card["message_id"]
    finally:
        if hook.poll() is None:
            hook.kill()
            hook.communicate()
        phone.agent.stop()


def test_no_answer_in_time_leaves_it_to_the_dialog(shared_server: Server,
                                                   telegram: TelegramStandIn,
                                                   tmp_path: Path) -> None:
    slow = Phone(shared_server.running(), telegram, tmp_path, timeout="2s")
    try:
        slow.start_agent()
        started = time.monotonic()
        hook = slow.ask("make deploy")
        [card] = slow.cards()
        assert finished(hook) == (0, "")
        assert 2.0 <= time.monotonic() - started < 15
        assert "Expired" in slow.edited(card)
        assert slow.press(card, "Allow")["text"] == "Expired: answer in the terminal."
    finally:
        slow.agent.stop()


def test_no_agent_the_hook_is_silent_and_quick(phone: Phone) -> None:
    def timed() -> float:
        began = time.monotonic()
        assert finished(phone.ask("make deploy")) == (0, "")
        return time.monotonic() - began

    without = timed()  # never started: no socket
    phone.start_agent()
    assert phone.agent.proc is not None
    os.killpg(phone.agent.proc.pid, signal.SIGKILL)  # gone without cleaning up its socket
    phone.agent.proc.wait(timeout=10)
    phone.agent.proc = None
    assert phone.socket.exists()
    stale = timed()
    # A whole Python process each time on a loaded machine; the hook's own part is measured by
    # scripts/bench_approvals.py.
    assert without < 2.0 and stale < 2.0, (without, stale)


def test_the_hook_applies_an_answer_only_to_its_own_call() -> None:
    from claude_notify.claude.approval import decision_output

    own = digest("Bash", {"command": "ls"})
    other = digest("Bash", {"command": "rm -rf /"})
    assert decision_output({"state": "allowed", "digest": other}, own=own,
                           suggestions=[]) is None
    assert decision_output({"state": "allowed", "digest": own}, own=own, suggestions=[])
    # An "always" index the hook did not offer is not guessed at.
    assert decision_output({"state": "allowed", "digest": own, "suggestion": 0}, own=own,
                           suggestions=[SAVED]) is None
    assert decision_output({"state": "unavailable", "digest": own}, own=own,
                           suggestions=[]) is None


# --------------------------------------------------------------------------- the real Claude Code


def _claude_cli(server: Server) -> str:
    """The real CLI (its tests are ``one_database``: what Claude Code does does not depend on
    the server's database, and each of them runs it for seconds)."""
    from test_relay_claude import _find_claude

    claude = _find_claude()
    if claude is None:
        if os.environ.get("CI"):
            pytest.fail("the Claude Code CLI is not installed (scripts/install_claude_cli.sh)")
        pytest.skip("the Claude Code CLI is not installed (scripts/install_claude_cli.sh)")
    return claude


@pytest.mark.one_database
@pytest.mark.timeout(300)
@pytest.mark.parametrize("button", ["Allow", "Deny"])
def test_the_real_claude_cli_runs_the_tool_only_when_the_phone_allows_it(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path, button: str
) -> None:
    """``claude -p`` in the default permission mode asks to run Bash; the hooks are those
    ``claude-notify claude install`` wrote; the owner answers on the card."""
    claude = _claude_cli(shared_server)
    home, project = tmp_path / "home", tmp_path / "work" / "proj"
    home.mkdir()
    project.mkdir(parents=True)
    command = "touch phone-allowed"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Bash said: " + json.dumps([b.get("content") for b in last])
        return ToolCall("Bash", {"command": command, "description": "Create a marker file"})

    with MessagesStandIn(reply=reply) as standin:
        phone = Phone(shared_server.running(), telegram, tmp_path)
        try:
            env = {k: v for k, v in phone.env.items()
                   if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE"))} | {
                "HOME": str(home), "ANTHROPIC_BASE_URL": standin.url,
                "ANTHROPIC_API_KEY": "sk-ant-test-0000000000000000000000",
                "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
            phone.env = env
            cli(["claude", "install", "--user"], env, cwd=project)
            written = json.loads((home / ".claude" / "settings.json").read_text())
            [group] = written["hooks"]["PermissionRequest"]
            assert group["hooks"][0]["timeout"] == 60 + 15
            assert {"PostToolUse", "PostToolUseFailure", "SessionEnd"} <= set(written["hooks"])
            phone.start_agent()
            run = subprocess.Popen([claude, "-p", "make the marker", "--output-format", "json",
                                    "--permission-mode", "default"], cwd=project, env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
            try:
                [card] = phone.cards()
                assert command in card["text"] and "Create a marker file" not in card["text"]
                phone.press(card, button)
                out, err = run.communicate(timeout=120)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
            assert run.returncode == 0, err
            result = json.loads(out)
        finally:
            phone.agent.stop()
        said = json.dumps(standin.messages()[-1]["messages"][-1]["content"])
        if button == "Allow":
            assert (project / "phone-allowed").exists()
            assert result["permission_denials"] == []
        else:
            assert not (project / "phone-allowed").exists()
            assert "Denied from Telegram by the owner" in said
            assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"]


@pytest.mark.one_database
@pytest.mark.timeout(300)
@pytest.mark.parametrize("button", ["Allow", "Deny"])
def test_a_relayed_turn_defers_the_call_and_resumes_with_the_phones_answer(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path, button: str
) -> None:
    """A reply to "Claude finished" continues the session with ``claude -p --resume``; the Bash
    call the model asks for is deferred (nothing runs), put to the owner on a card, and the
    session resumed with the answer: Allow runs it once, Deny hands Claude the refusal. Either
    way Claude's final answer is the next notification."""
    claude = _claude_cli(shared_server)
    home, project = tmp_path / "home", tmp_path / "work" / "proj"
    home.mkdir()
    project.mkdir(parents=True)
    command = "echo ran >> ran.txt"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Bash said: " + json.dumps([b.get("content") for b in last])
        if "RUN-BASH" in json.dumps(body["messages"]):
            return ToolCall("Bash", {"command": command, "description": "Append a line"})
        return "First turn done."

    with MessagesStandIn(reply=reply) as standin:
        phone = Phone(shared_server.running(), telegram, tmp_path)
        try:
            env = {k: v for k, v in phone.env.items()
                   if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE"))} | {
                "HOME": str(home), "ANTHROPIC_BASE_URL": standin.url,
                "ANTHROPIC_API_KEY": "sk-ant-test-0000000000000000000000",
                "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
            cli(["agent", "--claude", "--claude-bin", claude, "--dir", str(project)], env,
                cwd=project)
            phone.agent = AgentProc(env, project, tmp_path / "agent.log")
            first = subprocess.run([claude, "-p", "first prompt", "--output-format", "json"],
                                   cwd=project, env=env, capture_output=True, text=True,
                                   timeout=120, check=False)
            assert first.returncode == 0, first.stderr
            session = json.loads(first.stdout)["session_id"]
            # The user's own hooks (PermissionRequest included) are installed too: inside the
            # relayed turn they must neither wait for the phone a second time nor notify.
            cli(["claude", "install", "--user"], env, cwd=project)
            stop = {"session_id": session, "cwd": str(project), "hook_event_name": "Stop",
                    "stop_hook_active": False, "last_assistant_message": "First turn done."}
            cli(["hook"], {**env, "CLAUDE_NOTIFY_CLAUDE_DEBOUNCE": "0", "DISPLAY": ":999",
                           "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"},
                stdin=json.dumps(stop).encode(), cwd=project)
            finished_id = _notified(phone, "First turn done.")
            phone.start_agent()
            assert phone.webhook(update("RUN-BASH please", chat=phone.chat,
                                        reply_to=finished_id)) == 200
            [card] = phone.cards()
            assert command in card["text"] and not (project / "ran.txt").exists()
            assert phone.press(card, button)["text"] == {"Allow": "Allowed.",
                                                          "Deny": "Denied."}[button]
            _notified(phone, "Bash said:")
            assert phone.press(card, "Allow")["text"] == "Already answered."
            assert len(phone.cards()) == 1  # the user's own hooks asked nothing more
        finally:
            phone.agent.stop()
    said = json.dumps(standin.messages()[-1]["messages"][-1]["content"])
    if button == "Allow":
        assert (project / "ran.txt").read_text() == "ran\n"  # once
    else:
        assert not (project / "ran.txt").exists()
        assert "Denied from Telegram by the owner" in said


def _notified(phone: Phone, containing: str) -> int:
    """The Telegram message id of the task notification showing ``containing``, once the
    server recorded it as sent (a reply to it is routed by that record)."""
    shown = wait_for(lambda: [m for m in phone.telegram.sent_to(phone.chat)
                              if containing in m["text"]], timeout=120,
                     what=f"a notification with {containing!r}")
    message_id: int = shown[-1]["message_id"]
    wait_for(lambda: any(n["provider_id"] == str(message_id) and n["status"] == "sent"
                         for n in api(phone.server, phone.token, "GET",
                                      "/v1/notifications").json()["items"]),
             what="the notification to be recorded as sent")
    return message_id


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_a_relayed_turn_in_a_hostile_repository_runs_only_our_hook(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    """What a `git pull` can bring — a PreToolUse hook, an MCP server, an apiKeyHelper and a
    self-approval of Bash — does nothing in a relayed turn with approvals on: the Bash call is
    still deferred to the owner (our hook ran, the repository's allow did not let it through),
    and after Deny none of the repository's markers exist."""
    claude = _claude_cli(shared_server)
    home, project, marks = tmp_path / "home", tmp_path / "work" / "proj", tmp_path / "marks"
    for made in (home, project, marks):
        made.mkdir(parents=True)
    key = "sk-ant-test-0000000000000000000000"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Bash said: " + json.dumps([b.get("content") for b in last])
        if "RUN-BASH" in json.dumps(body["messages"]):
            return ToolCall("Bash", {"command": f"touch {marks}/bash-ran"})
        return "First turn done."

    with MessagesStandIn(reply=reply) as standin:
        phone = Phone(shared_server.running(), telegram, tmp_path)
        try:
            env = {k: v for k, v in phone.env.items()
                   if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE"))} | {
                "HOME": str(home), "ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": key,
                "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
            cli(["agent", "--claude", "--claude-bin", claude, "--dir", str(project)], env,
                cwd=project)
            phone.agent = AgentProc(env, project, tmp_path / "agent.log")
            first = subprocess.run([claude, "-p", "first prompt", "--output-format", "json"],
                                   cwd=project, env=env, capture_output=True, text=True,
                                   timeout=120, check=False)
            assert first.returncode == 0, first.stderr
            session = json.loads(first.stdout)["session_id"]
            (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"repo": {
                "command": "sh", "args": ["-c", f"touch {marks}/mcp-ran; sleep 5"]}}}))
            (project / ".claude").mkdir()
            (project / ".claude" / "settings.json").write_text(json.dumps({
                "apiKeyHelper": f"touch {marks}/helper-ran; echo {key}",
                "hooks": {"PreToolUse": [{"hooks": [
                    {"type": "command", "command": f"touch {marks}/repo-hook-ran"}]}]}}))
            (project / ".claude" / "settings.local.json").write_text(json.dumps({
                "permissions": {"allow": ["Bash"]}, "enableAllProjectMcpServers": True}))
            stop = {"session_id": session, "cwd": str(project), "hook_event_name": "Stop",
                    "stop_hook_active": False, "last_assistant_message": "First turn done."}
            cli(["hook"], {**env, "CLAUDE_NOTIFY_CLAUDE_DEBOUNCE": "0", "DISPLAY": ":999",
                           "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"},
                stdin=json.dumps(stop).encode(), cwd=project)
            finished_id = _notified(phone, "First turn done.")
            phone.start_agent()
            assert phone.webhook(update("RUN-BASH please", chat=phone.chat,
                                        reply_to=finished_id)) == 200
            [card] = phone.cards()
            assert f"touch {marks}/bash-ran" in card["text"]
            assert phone.press(card, "Deny")["text"] == "Denied."
            _notified(phone, "Bash said:")
        finally:
            phone.agent.stop()  # the MCP server, had it started, has long written its marker
    assert sorted(p.name for p in marks.iterdir()) == []


# --------------------------------------------------------------------------- interactive, in tmux


class Tmux:
    """An interactive ``claude`` in a private tmux server, its screen read back as text."""

    def __init__(self, tmp_path: Path, env: dict[str, str], argv: list[str], cwd: Path) -> None:
        self.socket = f"cn-approvals-{os.getpid()}-{next(_CHATS)}"
        self.env = env
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-x", "160", "-y", "50", "-c", str(cwd), *argv], env=env, check=True,
                       timeout=30)

    def screen(self) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p"],
                              capture_output=True, text=True, timeout=30, check=False)
        return done.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", *keys], check=True, timeout=30)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30, check=False)


def _interactive(shared_server: Server, telegram: TelegramStandIn, tmp_path: Path,
                 standin: MessagesStandIn, command: str, timeout: str = "60s",
                 mode: str = "default") -> tuple[Phone, Tmux, Path]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    claude = _claude_cli(shared_server)
    home, project = tmp_path / "home", tmp_path / "work" / "proj"
    project.mkdir(parents=True)
    key = "sk-ant-test-0000000000000000000000"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark",
        "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
        "projects": {str(project.resolve()): {"hasTrustDialogAccepted": True}}}))
    phone = Phone(shared_server.running(), telegram, tmp_path, timeout=timeout)
    env = {k: v for k, v in phone.env.items()
           if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE", "TMUX"))} | {
        "HOME": str(home), "TERM": "xterm-256color", "ANTHROPIC_BASE_URL": standin.url,
        "ANTHROPIC_API_KEY": key, "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    phone.env = env
    cli(["claude", "install", "--user"], env, cwd=project)
    phone.start_agent()
    tmux = Tmux(tmp_path, env, [claude, "--permission-mode", mode, "make the marker"], project)
    return phone, tmux, project


def _dialog(tmux: Tmux) -> str:
    shown: str = wait_for(lambda: s if "1. Yes" in (s := tmux.screen()) else "", timeout=90,
                          what="Claude Code's permission dialog")
    return shown


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_interactive_the_phones_answer_closes_the_dialog(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    command = "touch from-the-phone"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Marker made."
        return ToolCall("Bash", {"command": command, "description": "Create a marker file"})

    with MessagesStandIn(reply=reply) as standin:
        phone, tmux, project = _interactive(shared_server, telegram, tmp_path, standin, command)
        try:
            [card] = phone.cards()
            _dialog(tmux)  # on screen while the hook waits for the phone
            assert phone.press(card, "Allow")["text"] == "Allowed."
            wait_for(lambda: (project / "from-the-phone").exists(), timeout=60,
                     what="the tool to run")
            wait_for(lambda: "1. Yes" not in tmux.screen(), what="the dialog to close")
        finally:
            tmux.close()
            phone.agent.stop()


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_interactive_the_terminal_answering_first_withdraws_the_card_within_2_s(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    command = "touch from-the-terminal"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Marker made."
        return ToolCall("Bash", {"command": command, "description": "Create a marker file"})

    with MessagesStandIn(reply=reply) as standin:
        phone, tmux, project = _interactive(shared_server, telegram, tmp_path, standin, command)
        try:
            [card] = phone.cards()
            _dialog(tmux)
            answered = time.monotonic()
            tmux.keys("1")  # "1. Yes" at the keyboard
            assert "Answered in the terminal" in phone.edited(card)
            assert time.monotonic() - answered < 2.0
            assert (project / "from-the-terminal").exists()
            assert phone.press(card, "Deny")["text"] == "Already answered."
        finally:
            tmux.close()
            phone.agent.stop()


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_always_in_this_session_applies_only_what_claude_offered(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    """With a Bash call that writes into the project, Claude Code 2.1.332 offers two "always"
    answers for the session: add the directory, or switch the session to acceptEdits. The phone
    offers only the first (never a change of the session's whole mode) and applies it verbatim;
    measured here, it does not cover the next Bash call, which Claude Code asks about again
    (a second card), so "always" from the phone is exactly as broad as Claude's own offer."""
    claude = _claude_cli(shared_server)
    home, project = tmp_path / "home", tmp_path / "work" / "proj"
    home.mkdir()
    project.mkdir(parents=True)

    def reply(body: dict[str, Any]) -> str | ToolCall:
        results = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                      and any(b.get("type") == "tool_result" for b in m["content"]))
        if results < 2:
            return ToolCall("Bash", {"command": f"touch marker-{results}"})
        return "Both made."

    with MessagesStandIn(reply=reply) as standin:
        phone = Phone(shared_server.running(), telegram, tmp_path)
        try:
            env = {k: v for k, v in phone.env.items()
                   if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE"))} | {
                "HOME": str(home), "ANTHROPIC_BASE_URL": standin.url,
                "ANTHROPIC_API_KEY": "sk-ant-test-0000000000000000000000",
                "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
            cli(["claude", "install", "--user"], env, cwd=project)
            phone.start_agent()
            run = subprocess.Popen([claude, "-p", "make two markers", "--output-format", "json",
                                    "--permission-mode", "default"], cwd=project, env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
            try:
                [first] = phone.cards()
                assert f"Always in this session: directories {project}" in first["text"]
                assert "acceptEdits" not in first["text"]
                phone.press(first, "Always in this session")
                second = phone.cards(2)[1]
                assert "touch marker-1" in second["text"]
                phone.press(second, "Allow")
                out, err = run.communicate(timeout=120)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
            assert run.returncode == 0, err
            assert json.loads(out)["permission_denials"] == []
        finally:
            phone.agent.stop()
    assert (project / "marker-0").exists() and (project / "marker-1").exists()


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_interactive_no_answer_in_time_leaves_the_dialog_to_decide(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    """``approval_timeout`` passes with nobody answering on the phone: the hook gives up without
    a word, the dialog stays on screen and works (1 runs the tool), the card says it expired."""
    command = "touch after-the-timeout"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Marker made."
        return ToolCall("Bash", {"command": command, "description": "Create a marker file"})

    with MessagesStandIn(reply=reply) as standin:
        phone, tmux, project = _interactive(shared_server, telegram, tmp_path, standin, command,
                                            timeout="3s")
        try:
            [card] = phone.cards()
            _dialog(tmux)
            assert "Expired" in phone.edited(card)  # the agent gave up after 3 s
            assert "1. Yes" in tmux.screen()  # the dialog is still there, still the user's
            assert not (project / "after-the-timeout").exists()
            tmux.keys("1")
            wait_for(lambda: (project / "after-the-timeout").exists(), timeout=60,
                     what="the tool to run from the dialog")
            assert phone.press(card, "Deny")["text"] == "Expired: answer in the terminal."
        finally:
            tmux.close()
            phone.agent.stop()


def _results(standin: MessagesStandIn) -> str:
    """Everything Claude Code sent the model after a tool ran, as one text."""
    return json.dumps([m["messages"][-1]["content"] for m in standin.messages()[1:]])


@pytest.mark.one_database
@pytest.mark.timeout(300)
def test_interactive_a_question_answered_on_the_phone_reaches_the_model(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path
) -> None:
    """The model asks (``AskUserQuestion``); the card has a button per option; the owner's
    choice is the answer Claude Code hands the model, and the terminal's question closes."""
    question = {"questions": [{"question": "Which color <b>now</b>?", "header": "Color",
                               "multiSelect": False,
                               "options": [{"label": "Red", "description": "warm"},
                                           {"label": "Blue", "description": "cool"}]}]}

    def reply(body: dict[str, Any]) -> str | ToolCall:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return "Thanks."
        return ToolCall("AskUserQuestion", question)

    with MessagesStandIn(reply=reply) as standin:
        phone, tmux, _ = _interactive(shared_server, telegram, tmp_path, standin, "")
        try:
            [card] = phone.cards()
            assert card["text"].startswith("🔐 Claude asks you")
            assert "Which color <b>now</b>?" in card["text"] and "2) Blue — cool" in card["text"]
            wait_for(lambda: "Which color" in tmux.screen(), timeout=90,
                     what="Claude Code's question in the terminal")
            assert phone.press(card, "Red", sender=STRANGER).get("text") is None
            assert phone.press(card, "Blue")["text"] == "Answered: Blue."
            said = wait_for(lambda: "Blue" in (r := _results(standin)) and r, timeout=60,
                            what="the answer to reach the model")
            assert '\\"Which color <b>now</b>?\\"=\\"Blue\\"' in said, said
            assert phone.edited(card).endswith("✅ Answered: Blue")
        finally:
            tmux.close()
            phone.agent.stop()


@pytest.mark.one_database
@pytest.mark.timeout(300)
@pytest.mark.parametrize("answer", ["Approve plan", "note"])
def test_interactive_a_plan_approved_or_sent_back_from_the_phone(
    shared_server: Server, telegram: TelegramStandIn, tmp_path: Path, answer: str
) -> None:
    """In plan mode the model writes its plan and calls ``ExitPlanMode``: the card shows the
    plan; Approve plan leaves plan mode (Claude Code's "Exited Plan Mode" reaches the model);
    "Keep planning, with a note…" and the owner's reply to its prompt hand the model the note,
    and the session stays in plan mode."""
    plan = "# Plan\n\n1. Edit <b>app.py</b> & tests\n2. Run `make test`\n"

    def reply(body: dict[str, Any]) -> str | ToolCall:
        messages = body["messages"]
        done = sum(1 for m in messages if isinstance(m["content"], list)
                   and any(b.get("type") == "tool_result" for b in m["content"]))
        if done == 0:
            path = re.search(r"(/[^\s\"\\]*/plans/[^\s\"\\]*\.md)", json.dumps(messages))
            assert path is not None, "Claude Code named no plan file"
            return ToolCall("Write", {"file_path": path.group(1), "content": plan})
        return ToolCall("ExitPlanMode", {}) if done == 1 else "On it."

    with MessagesStandIn(reply=reply) as standin:
        phone, tmux, _ = _interactive(shared_server, telegram, tmp_path, standin, "",
                                      mode="plan")
        try:
            [card] = phone.cards()
            assert card["text"].startswith("🔐 Claude wants to start on this plan")
            assert "1. Edit <b>app.py</b> & tests" in card["text"]
            wait_for(lambda: "Would you like to proceed" in tmux.screen(), timeout=90,
                     what="Claude Code's plan dialog")
            if answer == "Approve plan":
                assert phone.press(card, "Approve plan")["text"] == "Plan approved."
                wait_for(lambda: "Exited Plan Mode" in _results(standin), timeout=60,
                         what="the plan's approval to reach the model")
                assert phone.edited(card).endswith("✅ Plan approved")
            else:
                phone.press(card, "Keep planning, with a note…")
                prompt = wait_for(lambda: next((m for m in telegram.sent_to(phone.chat)
                                                if m["text"].startswith("✍️")), None),
                                  what="the note's prompt")
                assert phone.webhook(update("Split step 2 <i>first</i>", chat=phone.chat,
                                            reply_to=prompt["message_id"])) == 200
                said = wait_for(lambda: "Split step 2" in (r := _results(standin)) and r,
                                timeout=60, what="the note to reach the model")
                assert ("The owner did not approve the plan from Telegram: keep planning: "
                        "Split step 2 <i>first</i>") in said
                assert "Exited Plan Mode" not in said
                assert phone.edited(card).endswith("⛔ Keep planning")
            wait_for(lambda: "Would you like to proceed" not in tmux.screen(),
                     what="the dialog to close")
        finally:
            tmux.close()
            phone.agent.stop()
