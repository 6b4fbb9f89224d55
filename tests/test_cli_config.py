"""Config precedence and errors, the config command, the lean parser, start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import cli_env, run_cli
from hypothesis import given
from hypothesis import strategies as st

from claude_notify import config
from claude_notify.commands.run import run as run_click
from claude_notify.errors import ConfigError
from claude_notify.notifiers import candidates
from claude_notify.notifiers.base import Host
from claude_notify.options import RUN_OPTIONS, NotPlain, parse_run_args


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('# mine\non = "failure"\nsound = "bell"\n\n[terminal]\nbell = false\n')
    env = {"CLAUDE_NOTIFY_CONFIG": str(path), "CLAUDE_NOTIFY_SOUND": "/tmp/x.wav"}
    cfg = config.load(env).with_flags({"on": ("success", "--on")})
    assert (cfg["on"], cfg.source("on")) == ("success", "flag --on")
    assert (cfg["sound"], cfg.source("sound")) == ("/tmp/x.wav", "env CLAUDE_NOTIFY_SOUND")
    assert (cfg["terminal.bell"], cfg.source("terminal.bell")) == (False, f"{path}:6")
    assert (cfg["backend"], cfg.source("backend")) == ("auto", "default")


@pytest.mark.parametrize(("text", "needle"), [
    ('on = "sometimes"\n', ":1: bad value for 'on'"),
    ('\n\nmin_duration = "soon"\n', ":3: bad value for 'min_duration'"),
    ("colour = 1\n", ":1: unknown key 'colour'"),
    ("on = \n", "invalid TOML"),
    ("[terminal]\nbell = 3\n", ":2: bad value for 'terminal.bell'"),
])
def test_broken_file_names_file_line_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load({"CLAUDE_NOTIFY_CONFIG": str(path)})
    assert str(path) in str(info.value)
    assert needle in str(info.value)


@pytest.mark.parametrize(("text", "needle"), [
    ("on = [1,\n", "invalid TOML"),
    ('tiemout = "2s"\n', ":1: unknown key 'tiemout' (did you mean 'timeout'?)"),
    ('\ntimeout = "soon"\n', ":2: bad value for 'timeout'"),
])
def test_a_broken_config_warns_and_the_command_still_runs(tmp_path: Path, text: str,
                                                          needle: str) -> None:
    """A typo in the file must not fail the build it wraps: its output and exit code are kept."""
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never")
    (tmp_path / "config.toml").write_text(text)
    result = run_cli(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], env=env)
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    warning, rest = result.stderr.decode().split("\n", 1)
    assert warning.startswith("claude-notify: warning: ")
    assert needle in warning and warning.endswith("(the default is used)")
    assert rest == "err\n"
    quiet = run_cli(["run", "-q", "--", "sh", "-c", "exit 4"], env=env)
    assert (quiet.returncode, quiet.stderr) == (4, b"")


def test_a_bad_env_value_warns_but_a_bad_flag_is_refused(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="maybe")
    result = run_cli(["run", "--", "sh", "-c", "exit 5"], env=env)
    assert result.returncode == 5
    assert result.stderr.decode().startswith("claude-notify: warning: CLAUDE_NOTIFY_ON='maybe': ")
    marker = tmp_path / "ran"
    result = run_cli(["run", "--on", "maybe", "--", "touch", str(marker)], env=cli_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert not marker.exists()
    # Commands other than run still refuse a broken setting, with the line it is on.
    assert run_cli(["test"], env=env).returncode == 2


def test_config_set_keeps_comments_and_show_names_sources(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_URGENCY="low")
    path = tmp_path / "config.toml"
    path.write_text("# my notes\nsound = 'none'  # silence please\n")
    assert run_cli(["config", "set", "min_duration", "5m"], env=env).returncode == 0
    assert run_cli(["config", "set", "terminal.bell", "false"], env=env).returncode == 0
    text = path.read_text()
    assert "# my notes" in text and "# silence please" in text
    assert config.load({"CLAUDE_NOTIFY_CONFIG": str(path)})["min_duration"] == 300.0
    shown = json.loads(run_cli(["config", "show", "--json"], env=env).stdout)
    assert shown["min_duration"] == {"value": 300.0, "source": f"{path}:3"}
    assert shown["urgency"] == {"value": "low", "source": "env CLAUDE_NOTIFY_URGENCY"}
    assert shown["terminal.bell"]["value"] is False
    assert run_cli(["config", "get", "min_duration"], env=env).stdout == b"\"5m\"\n"
    assert run_cli(["config", "unset", "min_duration"], env=env).returncode == 0
    assert "min_duration" not in path.read_text()
    assert run_cli(["config", "path"], env=env).stdout.decode().strip() == str(path)


def test_config_set_refuses_bad_values_and_keys(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for args in (["config", "set", "on", "sometimes"], ["config", "set", "nope", "1"],
                 ["config", "get", "nope"]):
        result = run_cli(args, env=env)
        assert result.returncode == 2, args
        assert result.stderr.decode().count("\n") == 1
    assert not (tmp_path / "config.toml").exists()


@pytest.mark.parametrize("text", ["90", "1.5", "500ms", "30s", "5m", "2h", "1h30m", "1d"])
def test_durations(text: str) -> None:
    expected = {"90": 90, "1.5": 1.5, "500ms": 0.5, "30s": 30, "5m": 300, "2h": 7200,
                "1h30m": 5400, "1d": 86400}[text]
    assert config.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5 m", "-1", "m5", "1x", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(text)


def _click_parse(args: list[str]) -> tuple[dict[str, object], tuple[str, ...]] | None:
    """What the click command makes of ``args``, or None when it refuses them."""
    try:
        ctx = run_click.make_context("run", list(args), resilient_parsing=False)
    except (click.UsageError, click.exceptions.Exit):
        return None
    params = dict(ctx.params)
    command = params.pop("command")
    return {k: v for k, v in params.items() if v is not None}, tuple(command)


_tokens = st.sampled_from([
    "--title", "--title=x", "--on", "exit", "failure", "sometimes", "-q", "--quiet", "--exec",
    "--shell", "--", "make", "test", "-", "--no-pty", "--match", "^E", "--bogus", "--every=5m",
    "-x", "--log", "out.log", "{cmd}", "--urgency", "low",
])


@given(st.lists(_tokens, max_size=8))
def test_lean_parser_agrees_with_click(args: list[str]) -> None:
    """Whatever the lean parser accepts, click parses the same way; it never accepts more."""
    try:
        lean = parse_run_args(args)
    except NotPlain:
        return  # click will explain
    parsed = _click_parse(args)
    assert parsed is not None, args
    assert parsed == (lean.values, lean.command)


def test_every_run_option_has_help_in_click() -> None:
    result = CliRunner().invoke(run_click, ["--help"])
    assert result.exit_code == 0
    for opt in RUN_OPTIONS:
        assert opt.flags[-1] in result.output


def test_run_path_imports_no_heavy_module(tmp_path: Path) -> None:
    """The wrapped command's start-up pays for nothing it does not use."""
    code = ("import sys; from claude_notify.cli import main\n"
            "try:\n    main(['run', '--on', 'never', '--', 'true', 'x'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('\\n'.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path),
                            capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    heavy = {"click", "asyncio", "httpx", "keyring", "desktop_notifier", "tomlkit", "psutil",
             "sqlalchemy", "fastapi", "plyer", "requests", "dbus_fast", "argparse",
             "platformdirs", "tempfile", "sqlite3", "uuid", "sentry_sdk",
             "claude_notify.cloud.account"}
    assert "claude_notify.runner" in loaded
    assert not heavy & loaded, sorted(heavy & loaded)
    # Not logged in, the run path reaches nothing of the cloud: sinks are found by name.
    assert not [m for m in loaded if m.startswith("claude_notify.cloud")], sorted(loaded)


def test_help_and_version_are_fast_paths_too() -> None:
    result = subprocess.run([sys.executable, "-m", "claude_notify", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("claude-notify, version ")


def test_run_help_lists_the_choices() -> None:
    result = subprocess.run([sys.executable, "-m", "claude_notify", "run", "--help"],
                            capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())
    assert "When to notify. One of: exit, success, failure, never." in text
    assert "One of: low, normal, critical." in text


def test_config_set_suggests_the_key_meant(tmp_path: Path) -> None:
    result = run_cli(["config", "set", "tiemout", "3s"], env=cli_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr == b"claude-notify: unknown key 'tiemout' (did you mean 'timeout'?)\n"
    result = run_cli(["config", "set", "zzzz", "3s"], env=cli_env(tmp_path))
    assert b"unknown key 'zzzz' (see `claude-notify config show`)" in result.stderr


def test_bare_command_prints_help_to_stdout_and_succeeds() -> None:
    result = subprocess.run([sys.executable, "-m", "claude_notify"], capture_output=True,
                            text=True, check=False, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: claude-notify [OPTIONS] COMMAND [ARGS]...")
    assert "run         Run a command and notify when it ends." in result.stdout


@pytest.mark.parametrize(("env", "platform", "wsl", "expected"), [
    ({}, "linux", False, ["dbus", "terminal", "plyer"]),
    ({"SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, "linux", False, ["terminal"]),
    ({"SSH_TTY": "/dev/pts/3"}, "darwin", False, ["terminal"]),
    ({"TMUX": "/tmp/tmux-0/default,1,0"}, "linux", False, ["dbus", "terminal", "plyer"]),
    ({}, "linux", True, ["wsl", "terminal"]),
    ({}, "darwin", False, ["terminal-notifier", "osascript", "terminal"]),
    ({}, "win32", False, ["snoretoast", "toast", "plyer"]),
])
def test_backend_order_by_platform(env: dict[str, str], platform: str, wsl: bool,
                                   expected: list[str]) -> None:
    host = Host(platform=platform, env=env, is_wsl=wsl)
    assert candidates(host) == expected
    assert host.in_tmux == ("TMUX" in env)


def test_doctor_reports_ssh_and_tmux(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SSH_CONNECTION="10.0.0.1 5 10.0.0.2 22", TMUX="/tmp/t,1,0")
    report = json.loads(run_cli(["doctor", "--json"], env=env).stdout)
    assert (report["ssh"], report["tmux"], report["candidates"]) == (True, True, ["terminal"])


@pytest.mark.parametrize("xdg", [{}, {"XDG_CONFIG_HOME": "/x/cfg", "XDG_STATE_HOME": "/x/st",
                                      "XDG_DATA_HOME": "/x/data"},
                                 {"XDG_CONFIG_HOME": "relative/ignored"}])
def test_our_xdg_paths_agree_with_platformdirs(monkeypatch: pytest.MonkeyPatch,
                                               xdg: dict[str, str]) -> None:
    import platformdirs

    from claude_notify.paths import user_dir

    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in xdg.items():
        monkeypatch.setenv(name, value)
    assert user_dir("config") == platformdirs.user_config_path("claude-notify", appauthor=False)
    assert user_dir("state") == platformdirs.user_state_path("claude-notify", appauthor=False)
    assert user_dir("data") == platformdirs.user_data_path("claude-notify", appauthor=False)


def test_account_file_location_matches_the_dispatcher(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher checks for a login without importing the cloud package: same path."""
    from claude_notify.cloud.account import account_file
    from claude_notify.paths import state_dir

    monkeypatch.setenv("CLAUDE_NOTIFY_STATE_DIR", str(tmp_path))
    assert account_file() == state_dir() / "cloud.json"


def test_doctor_says_why_nothing_showed(tmp_path: Path) -> None:
    """One place for "why didn't it notify?": a broken config, a mute, quiet hours, the shell
    and Claude hooks, the cloud, tmux's real allow-passthrough, and where the logs are."""
    from desktop import require_tools

    require_tools(["tmux"], packages="tmux", purpose="the doctor's tmux check")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('eval "$(claude-notify shell-init bash)"\n')
    (tmp_path / "config.toml").write_text('quiet_hours = "00:00-23:59"\nbakend = "dbus"\n')
    socket = tmp_path / "tmux.sock"
    subprocess.run(["tmux", "-S", str(socket), "new-session", "-d", "sleep 600"], check=True,
                   timeout=20, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    try:
        subprocess.run(["tmux", "-S", str(socket), "set", "-g", "allow-passthrough", "on"],
                       check=True, timeout=20)
        env = cli_env(tmp_path, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                      CLAUDE_NOTIFY_DATA_DIR=str(tmp_path / "data"),
                      TMUX=f"{socket},1,0")
        assert run_cli(["mute", "2h"], env=env).returncode == 0
        assert run_cli(["claude", "install"], env=env).returncode == 0
        result = run_cli(["doctor"], env=env)
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False, timeout=20)
    text = result.stdout.decode()
    assert result.stderr == b""
    assert "unknown key 'bakend'" in text
    assert "held back   muted until " in text and "(quiet hours 00:00-23:59)" in text
    assert "tmux        allow-passthrough on" in text
    assert "cloud       not logged in" in text
    assert f"shell       bash ({home / '.bashrc'})" in text
    assert "claude      user: " in text and "Stop" in text
    assert f"state       {tmp_path / 'state'}" in text
    report = json.loads(run_cli(["doctor", "--json"], env=env).stdout)
    assert report["held"]["muted_until"] is not None
    assert report["config"]["problems"][0].endswith("unknown key 'bakend' "
                                                     "(did you mean 'backend'?)")
    # `test` still shows the sample, but says that `run` would stay quiet.
    env_ok = {k: v for k, v in env.items() if k != "TMUX"}
    (tmp_path / "config.toml").write_text('quiet_hours = "00:00-23:59"\n')
    warned = run_cli(["test"], env=env_ok)
    assert "claude-notify: warning: notifications are held back (muted until " in (
        warned.stderr.decode())


def test_a_missing_sound_or_icon_file_is_one_warning(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('icon = "~/no-such-icon.png"\n')
    env = cli_env(tmp_path, CLAUDE_NOTIFY_ON="never", HOME=str(tmp_path))
    result = run_cli(["run", "--sound", str(tmp_path / "ding.wav"), "--", "sh", "-c", "exit 3"],
                     env=env)
    assert result.returncode == 3
    assert result.stderr.decode().splitlines() == [
        f"claude-notify: warning: sound {tmp_path / 'ding.wav'}: no such file (flag --sound)",
        f"claude-notify: warning: icon ~/no-such-icon.png: no such file ({tmp_path}/config.toml:1)",
    ]
    (tmp_path / "ding.wav").write_bytes(b"RIFF")
    (tmp_path / "no-such-icon.png").write_bytes(b"")
    named = run_cli(["run", "--sound", "bell", "--", "true", "x"], env=env)
    assert named.stderr == b""  # a sound name is not a file; both files now exist


def test_config_show_prints_toml_that_reads_back_the_same(tmp_path: Path) -> None:
    """What `config show` prints can be pasted into the file as it is."""
    env = cli_env(tmp_path, CLAUDE_NOTIFY_SHELL_COMMANDS="make=0,cargo build=90s",
                  CLAUDE_NOTIFY_TIMEOUT="2.5s", CLAUDE_NOTIFY_TITLE='say "hi" \\ {cmd}')
    shown = run_cli(["config", "show"], env=env).stdout.decode().splitlines()
    lines = [line.rsplit("  # ", 1)[0].rstrip() for line in shown]
    assert 'shell.commands               = { "make" = "0s", "cargo build" = "1m30s" }' in lines
    assert 'timeout                      = "2.5s"' in lines
    pasted = tmp_path / "pasted.toml"
    pasted.write_text("\n".join(lines) + "\n")
    expected = config.load(env)
    again = config.load({"CLAUDE_NOTIFY_CONFIG": str(pasted)})
    assert {k: again[k] for k, _ in again.items()} == {k: expected[k] for k, _ in expected.items()}
    one = run_cli(["config", "get", "shell.threshold"], env=env)
    assert one.stdout == b'"30s"\n'


def test_config_add_and_remove_keep_the_defaults(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    default = config.SETTINGS["shell.ignore"].default
    assert run_cli(["config", "add", "shell.ignore", "make", "vim"], env=env).returncode == 0
    assert config.load(env)["shell.ignore"] == (*default, "make")
    assert run_cli(["config", "remove", "shell.ignore", "vim"], env=env).returncode == 0
    assert config.load(env)["shell.ignore"] == (*(v for v in default if v != "vim"), "make")
    missing = run_cli(["config", "remove", "shell.ignore", "vim"], env=env)
    assert (missing.returncode, missing.stderr) == (
        2, b"claude-notify: shell.ignore does not hold 'vim'\n")
    assert run_cli(["config", "add", "timeout", "3s"], env=env).returncode == 2
    replaced = run_cli(["config", "set", "shell.ignore", "vim"], env=env)
    assert replaced.returncode == 0
    assert b"the 19 default entries are gone" in replaced.stderr
    assert config.load(env)["shell.ignore"] == ("vim",)
