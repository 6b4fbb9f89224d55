"""Merging our hooks into Claude Code's settings files, without harming anything else in them.

The pure edits are driven by hypothesis over arbitrary settings documents of the documented shape;
the file handling (backup, atomic write, refusal of broken files, exit codes) through the real
``claude-notify claude …`` command in a subprocess, as a user would run it.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import cli_env, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_notify.claude.settings import (
    DEFAULT_EVENTS,
    EVENTS,
    MATCHERS,
    TIMEOUT,
    install,
    install_hooks,
    installed_events,
    is_ours,
    parse_events,
    uninstall,
    uninstall_hooks,
)
from claude_notify.errors import UsageError

CMD = "/opt/venv/bin/claude-notify hook"
USER_HOOK = {"type": "command", "command": "notify-send 'Claude is done'"}
ORIGINAL = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "opus",
    "permissions": {"allow": ["Bash(git diff *)"], "deny": []},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}],
        "Stop": [{"hooks": [USER_HOOK]}],
        "SessionStart": [],
    },
    "env": {"FOO": "1"},
    "cleanupPeriodDays": 30,
    "unknownFutureKey": {"nested": [1, 2.5, None, True, "é"]},
}


def dumps(doc: Any) -> str:
    """Text equality: unlike ``==`` on dicts it sees key order, and 1 is not ``true``."""
    return json.dumps(doc, indent=2, ensure_ascii=False)


# -- the pure edits, by example --------------------------------------------------------------------


def test_install_into_an_empty_document_writes_the_documented_shape() -> None:
    doc = install_hooks({}, command=CMD, events=DEFAULT_EVENTS)
    handler = {"type": "command", "command": CMD, "timeout": TIMEOUT}
    assert list(doc["hooks"]) == list(DEFAULT_EVENTS)
    assert doc["hooks"]["Notification"] == [
        {"matcher": MATCHERS["Notification"], "hooks": [handler]}]
    for event in DEFAULT_EVENTS[1:]:
        assert doc["hooks"][event] == [{"hooks": [handler]}]
    assert "SubagentStop" not in doc["hooks"]


def test_install_keeps_every_other_key_and_hook_in_place() -> None:
    doc = install_hooks(ORIGINAL, command=CMD, events=DEFAULT_EVENTS)
    assert list(doc) == list(ORIGINAL)
    for key in ORIGINAL:
        if key != "hooks":
            assert dumps(doc[key]) == dumps(ORIGINAL[key])
    hooks = doc["hooks"]
    assert list(hooks)[:3] == ["PreToolUse", "Stop", "SessionStart"]
    assert hooks["Stop"][0] == {"hooks": [USER_HOOK]}
    assert hooks["Stop"][1]["hooks"][0]["command"] == CMD
    assert hooks["PreToolUse"][0] == ORIGINAL["hooks"]["PreToolUse"][0]
    assert hooks["SessionStart"] == []
    assert ORIGINAL["hooks"]["Stop"] == [{"hooks": [USER_HOOK]}], "the input was not mutated"


def test_install_twice_adds_nothing_and_a_new_command_updates_in_place() -> None:
    once = install_hooks(ORIGINAL, command=CMD, events=DEFAULT_EVENTS)
    assert dumps(install_hooks(once, command=CMD, events=DEFAULT_EVENTS)) == dumps(once)
    moved = install_hooks(once, command="/new/bin/claude-notify hook", events=DEFAULT_EVENTS)
    assert dumps(moved) == dumps(once).replace(CMD, "/new/bin/claude-notify hook")


def test_install_with_fewer_events_removes_ours_from_the_others() -> None:
    everything = install_hooks(ORIGINAL, command=CMD, events=EVENTS)
    assert set(installed_events(everything)) == set(EVENTS)
    fewer = install_hooks(everything, command=CMD, events=["Stop"])
    assert set(installed_events(fewer)) == {"Stop"}
    assert fewer["hooks"]["PreToolUse"] == ORIGINAL["hooks"]["PreToolUse"]


def test_a_hand_written_entry_is_adopted_not_duplicated() -> None:
    """The README-style ``claude-notify hook`` someone typed in is ours: updated, not doubled."""
    doc = {"hooks": {"Stop": [
        {"hooks": [{"type": "command", "command": "claude-notify hook", "async": True}]}]}}
    new = install_hooks(doc, command=CMD, events=["Stop"])
    assert new["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": CMD,
                                                "timeout": TIMEOUT}]}]


def test_our_handler_in_a_users_group_leaves_their_handler_and_matcher_alone() -> None:
    shared = {"matcher": "permission_prompt", "hooks": [USER_HOOK, {
        "type": "command", "command": "claude-notify hook"}]}
    new = install_hooks({"hooks": {"Notification": [shared]}}, command=CMD,
                        events=["Notification"])
    assert new["hooks"]["Notification"] == [
        {"matcher": "permission_prompt", "hooks": [USER_HOOK]},
        {"matcher": MATCHERS["Notification"],
         "hooks": [{"type": "command", "command": CMD, "timeout": TIMEOUT}]},
    ]


def test_uninstall_removes_only_ours_and_the_containers_it_emptied() -> None:
    doc = copy.deepcopy(ORIGINAL)
    doc["hooks"]["Stop"][0]["hooks"].append({"type": "command", "command": "claude-notify hook"})
    doc["hooks"]["Stop"].append({"matcher": "", "hooks": []})  # the user's own empty group
    installed = install_hooks(doc, command=CMD, events=EVENTS)
    removed = uninstall_hooks(installed)
    assert removed["hooks"]["Stop"] == [{"hooks": [USER_HOOK]}, {"matcher": "", "hooks": []}]
    assert list(removed["hooks"]) == ["PreToolUse", "Stop", "SessionStart"]
    assert installed_events(removed) == {}
    assert "hooks" not in uninstall_hooks(install_hooks({"a": 1}, command=CMD, events=EVENTS))


@pytest.mark.parametrize(("command", "ours"), [
    ("claude-notify hook", True),
    ("/home/me/.local/bin/claude-notify hook", True),
    ("'/home/me/my tools/claude-notify' hook", True),
    ('"C:\\Program Files\\Python\\Scripts\\claude-notify.exe" hook', True),
    ("C:\\Users\\me\\claude-notify.EXE hook", True),
    ("/usr/bin/python3 -m claude_notify hook", True),
    ("  claude-notify hook  ", True),
    ("claude-notify run -- make", False),
    ("my-claude-notify hook", False),
    ("claude-notify hook --debug", False),
    ("echo 'claude-notify hook", False),
    ("notify-send hook", False),
])
def test_our_entries_are_recognised_by_their_command(command: str, ours: bool) -> None:
    assert is_ours({"type": "command", "command": command}) is ours
    assert not is_ours({"type": "http", "url": "http://x", "command": command})


def test_events_flag() -> None:
    assert parse_events([]) == DEFAULT_EVENTS
    assert parse_events(["stop", "NOTIFICATION"]) == ("Notification", "Stop")
    assert parse_events(["default,SubagentStop"]) == (*DEFAULT_EVENTS, "SubagentStop")
    assert parse_events(["all"]) == EVENTS[:6]  # the approval events come with the setting
    assert parse_events(["PermissionRequest"]) == ("PermissionRequest",)
    with pytest.raises(UsageError, match="unknown event 'PostToolBatch'"):
        parse_events(["Stop,PostToolBatch"])


# -- the pure edits, on arbitrary documents ------------------------------------------------------

_text = st.text(max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_extra = st.dictionaries(_text.filter(lambda k: k not in ("hooks", "matcher", "type",
                                                          "command")), _json, max_size=2)
_user_handler = st.builds(
    lambda kind, command, extra: {"type": kind, **({"command": command} if command else {}),
                                  **extra},
    st.sampled_from(["command", "http", "prompt", "agent", "mcp_tool"]),
    st.one_of(st.none(), _text, st.sampled_from([
        "claude-notify run -- make", "say claude-notify hook done", "notify-send hook",
        "/usr/bin/claude-notify-hook", "claude-notify  hook --x"])),
    _extra,
).filter(lambda h: not is_ours(h))
_our_handler = st.builds(
    lambda command, extra: {"type": "command", "command": command, **extra},
    st.sampled_from(["claude-notify hook", CMD, "/old/venv/bin/python -m claude_notify hook",
                     "'/a b/claude-notify' hook"]),
    st.dictionaries(st.sampled_from(["timeout", "async", "statusMessage"]), _json, max_size=2),
)
_event = st.sampled_from(EVENTS) | st.sampled_from(["SessionStart", "PostToolUse"]) | _text
_commands = st.sampled_from(
    [CMD, "'/x y/claude-notify' hook", "/v/bin/python -m claude_notify hook"])
_events = st.lists(st.sampled_from(EVENTS), min_size=1, max_size=6, unique=True)


def _documents(handler: st.SearchStrategy[dict[str, Any]], *, min_size: int = 0) -> Any:
    group = st.builds(
        lambda matcher, hooks, extra: {**({"matcher": matcher} if matcher is not None else {}),
                                       "hooks": hooks, **extra},
        st.none() | _text, st.lists(handler, min_size=min_size, max_size=3), _extra)
    hooks = st.dictionaries(_event, st.lists(group, min_size=min_size, max_size=3),
                            min_size=min_size, max_size=5)

    @st.composite
    def document(draw: st.DrawFn) -> dict[str, Any]:
        items = list(draw(st.dictionaries(_text.filter(lambda k: k != "hooks"), _json,
                                          max_size=5)).items())
        if draw(st.booleans()):
            items.insert(draw(st.integers(0, len(items))), ("hooks", draw(hooks)))
        return dict(items)

    return document()


def _without_emptied(doc: dict[str, Any], events: list[str]) -> dict[str, Any]:
    """What install→uninstall cannot give back: an empty array (or ``hooks`` object) that
    install filled holds only ours afterwards, so uninstall removes it."""
    doc = copy.deepcopy(doc)
    hooks = doc.get("hooks")
    if isinstance(hooks, dict):
        for event in events:
            if hooks.get(event) == []:
                del hooks[event]
        if not hooks:
            del doc["hooks"]
    return doc


@given(_documents(_user_handler), _commands, _events)
def test_install_then_uninstall_gives_back_the_original(
        doc: dict[str, Any], command: str, events: list[str]) -> None:
    installed = install_hooks(doc, command=command, events=events)
    assert set(installed_events(installed)) == set(events)
    assert all(cmds == [command] for cmds in installed_events(installed).values())
    assert dumps(uninstall_hooks(installed)) == dumps(_without_emptied(doc, events))


@given(_documents(_user_handler, min_size=1), _commands, _events)
def test_without_empty_containers_the_round_trip_is_exact(
        doc: dict[str, Any], command: str, events: list[str]) -> None:
    assert dumps(uninstall_hooks(install_hooks(doc, command=command, events=events))) == dumps(doc)


@given(_documents(_user_handler | _our_handler), _commands, _events)
def test_install_twice_is_install_once(
        doc: dict[str, Any], command: str, events: list[str]) -> None:
    """Also from documents that already hold our entries, anywhere and in any spelling."""
    once = install_hooks(doc, command=command, events=events)
    assert dumps(install_hooks(once, command=command, events=events)) == dumps(once)
    assert dumps(uninstall_hooks(uninstall_hooks(once))) == dumps(uninstall_hooks(once))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_user_handler, min_size=1), _events)
def test_the_file_round_trip_is_byte_exact(doc: dict[str, Any], events: list[str]) -> None:
    """Through the real file path: backup, temp file, replace; what the user wrote comes back."""
    text = dumps(doc) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.json"
        path.write_text(text, encoding="utf-8")
        first = install(path, command=CMD, events=events)
        assert first.changed
        assert first.backup is not None
        assert first.backup.read_text(encoding="utf-8") == text
        assert not install(path, command=CMD, events=events).changed
        assert uninstall(path).changed
        assert path.read_text(encoding="utf-8") == text
        assert sorted(p.name for p in Path(tmp).iterdir() if not p.name.endswith(".bak")) == [
            "settings.json"], "no temporary file is left behind"


# -- the command, as the user runs it -------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    (tmp_path / "project").mkdir()
    return tmp_path / "home"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = cli_env(home.parent, HOME=str(home))
    env.pop("CLAUDE_CONFIG_DIR", None)  # the developer's own must not leak in
    return env | extra


def _cli(home: Path, *args: str, **extra: str) -> tuple[int, str, str]:
    result = run_cli(["claude", *args], env=_env(home, **extra), cwd=home.parent / "project")
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_cli_install_backs_up_keeps_mode_and_is_idempotent(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    original = json.dumps(ORIGINAL, indent=4, ensure_ascii=False) + "\n"
    path.write_text(original, encoding="utf-8")
    path.chmod(0o640)

    code, out, err = _cli(home, "install")
    assert (code, err) == (0, "")
    backups = sorted(path.parent.glob("settings.json.*.bak"))
    assert len(backups) == 1
    assert backups[0].read_text(encoding="utf-8") == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o640
    written = path.read_text(encoding="utf-8")
    assert written.startswith('{\n    "$schema"'), "the file's own indent is kept"
    doc = json.loads(written)
    assert dumps(uninstall_hooks(doc)) == dumps(ORIGINAL)
    assert set(installed_events(doc)) == set(DEFAULT_EVENTS)
    (command,) = {c for cs in installed_events(doc).values() for c in cs}
    assert command.endswith(" hook")
    assert Path(command.rsplit(" ", 1)[0].strip("'")).is_absolute()

    code, out, _ = _cli(home, "install")
    assert code == 0
    assert "nothing changed" in out
    assert path.read_text(encoding="utf-8") == written
    assert len(list(path.parent.glob("settings.json.*.bak"))) == 1, "no change, no backup"


def test_cli_honours_claude_config_dir_and_the_project_files(home: Path) -> None:
    config_dir = home / "elsewhere"
    assert _cli(home, "install", CLAUDE_CONFIG_DIR=str(config_dir))[0] == 0
    assert (config_dir / "settings.json").exists()
    assert not (home / ".claude").exists()

    project = home.parent / "project" / ".claude"
    assert _cli(home, "install", "--project")[0] == 0
    assert _cli(home, "install", "--local", "--events", "default,SubagentStop")[0] == 0
    shared = json.loads((project / "settings.json").read_text(encoding="utf-8"))
    assert installed_events(shared)["Stop"] == ["claude-notify hook"], "portable for the team"
    assert "SubagentStop" in installed_events(
        json.loads((project / "settings.local.json").read_text(encoding="utf-8")))

    code, out, _ = _cli(home, "status", "--json", CLAUDE_CONFIG_DIR=str(config_dir))
    report = json.loads(out)
    assert code == 0
    assert [(f["scope"], sorted(f["events"])) for f in report["files"]] == [
        ("user", sorted(DEFAULT_EVENTS)), ("project", sorted(DEFAULT_EVENTS)),
        ("local", sorted((*DEFAULT_EVENTS, "SubagentStop")))]
    code, out, _ = _cli(home, "status")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["user", str(home / ".claude" / "settings.json"),
                                               "no"]
    assert out.splitlines()[-1].startswith("claude ")


@pytest.mark.parametrize("content", [
    b'{"model": "opus",\n "hooks": {}\n',          # truncated
    b'{"hooks": {"Stop": []}} trailing',
    b'{"a": NaN}',
    b'\xff\xfe{}',
    b'["not", "an", "object"]',
    b'{"hooks": []}',
    b'{"hooks": {"Stop": {"hooks": []}}}',
    b'{"hooks": {"Stop": [{"hooks": "claude-notify hook"}]}}',
    b'{"hooks": {"Stop": ["claude-notify hook"]}}',
])
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_cli_refuses_a_broken_file_and_leaves_it_untouched(
        home: Path, content: bytes, action: str) -> None:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_bytes(content)
    before = path.stat()

    code, out, err = _cli(home, action)

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"claude-notify: {path}: ")
    assert "nothing was changed" in err
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]
    code, out, _ = _cli(home, "status")
    assert code == 0
    assert "unreadable:" in out.splitlines()[0]


def test_cli_uninstall_keeps_the_users_hooks_and_creates_nothing(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    assert _cli(home, "uninstall")[0] == 0
    assert not path.exists()

    path.parent.mkdir()
    text = dumps(ORIGINAL) + "\n"
    path.write_text(text, encoding="utf-8")
    assert _cli(home, "install", "--events", "all")[0] == 0
    code, out, _ = _cli(home, "uninstall")
    assert code == 0
    assert "removed" in out
    assert path.read_text(encoding="utf-8") == text
    assert len(list(path.parent.glob("*.bak"))) == 2


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_cli_writes_through_a_dotfiles_symlink(home: Path) -> None:
    real = home / "dotfiles" / "claude-settings.json"
    real.parent.mkdir()
    real.write_text('{"model": "opus"}\n', encoding="utf-8")
    link = home / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(real)

    assert _cli(home, "install")[0] == 0

    assert link.is_symlink()
    assert set(installed_events(json.loads(real.read_text(encoding="utf-8")))) == set(
        DEFAULT_EVENTS)
    assert list(link.parent.glob("settings.json.*.bak")), "the backup sits where the user looks"


def test_cli_rejects_unknown_events(home: Path) -> None:
    code, _, err = _cli(home, "install", "--events", "Stop,Bogus")
    assert code == 2
    assert "unknown event 'Bogus'" in err
    assert not (home / ".claude").exists()


def test_cli_install_refuses_a_fifo_and_a_symlink_loop_in_one_line(home: Path) -> None:
    """A FIFO would block the read forever; a symlink loop raised a traceback."""
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    os.mkfifo(path)
    for command in ("install", "uninstall"):
        code, _out, err = _cli(home, command)
        assert (code, err.count("\n")) == (2, 1), err
        assert err.startswith(f"claude-notify: {path}: not a regular file")
    path.unlink()
    path.symlink_to(path.parent / "other.json")
    (path.parent / "other.json").symlink_to(path)
    for command in ("install", "uninstall"):
        code, _out, err = _cli(home, command)
        assert (code, err.count("\n")) == (2, 1), err
        assert err.startswith(f"claude-notify: {path}: ") and "Traceback" not in err
        assert "symbolic links" in err


def test_cli_install_and_status_with_approvals_from_the_phone(home: Path) -> None:
    config = home.parent / "config.toml"
    config.write_text('[claude]\napprovals = "phone"\napproval_timeout = "2m"\n')
    socket = home.parent / "agent.sock"
    extra = {"CLAUDE_NOTIFY_CONFIG": str(config), "CLAUDE_NOTIFY_AGENT_SOCKET": str(socket)}
    code, out, _ = _cli(home, "status", **extra)
    assert code == 0
    assert out.splitlines()[-2].split(None, 1) == [
        "approvals", "phone: no agent is listening (claude-notify agent); no PermissionRequest "
        "hook: run claude-notify claude install again"]
    assert _cli(home, "install", **extra)[0] == 0
    doc = json.loads((home / ".claude" / "settings.json").read_text(encoding="utf-8"))
    assert set(installed_events(doc)) == {*DEFAULT_EVENTS, "PermissionRequest", "PostToolUse",
                                          "PostToolUseFailure", "SessionEnd"}
    timeouts = {event: groups[0]["hooks"][0]["timeout"]
                for event, groups in doc["hooks"].items()}
    assert timeouts.pop("PermissionRequest") == 120 + 15
    assert set(timeouts.values()) == {10}  # every other hook stays quick
    code, out, _ = _cli(home, "status", "--json", **extra)
    assert json.loads(out)["approvals"] == {"mode": "phone", "socket": str(socket),
                                            "agent_listening": False}
    config.write_text("")
    code, out, _ = _cli(home, "status", **extra)
    assert out.splitlines()[-2].split() == ["approvals", "off"]
