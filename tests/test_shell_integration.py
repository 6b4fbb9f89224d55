"""Shell integration: real ``bash -i``, ``zsh -i`` and ``fish`` on a pseudo-terminal, real dunst.

What the end-to-end tests prove: in each shell, with the user's own prompt hook installed before
ours, a command above the threshold reaches the notification daemon with its exit status, one
below it starts no process at all, an ignored program (also through an alias) and an empty line
do not notify, a per-command threshold below the default does, and ``$?`` / ``$status`` reaches
the user's hook and prompt untouched. Absence is proven, not hoped for: the test waits until no
process started by the shell's hook is left, then looks.

What they do not: focus on macOS and under tmux with an attached client (see the unit tests for
the decisions and parsers), and the "ignored" program is a stand-in named ``vim`` that sleeps.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from desktop import DesktopSession, require_tools
from helpers import cli_env, run_cli

from claude_notify.config import load
from claude_notify.shell import snippet
from claude_notify.shell.commandline import (
    candidates,
    ignored,
    program_words,
    split_words,
    threshold_for,
)
from claude_notify.shell.done import Finished, outcome, verdict
from claude_notify.shell.focus import (
    Facts,
    gather,
    looking,
    parse_lsappinfo_bundle,
    parse_xprop_active,
)

THRESHOLD = 0.4
PROMPT = re.compile(rb"<P:(\d+)>")

USER_RC = {
    # Each user hook appends the status it saw: proof that it ran and that $? reached it.
    "bash": """\
PS1='<P:$?>'
HISTFILE=$HOME/.bash_history
PROMPT_COMMAND='echo "$?" >> "$HOME/hook.log"'
alias v=vim
eval "$({cli} shell-init bash)"
""",
    "zsh": """\
PROMPT='<P:%?>'
HISTFILE=$HOME/.zsh_history
user_hook() {{ echo "$?" >> "$HOME/hook.log" }}
precmd_functions+=(user_hook)
alias v=vim
eval "$({cli} shell-init zsh)"
""",
    "fish": """\
set -g fish_greeting ''
function fish_prompt; printf '<P:%s>' $status; end
function user_hook --on-event fish_postexec; echo $status >> $HOME/hook.log; end
alias v=vim
{cli} shell-init fish | source
""",
}


# Settings that trip naive hooks: nounset, an array PROMPT_COMMAND, a PS0 of the user's own,
# lines kept out of the history, KSH_ARRAYS, a chatty chpwd, and the snippet evaluated twice.
HOSTILE_RC = {
    "bash": """\
set -u
PS1='<P:$?>'
PS0='[ps0]'
HISTFILE=$HOME/.bash_history
HISTCONTROL=ignoreboth
PROMPT_COMMAND=('echo "$?" >> "$HOME/hook.log"' 'true')
eval "$({cli} shell-init bash)"
eval "$({cli} shell-init bash)"
""",
    "zsh": """\
setopt nounset ksh_arrays err_return
PROMPT='<P:%?>'
chpwd() {{ echo chpwd-ran }}
precmd() {{ echo "$?" >> "$HOME/hook.log" }}
eval "$({cli} shell-init zsh)"
eval "$({cli} shell-init zsh)"
""",
    "fish": """\
