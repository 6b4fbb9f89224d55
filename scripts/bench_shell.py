"""What the shell snippet adds to each prompt, for a command under the threshold (target ≤ 5 ms).

Two measurements per shell (bash, zsh, fish), each with the default settings (no per-command
threshold below the default: arithmetic only) and with ``make = 0`` (every command then goes
through the per-command word match, and bash reads its history line):

* hooks: the hook functions run N times in a loop inside the shell, against the same loop
  without them, timed by the shell's own clock — the pure cost, with no terminal noise;
* prompt: a real interactive shell on a pseudo-terminal runs ``true`` N times, one prompt after
  another, with and without the snippet — what a user waits, median per command.

Beside the hooks' wall µs, their CPU per prompt: the shell's own user+sys (its ``times``
builtin) over the hooked loop minus the bare one (bash and zsh; fish has no such builtin).
Target for bash: ≤ 0.2 ms per prompt.

Usage: ``python scripts/bench_shell.py [--loops 2000] [--prompts 200] [--shells bash,zsh,fish]
[--json FILE]``.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit

CLI = f"{sys.executable} -m claude_notify"
SETTINGS = {"default": {}, "make=0": {"CLAUDE_NOTIFY_SHELL_COMMANDS": "make=0"}}

# One iteration = what the shell does around one command: the pre-command part, then the prompt.
HOOK_LOOPS = {
    "bash": """
eval "$({cli} shell-init bash)"
n={n}
times
t0=$EPOCHREALTIME
for ((i = 0; i < n; i++)); do : "${{PS0@P}}"; true; __claude_notify_precmd; done
t1=$EPOCHREALTIME
times
for ((i = 0; i < n; i++)); do : ""; true; :; done
t2=$EPOCHREALTIME
times
echo "${{t0/[.,]/}} ${{t1/[.,]/}} ${{t2/[.,]/}}"
""",
    "zsh": """
eval "$({cli} shell-init zsh)"
zmodload zsh/datetime
integer n={n} i
times
float t0=$EPOCHREALTIME
for ((i = 0; i < n; i++)); do
    __claude_notify_preexec true true true; true; __claude_notify_precmd
