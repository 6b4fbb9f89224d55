"""The command relay's settings in the config file (``[agent]``), through the real CLI: the
precedence saved flag > env > file > default with each source named, the relay turned on by the
config alone, and bad values refused in one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli_env, run_cli


def _show(env: dict[str, str], *, args: tuple[str, ...] = ("agent", "--show"),
          ) -> dict[str, tuple[str, str]]:
    """``agent --show`` (or ``args``) as {key: (value, source)}."""
    done = run_cli(args, env=env)
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.decode().splitlines():
        key, _, rest = line.partition(" ")
        value, sep, source = rest.strip().rpartition("  [")
        rows[key] = (value, source.rstrip("]")) if sep else (rest.strip(), "")
    return rows


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


def test_the_agent_table_with_env_and_saved_flags_on_top(tmp_path: Path, project: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nallow = ["make *", "./next.sh"]\ndeny = ["make deploy"]\n'
                      f'dirs = ["{project}"]\nclaude = true\n'
                      f'claude_permission_mode = "acceptedits"\n')
    env = cli_env(tmp_path, CLAUDE_NOTIFY_AGENT_CLAUDE_ALLOWED_TOOLS="Read,Bash(git diff *)")
    shown = _show(env)
    assert shown["allow"] == ("make *, ./next.sh", f"{config}:2")
    assert shown["deny"] == ("make deploy", f"{config}:3")
    assert shown["dirs"] == (str(project), f"{config}:4")
    assert shown["claude"] == ("True", f"{config}:5")
    assert shown["claude_permission_mode"] == ("acceptEdits", f"{config}:6")
    assert shown["claude_allowed_tools"] == ("Read, Bash(git diff *)",
                                             "env CLAUDE_NOTIFY_AGENT_CLAUDE_ALLOWED_TOOLS")
    assert shown["claude_bin"] == ("claude", "default")
    assert shown["enabled"] == ("True", "agent.allow or agent.claude")

    listed = run_cli(["config", "show"], env=env).stdout.decode()
    assert "agent.allow" in listed and f"{config}:2" in listed

    added = run_cli(["agent", "--allow", "pytest *", "--claude-permission-mode", "plan"], env=env)
    assert added.returncode == 0, added.stderr
    shown = _show(env)
    assert shown["allow"][0] == "make *, ./next.sh, pytest *"  # added to the list in effect
    assert shown["allow"][1].startswith("flag, saved in ")
    assert shown["claude_permission_mode"] == ("plan", shown["allow"][1])
    assert shown["deny"] == ("make deploy", f"{config}:3")  # untouched keys: still the file's

    off = run_cli(["agent", "--disable"], env=env)
    assert off.returncode == 0, off.stderr
    assert _show(env)["enabled"][0] == "False"  # the machine's own word beats the config
    assert run_cli(["agent"], env=env).returncode == 2

    reset = run_cli(["agent", "--reset"], env=env)
    assert reset.returncode == 0, reset.stderr
    shown = _show(env)
    assert shown["allow"] == ("make *, ./next.sh", f"{config}:2")
    assert shown["claude_permission_mode"] == ("acceptEdits", f"{config}:6")
    assert shown["enabled"] == ("True", "agent.allow or agent.claude")


def test_the_config_alone_turns_the_relay_on(tmp_path: Path, project: Path) -> None:
    env = cli_env(tmp_path)
    off = run_cli(["agent"], env=env)
    assert off.returncode == 2 and b"the relay is off" in off.stderr
    on = run_cli(["agent"], env={**env, "CLAUDE_NOTIFY_AGENT_ALLOW": "make test"})
    # on, so what stops it now is the missing credential, not the switch
    assert on.returncode == 2 and b"no agent credential" in on.stderr, on.stderr
    (tmp_path / "config.toml").write_text(f'[agent]\nclaude = true\ndirs = ["{project}"]\n')
    assert b"no agent credential" in run_cli(["agent"], env=env).stderr


def test_settings_saved_before_the_agent_table_are_flags(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent.json").write_text(json.dumps({
        "enabled": True, "allow": ["make *"], "deny": [], "dirs": [str(tmp_path)],
        "server": "https://cloud.example", "storage": "file", "claude": False,
        "claude_bin": "claude", "claude_permission_mode": "default", "claude_allowed_tools": []}))
    (tmp_path / "config.toml").write_text('[agent]\ndeny = ["rm *"]\nallow = ["pytest"]\n')
    shown = _show(cli_env(tmp_path))
    assert shown["allow"][0] == "make *" and shown["allow"][1].startswith("flag, saved in ")
    assert shown["deny"][0] == "rm *"  # was the default: the config's applies
    assert shown["server"] == ("https://cloud.example", "")


@pytest.mark.parametrize(("text", "needle"), [
    ('[agent]\nclaude_permission_mode = "bypassPermissions"\n',
     ":2: bad value for 'agent.claude_permission_mode': never bypassPermissions"),
    ('[agent]\nclaude_permission_mode = "yolo"\n', "expected one of default, acceptEdits"),
    ('[agent]\ndirs = ["relative/dir"]\n', "'relative/dir' is not an absolute directory"),
    ("[agent]\nallow = 3\n", "bad value for 'agent.allow': expected a list of strings"),
    ('[agent]\nclaude = "maybe"\n', "bad value for 'agent.claude': expected true or false"),
    ('[agent]\nclaude_bin = ""\n', "expected a non-empty string"),
    ('[agent]\nallowed = ["make"]\n', "unknown key 'agent.allowed'"),
])
def test_bad_values_are_one_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    for args in (["agent", "--show"], ["agent"]):
        done = run_cli(args, env=cli_env(tmp_path))
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_env_value_and_a_bad_flag_are_one_line_and_exit_2(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_AGENT_CLAUDE_PERMISSION_MODE="bypassPermissions")
    done = run_cli(["agent", "--show"], env=env)
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1
    assert b"CLAUDE_NOTIFY_AGENT_CLAUDE_PERMISSION_MODE" in done.stderr
    flag = run_cli(["agent", "--claude-permission-mode", "bypassPermissions"],
                   env=cli_env(tmp_path))
    assert flag.returncode == 2 and b"Traceback" not in flag.stderr


def test_allow_patterns_that_grant_more_or_less_than_they_seem_are_warned_about(
        tmp_path: Path, project: Path) -> None:
    env = cli_env(tmp_path)
    done = run_cli(["agent", "--allow", "make *", "--allow", "bash -c *", "--allow", "git -c *",
                    "--dir", str(project)], env=env)
    assert done.returncode == 0, done.stderr
    warned = done.stderr.decode().splitlines()
    assert warned == [
        "claude-notify: warning: --allow 'bash -c *' grants bash only with the arguments it "
        "spells out (bash -c): bash runs the command or code it is given",
        "claude-notify: warning: --allow 'git -c *' lets a reply choose what follows git -c, "
        "which can run another program or use config and repositories from elsewhere",
    ]
    star = tmp_path / "star"
    star.mkdir()
    (star / "config.toml").write_text('[agent]\nallow = ["*"]\n')
    shown = run_cli(["agent", "--show"], env=cli_env(star))
    assert shown.stderr.decode() == ("claude-notify: warning: --allow '*' lets a reply run any "
                                     "program its first word matches\n")
    quiet = run_cli(["agent", "--allow", "make *", "--allow", "git status"],
                    env=cli_env(tmp_path / "other"))
    assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr


def test_the_subcommands_and_the_old_spellings_do_the_same(tmp_path: Path, project: Path) -> None:
    new, old = cli_env(tmp_path / "new"), cli_env(tmp_path / "old")
    steps = [
        (["agent", "allow", "make *", "./next.sh", "--dir", str(project)],
         ["agent", "--allow", "make *", "--allow", "./next.sh", "--dir", str(project)]),
        (["agent", "deny", "make deploy *"], ["agent", "--deny", "make deploy *"]),
        (["agent", "set", "--claude", "--claude-permission-mode", "plan",
          "--claude-allowed-tools", "Read", "--allow", "pytest"],
         ["agent", "--claude", "--claude-permission-mode", "plan",
          "--claude-allowed-tools", "Read", "--allow", "pytest"]),
    ]
    for now, before in steps:
        a, b = run_cli(now, env=new), run_cli(before, env=old)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr) == (
            0, a.stdout, b""), (a, b)

    def values(shown: dict[str, tuple[str, str]]) -> dict[str, str]:
        return {key: value for key, (value, _) in shown.items()}

    shown = _show(new, args=("agent", "show"))
    assert values(shown) == values(_show(old)) == values(_show(new))
    assert shown["allow"][0] == "make *, ./next.sh, pytest"
    assert shown["deny"][0] == "make deploy *"
    assert (shown["claude"][0], shown["claude_permission_mode"][0]) == ("True", "plan")

    for now, before in ((["agent", "disable"], ["agent", "--disable"]),):
        assert run_cli(now, env=new).returncode == run_cli(before, env=old).returncode == 0
    assert _show(new, args=("agent", "show"))["enabled"][0] == "False"
    assert _show(old)["enabled"][0] == "False"
    for env in (new, old):  # off: serving refuses, spelled either way
        for args in (["agent", "serve"], ["agent"]):
            done = run_cli(args, env=env)
            assert done.returncode == 2 and b"the relay is off" in done.stderr, done.stderr
            assert b"claude-notify agent allow" in done.stderr

    assert run_cli(["agent", "reset"], env=new).returncode == 0
    assert run_cli(["agent", "--reset"], env=old).returncode == 0
    assert values(_show(new, args=("agent", "show"))) == values(_show(old))
    assert _show(old)["allow"] == ("(none)", "default")

    for args in (["agent", "register"], ["agent", "--register"]):  # not logged in: one line
        done = run_cli(args, env=new)
        assert (done.returncode, done.stderr) == (
            1, b"claude-notify: not logged in: run `claude-notify login` first\n")


def test_old_options_and_a_subcommand_together_are_refused(tmp_path: Path) -> None:
    done = run_cli(["agent", "--allow", "make *", "show"], env=cli_env(tmp_path))
    assert (done.returncode, done.stderr) == (
        2, b"claude-notify: `agent show` takes its own options: give them after it\n")
    empty = run_cli(["agent", "set"], env=cli_env(tmp_path))
    assert empty.returncode == 2 and b"needs an option" in empty.stderr
    assert not (tmp_path / "state" / "agent.json").exists()