set -g fish_greeting ''
function fish_prompt; printf '<P:%s>' $status; end
{cli} shell-init fish | source
{cli} shell-init fish | source
function user_hook --on-event fish_postexec; echo $status >> $HOME/hook.log; end
""",
}


class Shell:
    """An interactive shell on a pty; every wait has a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str], home: Path) -> None:
        self.home = home
        self.hook_log = home / "hook.log"
        self.output = b""
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.chdir(home)
                os.execvpe(argv[0], argv, env)  # noqa: S606 - pty.fork's child becomes the shell
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.prompts = 0
        self.wait_prompt(timeout=20)

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 65536)
            except OSError:
                pass

    def wait_prompt(self, timeout: float = 10) -> int:
        """Wait for the next prompt; the status it shows."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(PROMPT.finditer(self.output))
            if len(found) > self.prompts:
                self.prompts += 1
                return int(found[self.prompts - 1].group(1))
            if time.monotonic() > deadline:
                raise TimeoutError(f"no prompt within {timeout}s; output: {self.output[-800:]!r}")
            self._read(0.05)

    def hooks(self) -> list[int]:
        text = self.hook_log.read_text() if self.hook_log.exists() else ""
        return [int(line) for line in text.split()]

    def run(self, line: str, timeout: float = 10) -> tuple[int, int]:
        """Type ``line``; the status the user's hook saw and the one the prompt shows."""
        before = len(self.hooks())
        os.write(self.fd, line.encode() + b"\r")
        shown = self.wait_prompt(timeout)
        deadline = time.monotonic() + timeout
        while len(self.hooks()) <= before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the user's hook did not run for {line!r}")
            self._read(0.02)
        return self.hooks()[-1], shown

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def background_pids(tag: str, exclude: int) -> list[int]:
    """Processes other than the shell that carry this test's tag: what the hook started."""
    found = []
    needle = f"CN_TEST_TAG={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}: " + subprocess.run(
                ["ps", "-ef"], capture_output=True, text=True).stdout[-3000:])
        time.sleep(0.02)