done
float t1=$EPOCHREALTIME
times
for ((i = 0; i < n; i++)); do :; true; :; done
float t2=$EPOCHREALTIME
times
printf '%d %d %d\\n' $((t0 * 1e6)) $((t1 * 1e6)) $((t2 * 1e6))
""",
    "fish": """
{cli} shell-init fish | source
set -g CMD_DURATION 1
set -l t0 (date +%s%6N)
for i in (seq {n}); true; emit fish_postexec true; end
set -l t1 (date +%s%6N)
for i in (seq {n}); true; emit no_such_event true; end
set -l t2 (date +%s%6N)
echo $t0 $t1 $t2
""",
}

SHELL_ARGV = {
    "bash": ["bash", "--norc", "-i", "-c"],
    "zsh": ["zsh", "-f", "-i", "-c"],
    "fish": ["fish", "--no-config", "-i", "-c"],
}

PROMPT_RC = {
    "bash": "PS1='<P>'\n{hook}",
    "zsh": "PROMPT='<P>'\n{hook}",
    "fish": "set -g fish_greeting ''\nfunction fish_prompt; printf '<P>'; end\n{hook}",
}
HOOK_LINE = {
    "bash": 'eval "$({cli} shell-init bash)"',
    "zsh": 'eval "$({cli} shell-init zsh)"',
    "fish": "{cli} shell-init fish | source",
}


_TIMES = re.compile(r"^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$", re.MULTILINE)


def hook_cost_us(shell: str, n: int, env: dict[str, str]) -> tuple[float, float | None]:
    """Microseconds the hooks add per command, wall and CPU, from one in-shell timing loop."""
    script = HOOK_LOOPS[shell].format(cli=CLI, n=n)
    done = subprocess.run([*SHELL_ARGV[shell], script], env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, check=True)
    t0, t1, t2 = (int(x) for x in done.stdout.split()[-3:])
    wall = ((t1 - t0) - (t2 - t1)) / n
    # `times` prints the shell's own line, then its children's: every other match is ours.
    own = [int(m[0]) * 60 + float(m[1]) + int(m[2]) * 60 + float(m[3])
           for m in _TIMES.findall(done.stdout)][::2]
    if len(own) != 3:
        return wall, None
    c0, c1, c2 = own
    return wall, ((c1 - c0) - (c2 - c1)) * 1e6 / n


def prompt_latencies(shell: str, n: int, env: dict[str, str], *, hooked: bool,
                     home: Path) -> list[float]:
    """Seconds from Enter to the next prompt, for ``true``, ``n`` times."""
    hook = HOOK_LINE[shell].format(cli=CLI) if hooked else ""
    rc = PROMPT_RC[shell].format(hook=hook) + "\n"
    if shell == "bash":
        (home / ".bashrc").write_text(rc)
        argv = ["bash", "--rcfile", str(home / ".bashrc"), "-i"]
    elif shell == "zsh":
        (home / ".zshrc").write_text(rc)
        argv = ["zsh", "-i"]
    else:
        (home / ".config" / "fish").mkdir(parents=True, exist_ok=True)
        (home / ".local" / "share" / "fish" / "generated_completions").mkdir(parents=True,
                                                                            exist_ok=True)
        (home / ".config" / "fish" / "config.fish").write_text(rc)
        argv = ["fish", "-i"]
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes the shell
        os.execvpe(argv[0], argv, env)  # noqa: S606 - pty.fork's child becomes the shell
    buf = b""
    seen = 0

    def wait_prompt() -> None:
        nonlocal buf, seen
        deadline = time.monotonic() + 20
        while buf.count(b"<P>") <= seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shell}: no prompt; {buf[-300:]!r}")
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                buf += os.read(fd, 65536)
        seen = buf.count(b"<P>")

    try:
        wait_prompt()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            os.write(fd, b"true\r")
            wait_prompt()
            times.append(time.perf_counter() - start)
        return times
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--shells", default="bash,zsh,fish",
                        help="comma-separated (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args()
    with benchkit.reporting("shell", args.json) as report:
        bench(args, report)


def bench(args: argparse.Namespace, report: benchkit.Report) -> None:
    shells = [s for s in args.shells.split(",") if s]
    if unknown := set(shells) - set(SHELL_ARGV):
        raise SystemExit(f"unknown shell(s): {', '.join(sorted(unknown))}")
    for shell in shells:
        if shutil.which(shell) is None:
            print(f"{shell:<6} not installed")
            continue
        for label, extra in SETTINGS.items():
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                home = Path(tmp)
                env = {k: v for k, v in os.environ.items()
                       if not re.match(r"CLAUDE_NOTIFY_|PROMPT_COMMAND|PS0", k)}
                env |= {"HOME": tmp, "ZDOTDIR": tmp, "XDG_CONFIG_HOME": f"{tmp}/.config",
                        "XDG_DATA_HOME": f"{tmp}/.local/share", "HISTFILE": f"{tmp}/hist",
                        "TERM": "xterm-256color",
                        "CLAUDE_NOTIFY_STATE_DIR": f"{tmp}/state",
                        "CLAUDE_NOTIFY_CONFIG": f"{tmp}/config.toml", **extra}
                hooks, hooks_cpu = hook_cost_us(shell, args.loops, env)
                prompts = ""
                if args.prompts:
                    plain = statistics.median(prompt_latencies(shell, args.prompts, env,
                                                               hooked=False, home=home))
                    hooked = statistics.median(prompt_latencies(shell, args.prompts, env,
                                                                hooked=True, home=home))
                    prompts = (f"; on a pty {plain * 1e3:.2f} → {hooked * 1e3:.2f} ms per "
                               f"prompt, +{(hooked - plain) * 1e3:.2f} ms")
            target = "≤ 0.2 ms" if shell == "bash" else "≤ 5 ms"
            report.add(f"{shell} prompt hooks, {label} settings{prompts}", hooks / 1000, "ms",
                       None if hooks_cpu is None else hooks_cpu / 1000, "prompt", target,
                       hooks / 1000 <= (0.2 if shell == "bash" else 5))


if __name__ == "__main__":
    main()