@pytest.fixture
def shell_env(desktop: DesktopSession, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    # fish's first start generates completions from man pages in the background: not ours.
    generated = home / ".local" / "share" / "fish" / "generated_completions"
    for d in (home, bin_dir, home / ".config" / "fish", generated):
        d.mkdir(parents=True, exist_ok=True)
    # Stands in for an interactive editor: the ignore list must keep it quiet however long.
    vim = bin_dir / "vim"
    vim.write_text("#!/bin/sh\nsleep 0.6\n")
    vim.chmod(0o755)
    return cli_env(tmp_path, desktop.env) | {
        "HOME": str(home), "ZDOTDIR": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "CLAUDE_NOTIFY_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "TERM": "xterm-256color",
        "CLAUDE_NOTIFY_SHELL_THRESHOLD": str(THRESHOLD),
        "CLAUDE_NOTIFY_SHELL_COMMANDS": "sh=0",
        "CN_TEST_TAG": uuid.uuid4().hex,
    }


def start_shell(name: str, env: dict[str, str], rcs: dict[str, str] = USER_RC) -> Shell:
    require_tools([name], packages=name, purpose=f"the {name} integration test")
    home = Path(env["HOME"])
    cli = f"{sys.executable} -m claude_notify"
    rc = rcs[name].format(cli=cli)
    if name == "fish":
        (home / ".config" / "fish" / "config.fish").write_text(rc)
        argv = ["fish", "-i"]
    elif name == "zsh":
        (home / ".zshrc").write_text(rc)
        argv = ["zsh", "-i"]
    else:
        (home / ".bashrc").write_text(rc)
        argv = ["bash", "--rcfile", str(home / ".bashrc"), "-i"]
    return Shell(argv, env, home)


@pytest.fixture
def shells(shell_env: dict[str, str]) -> Iterator[Callable[..., Shell]]:
    started: list[Shell] = []

    def start(name: str, rcs: dict[str, str] = USER_RC) -> Shell:
        started.append(start_shell(name, shell_env, rcs))
        return started[-1]

    yield start
    for sh in started:
        sh.close()


def decisions(env: dict[str, str]) -> list[str]:
    path = Path(env["CLAUDE_NOTIFY_STATE_DIR"]) / "shell.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.desktop
@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_real_shell_notifies_only_long_commands(name: str, desktop: DesktopSession,
                                                shell_env: dict[str, str],
                                                shells: Callable[..., Shell]) -> None:
    sh = shells(name)
    tag = shell_env["CN_TEST_TAG"]
    mark = desktop.marker()

    assert sh.run("sleep 0.6") == (0, 0)
    got = desktop.wait_for(lambda n: "sleep 0.6" in n["summary"], since=mark, timeout=10)
    assert got["summary"].startswith("✓ sleep 0.6 · ")
    assert got["urgency"] == "normal"

    # Under the threshold: $? still reaches the user's hook and the prompt, nothing starts.
    assert sh.run("sleep 0.05; false") == (1, 1)
    # The per-command threshold (sh=0) is below the default: notify at once, with the status.
    assert sh.run("sh -c 'exit 3'") == (3, 3)
    got = desktop.wait_for(lambda n: "exit 3" in n["summary"], since=mark, timeout=10)
    assert got["summary"].startswith("✗ sh -c 'exit 3' · exit 3 · ")
    assert got["urgency"] == "normal"  # shell.failure_urgency: news, not a sticky alarm
    # An ignored program, typed through an alias where the shell resolves it.
    ignored_line = "vim notes.txt" if name == "fish" else "v notes.txt"
    assert sh.run(ignored_line) == (0, 0)
    assert sh.run("sleep 0.1") == (0, 0)
    os.write(sh.fd, b"\r")  # an empty line must not fire the last command again
    sh.wait_prompt()

    wait_until(lambda: not background_pids(tag, exclude=sh.pid), 15, "the hook's processes")
    summaries = [n["summary"] for n in desktop.notifications_since(mark)]
    assert len(summaries) == 2, summaries
    log = decisions(shell_env)
    assert [line.split()[1] for line in log] == ["notify", "notify", "ignored"], log
    assert "'sleep 0.1'" not in "\n".join(log)  # below every threshold: no process at all
    # The hook prints nothing, at start-up or later: no error, no job number, no "Done".
    assert not re.search(rb"(?i)not found|no such|unbound|error|warning|claude|\[\d+\]\s+\d+"
                         rb"|has ended|done", sh.output), sh.output


@pytest.mark.desktop
@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_hostile_settings_and_a_second_eval(name: str, desktop: DesktopSession,
                                            shell_env: dict[str, str],
                                            shells: Callable[..., Shell]) -> None:
    sh = shells(name, HOSTILE_RC)
    tag = shell_env["CN_TEST_TAG"]
    mark = desktop.marker()
    assert sh.run("sleep 0.5; false") == (1, 1)
    assert sh.run(" sleep 0.5") == (0, 0)  # bash: kept out of the history (ignorespace)
    assert sh.run("true") == (0, 0)
    wait_until(lambda: not background_pids(tag, exclude=sh.pid), 15, "the hook's processes")
    got = [n["summary"] for n in desktop.notifications_since(mark)]
    assert len(got) == 2, got  # evaluated twice, yet one hook
    assert got[0].startswith("✗ sleep 0.5; false · exit 1 · ")
    hidden = "✓ a command kept out of the bash history · " if name == "bash" else "✓ sleep 0.5 · "
    assert got[1].startswith(hidden)
    assert not re.search(rb"(?i)not found|no such|unbound|parameter not set|error|claude|chpwd",
                         sh.output), sh.output


WRAPPER_RC = {
    # The README's alias, and a function the command line cannot give away.
    "bash": "alias n='{cli} run --'\nw() {{ {cli} run -- \"$@\"; }}\n",
    "zsh": "alias n='{cli} run --'\nw() {{ {cli} run -- \"$@\" }}\n",
    "fish": "alias n='{cli} run --'\nfunction w; {cli} run -- $argv; end\n",
}


@pytest.mark.desktop
@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_one_command_one_notification_under_claude_notify_run(
        name: str, desktop: DesktopSession, shell_env: dict[str, str],
        shells: Callable[..., Shell]) -> None:
    """``claude-notify run`` notifies for its command; the shell hook must not do it again."""
    rcs = {shell: rc + WRAPPER_RC[shell] for shell, rc in USER_RC.items()}
    sh = shells(name, rcs)
    tag = shell_env["CN_TEST_TAG"]
    mark = desktop.marker()
    for line in ("n sleep 0.6", "w sleep 0.65", f"{sys.executable} -m claude_notify run "
                 "sleep 0.7", "sleep 0.75"):  # the last, typed at once, is the shell's to tell
        assert sh.run(line) == (0, 0)
    wait_until(lambda: not background_pids(tag, exclude=sh.pid), 15, "the hook's processes")
    summaries = sorted(n["summary"] for n in desktop.notifications_since(mark))
    assert [s.split(" · ")[0] for s in summaries] == [
        "✓ sleep 0.6", "✓ sleep 0.65", "✓ sleep 0.7", "✓ sleep 0.75"], summaries
    assert [line.split()[1] for line in decisions(shell_env)] == ["wrapped"] * 3 + ["notify"]


@pytest.mark.desktop
def test_focused_terminal_is_recorded_not_notified(desktop: DesktopSession,
                                                   shell_env: dict[str, str],
                                                   shells: Callable[..., Shell]) -> None:
    """X11 focus for real: the root window's ``_NET_ACTIVE_WINDOW`` against ``$WINDOWID``.

    No window manager runs on the test's Xvfb, so the test sets the property a window manager
    would (as a number: ``xprop -set`` cannot type it ``WINDOW``; that form is unit-tested); the
    probe and the decision are ours, against a real X server.
    """
    require_tools(["xprop"], packages="x11-utils", purpose="the X11 focus test")

    def activate(window: int) -> None:
        subprocess.run(["xprop", "-root", "-f", "_NET_ACTIVE_WINDOW", "32x", "-set",
                        "_NET_ACTIVE_WINDOW", hex(window)], env=desktop.env, check=True,
                       timeout=5)

    shell_env["WINDOWID"] = str(0x1234)
    sh = shells("bash")
    tag = shell_env["CN_TEST_TAG"]
    mark = desktop.marker()
    activate(0x1234)
    sh.run("sleep 0.5")
    wait_until(lambda: not background_pids(tag, exclude=sh.pid), 15, "the hook's processes")
    assert desktop.notifications_since(mark) == []
    activate(0x5678)
    sh.run("sleep 0.55")
    desktop.wait_for(lambda n: "sleep 0.55" in n["summary"], since=mark, timeout=10)
    assert [line.split()[1] for line in decisions(shell_env)] == ["focused", "notify"]
    listed = run_cli(["history", "--json"], env=shell_env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["command"], r["notified"], r["source"]) for r in rows] == [
        ("sleep 0.55", True, "shell"), ("sleep 0.5", False, "shell")]


def test_over_ssh_the_notification_reaches_the_users_terminal(tmp_path: Path) -> None:
    """Over SSH the backgrounded ``shell-done`` still owns the shell's terminal: the OSC 777
    sequence arrives on the pty the user's terminal emulator reads (no desktop involved)."""
    require_tools(["bash"], packages="bash", purpose="the SSH test")
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(tmp_path) | {
        "HOME": str(home), "TERM": "xterm-256color", "CLAUDE_NOTIFY_DATA_DIR": str(tmp_path),
        "SSH_CONNECTION": "192.0.2.1 50000 192.0.2.2 22", "CLAUDE_NOTIFY_SHELL_THRESHOLD": "0.3",
    }
    sh = start_shell("bash", env)
    try:
        sh.run("sleep 0.4; (exit 4)")
        deadline = time.monotonic() + 10
        while b"\x1b]777;notify;" not in sh.output:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no OSC 777 on the terminal: {sh.output[-500:]!r}")
            sh._read(0.05)
        osc = sh.output[sh.output.index(b"\x1b]777;notify;"):]
        assert osc.startswith("\x1b]777;notify;✗ sleep 0.4； (exit 4) · exit 4 · ".encode())
    finally:
        sh.close()


@pytest.mark.parametrize("where", ["runtime dir", "state dir", "nowhere"])
def test_bash_prompt_forks_nothing_with_a_per_command_threshold(tmp_path: Path,
                                                                where: str) -> None:
    """``make = 0`` makes bash read its history line after every command; that must not fork.

    strace follows the interactive shell while builtins run at the prompt: any process it
    starts there is the hook's. The line is read back through a file in a directory only we
    own: the login's runtime directory, else our state directory. With neither (here: a state
    directory with the sticky bit, as shared ones have) the hook falls back to ``$(...)``,
    which the last case shows is what this test catches.
    """
    require_tools(["bash", "strace"], packages="strace", purpose="the prompt fork test")
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    state = tmp_path / "state"
    state.mkdir(mode=0o1700 if where == "nowhere" else 0o700)
    state.chmod(0o1700 if where == "nowhere" else 0o700)
    env = cli_env(tmp_path) | {
        "HOME": str(home), "TERM": "xterm-256color", "CLAUDE_NOTIFY_DATA_DIR": str(tmp_path),
        "CLAUDE_NOTIFY_SHELL_COMMANDS": "make=0", "TMPDIR": "/tmp",
        "CLAUDE_NOTIFY_STATE_DIR": str(state),
    }
    if where == "runtime dir":
        env["XDG_RUNTIME_DIR"] = str(run_dir)
    else:
        env.pop("XDG_RUNTIME_DIR", None)
    sh = start_shell("bash", env)
    trace = tmp_path / "trace"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork",
                               "-o", str(trace), "-p", str(sh.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def traced() -> bool:
            status = Path(f"/proc/{sh.pid}/status").read_text()
            return re.search(r"^TracerPid:\s+[1-9]", status, re.M) is not None

        wait_until(traced, 20, "strace to attach")
        for _ in range(3):
            assert sh.run("true") == (0, 0)
        assert sh.run("make_it=1; (exit 3)")[1] == 3  # a subshell: one fork of the command's own
    finally:
        tracer.terminate()
        tracer.wait(timeout=20)
        sh.close()
    forks = [line for line in trace.read_text().splitlines()
             if re.search(r"\b(clone3?|v?fork)\(", line)]
    # The user's hook (PROMPT_COMMAND's echo) is a builtin; only `( exit 3 )` forks.
    assert len(forks) == (5 if where == "nowhere" else 1), forks
    if where != "nowhere":
        used = run_dir if where == "runtime dir" else state
        # The file is there, and the command line is not left behind in it.
        assert (used / f"claude-notify-history.{sh.pid}").read_bytes() == b""


def test_shell_init_prints_a_valid_snippet_per_shell(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLAUDE_NOTIFY_SHELL_COMMANDS="make=0,cargo build=5")
    for name, check in (("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]),
                        ("fish", ["fish", "--no-execute"])):
        result = run_cli(["shell-init", name], env=env)
        assert result.returncode == 0, result.stderr
        assert b"shell-done" in result.stdout
        script = tmp_path / f"snippet.{name}"
        script.write_bytes(result.stdout)
        if require_available(check[0]):
            subprocess.run([*check, str(script)], check=True, timeout=10)
    assert run_cli(["shell-init", "tcsh"], env=env).returncode == 2


@pytest.mark.parametrize(("name", "argv", "show"), [
    ("bash", ["bash", "--norc", "-u", "-i", "-c"], "declare -p PROMPT_COMMAND"),
    ("zsh", ["zsh", "-f", "-u", "-i", "-c"], "print -r -- $precmd_functions $preexec_functions"),
])
def test_eval_under_nounset_with_no_hooks_yet(name: str, argv: list[str], show: str,
                                              tmp_path: Path) -> None:
    """The snippet's own set-up must survive ``set -u`` when nothing is defined yet."""
    if not require_available(name):
        pytest.skip(f"{name} is not installed")
    env = cli_env(tmp_path) | {"HOME": str(tmp_path)}
    env.pop("PROMPT_COMMAND", None)
    cli = f"{sys.executable} -m claude_notify"
    done = subprocess.run([*argv, f'eval "$({cli} shell-init {name})" && {show}'], env=env,
                          capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "__claude_notify_precmd" in done.stdout
    errors = [line for line in done.stderr.splitlines() if "job control" not in line
              and "terminal process group" not in line]
    assert errors == []


def require_available(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


# -- unit tests: thresholds baked into the snippet -------------------------------------------

def test_snippet_bakes_the_lowest_threshold_and_the_overrides_below_default() -> None:
    text = snippet("bash", threshold=30, overrides={"make": 0, "cargo": 60}, argv=["cn"])
    assert "__claude_notify_min=0\n" in text
    assert "__claude_notify_default=30000000\n" in text
    assert "'make '" in text
    assert "cargo" not in text  # above the default: Python alone decides, later
    fish = snippet("fish", threshold=10, overrides={}, argv=["/opt/it's/cn"])
    assert "set -g __claude_notify_argv '/opt/it\\'s/cn'" in fish
    assert "test \"$el\" -ge 10000" in fish


# -- unit tests: command names ---------------------------------------------------------------

@pytest.mark.parametrize(("line", "words"), [
    ("make -j4", ["make", "-j4"]),
    ("sudo -u root make install", ["make", "install"]),
    ("env CC=clang FOO=1 make", ["make"]),
    ("CC=clang nice -n 5 /usr/bin/make all", ["make", "all"]),
    ("\\vim file", ["vim", "file"]),
    ("time nohup ./build.sh", ["build.sh"]),
    ("timeout -s INT 10 cargo test", ["cargo", "test"]),
    ("make && make test", ["make"]),
    ("(cd sub && make)", ["cd", "sub"]),
    ("git log --oneline | less", ["git", "log", "--oneline"]),
    ("echo 'unbalanced", ["echo", "'unbalanced"]),
    ("FOO=1", []),
    ("", []),
])
def test_program_words(line: str, words: list[str]) -> None:
    assert program_words(line) == words


def test_split_words_stops_at_the_first_separator() -> None:
    assert split_words("sleep 1; vim x") == ["sleep", "1"]
    assert split_words("echo 'a;b' c") == ["echo", "a;b", "c"]


def test_ignore_and_allow_with_aliases() -> None:
    ignore, allow = ("vim", "git log", "ssh"), ("ssh-agent",)
    assert ignored(candidates("sudo vim /etc/hosts"), ignore=ignore, allow=allow)
    assert ignored(candidates("v notes", "vim notes"), ignore=ignore, allow=allow)
    assert ignored(candidates("git log -p"), ignore=ignore, allow=allow)
    assert not ignored(candidates("git push"), ignore=ignore, allow=allow)
    assert not ignored(candidates("vimdiff a b"), ignore=ignore, allow=allow)
    assert not ignored(candidates("ssh host make"), ignore=ignore, allow=("ssh",))


def test_threshold_most_specific_wins() -> None:
    overrides = {"cargo": 0.0, "cargo build": 60.0, "make": 0.0}
    assert threshold_for(candidates("cargo build --release"), default=30,
                         overrides=overrides) == 60
    assert threshold_for(candidates("cargo test"), default=30, overrides=overrides) == 0
    assert threshold_for(candidates("m", "make -j8"), default=30, overrides=overrides) == 0
    assert threshold_for(candidates("ls"), default=30, overrides=overrides) == 30


def test_verdict_order(tmp_path: Path) -> None:
    config = load(cli_env(tmp_path, CLAUDE_NOTIFY_SHELL_THRESHOLD="10",
                          CLAUDE_NOTIFY_SHELL_COMMANDS="make=0"))
    asked: list[bool] = []

    def focused() -> bool:
        asked.append(True)
        return True

    def nobody() -> None:
        return None

    def done(cmd: str, duration: float, status: int = 0) -> Finished:
        return Finished(command=cmd, status=status, duration=duration)

    assert verdict(done("vim x", 99), config, looking=focused) == "ignored"
    assert verdict(done("ls", 2), config, looking=focused) == "short"
    assert asked == []  # no probe runs for what is dropped anyway
    assert verdict(done("make", 0.5), config, looking=nobody) == "notify"
    assert verdict(done("sleep 20", 20, 130), config, looking=nobody) == "interrupted"
    assert verdict(done("sleep 20", 20, 128 + signal.SIGTSTP), config,
                   looking=nobody) == "suspended"
    assert verdict(done("sleep 20", 20), config, looking=focused) == "focused"
    assert verdict(done("sleep 20", 20), config, looking=lambda: False) == "notify"


def test_outcome_from_shell_status() -> None:
    assert outcome(0) == ("success", 0, None)
    assert outcome(2) == ("failure", 2, None)
    assert outcome(130) == ("interrupted", None, "SIGINT")
    assert outcome(139) == ("failure", None, "SIGSEGV")
    assert outcome(255) == ("failure", 255, None)


# -- unit tests: focus ----------------------------------------------------------------------------

def test_looking_decision_table() -> None:
    x11 = Facts(platform="linux", window_id=42, active_window=42)
    assert looking(x11) is True
    assert looking(Facts(platform="linux", window_id=42, active_window=7)) is False
    assert looking(Facts(platform="linux", window_id=None, active_window=7)) is None
    assert looking(Facts(platform="linux", wayland=True, window_id=42,
                         active_window=42)) is None
    assert looking(Facts(platform="linux", remote=True, window_id=42, active_window=42)) is None
    hidden_pane = Facts(platform="linux", window_id=42, active_window=42, tmux_pane="0 1 1")
    assert looking(hidden_pane) is False
    assert looking(Facts(platform="linux", tmux_pane="1 1 0")) is False  # detached
    assert looking(Facts(platform="linux", tmux_pane="1 1 2")) is None  # visible, window unknown
    assert looking(Facts(platform="linux", window_id=42, active_window=42,
                         tmux_pane="1 1 1")) is True
    mac = Facts(platform="darwin", terminal_app="com.apple.Terminal",
                frontmost_app="com.apple.terminal")
    assert looking(mac) is True
    assert looking(Facts(platform="darwin", terminal_app="com.apple.Terminal",
                         frontmost_app="com.google.Chrome")) is False
    assert looking(Facts(platform="darwin", frontmost_app="com.apple.Terminal")) is None


def test_probe_parsers() -> None:
    assert parse_xprop_active("_NET_ACTIVE_WINDOW: window id # 0x1a00007\n") == 0x1A00007
    assert parse_xprop_active("_NET_ACTIVE_WINDOW = 4660\n") == 4660
    assert parse_xprop_active("_NET_ACTIVE_WINDOW:  not found.\n") is None
    assert parse_xprop_active("_NET_ACTIVE_WINDOW: window id # 0x0\n") is None
    assert parse_lsappinfo_bundle('"CFBundleIdentifier"="com.googlecode.iterm2"\n') == (
        "com.googlecode.iterm2")
    assert parse_lsappinfo_bundle("") is None


def test_gather_asks_only_useful_probes() -> None:
    calls: list[list[str]] = []
    answers = {"xdotool": None, "xprop": "_NET_ACTIVE_WINDOW: window id # 0x2a\n",
               "tmux": "1 1 1\n", "lsappinfo": None,
               "osascript": "com.apple.Terminal\n"}

    def run(argv: list[str]) -> str | None:
        calls.append(list(argv))
        return answers[argv[0]]

    x11 = gather({"DISPLAY": ":1", "WINDOWID": "42"}, platform="linux", run=run)
    assert x11.active_window == 42 and looking(x11) is True
    assert [c[0] for c in calls] == ["xdotool", "xprop"]
    calls.clear()
    assert gather({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":1", "WINDOWID": "42"},
                  platform="linux", run=run).active_window is None
    assert gather({"SSH_CONNECTION": "a b c d", "DISPLAY": ":1", "WINDOWID": "42"},
                  platform="linux", run=run).active_window is None
    assert calls == []
    mac = gather({"TERM_PROGRAM": "Apple_Terminal", "TMUX": "/tmp/s,1,0", "TMUX_PANE": "%3"},
                 platform="darwin", run=run)
    assert calls[0] == ["tmux", "display-message", "-p", "-t", "%3",
                        "#{pane_active} #{window_active} #{session_attached}"]
    assert [c[0] for c in calls[1:]] == ["lsappinfo", "osascript"]
    assert looking(mac) is True


def test_tmux_probe_against_a_real_detached_session(tmp_path: Path) -> None:
    """A real tmux server: a pane of a session no client is attached to is not being looked at."""
    require_tools(["tmux"], packages="tmux", purpose="the tmux focus test")
    socket = tmp_path / "tmux.sock"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    base = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run([*base, "new-session", "-d", "-x", "80", "-y", "24", "sleep 30"], env=env,
                   check=True, timeout=10)
    try:
        pane = subprocess.run([*base, "display-message", "-p", "#{pane_id}"], env=env,
                              capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        from claude_notify.shell.focus import subprocess_runner

        facts = gather(env | {"TMUX": f"{socket},1,0", "TMUX_PANE": pane}, platform="linux",
                       run=lambda argv: subprocess_runner(env)([*base, *argv[1:]]))
        assert facts.tmux_pane is not None and facts.tmux_pane.split() == ["1", "1", "0"]
        assert looking(facts) is False
    finally:
        subprocess.run([*base, "kill-server"], env=env, check=False, timeout=10)
