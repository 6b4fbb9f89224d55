"""``claude-notify run``: settings → runner → task events → sinks.

Both the lean parser and the click command end here with a
:class:`~claude_notify.options.ParsedRun`.
Whatever happens to the notification, the exit code is the child's.

The child's life is :mod:`claude_notify.runner`'s, the ``--match``/``--every`` notices
:mod:`claude_notify.midrun`'s, and where events go :mod:`claude_notify.dispatch`'s (whose sinks
may also run beside the command: the cloud's timer, the ``--stream`` upload).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from claude_notify import config as config_mod
from claude_notify.errors import UsageError
from claude_notify.events import TaskEvent, host_name, new_id, utcnow
from claude_notify.identity import machine_id, session_id
from claude_notify.options import RUN_OPTIONS, ParsedRun
from claude_notify.render import clean_output

if TYPE_CHECKING:
    import re

    from claude_notify import runner as runner_mod
    from claude_notify.config import Config
    from claude_notify.midrun import Watcher
    from claude_notify.runner import ChildExit, Tail

_INTERRUPTS = frozenset({"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGPIPE"})


def command_argv(command: Sequence[str], *, exec_: bool, shell: bool,
                 env: Mapping[str, str]) -> tuple[list[str], str]:
    """What to execute and how to show it: one argument goes to the shell, several are exec'd."""
    import shlex

    if exec_ and shell:
        raise UsageError("--exec and --shell cannot be used together")
    through_shell = shell or (len(command) == 1 and not exec_)
    if not through_shell:
        return list(command), shlex.join(command)
    line = command[0] if len(command) == 1 else shlex.join(command)
    if sys.platform == "win32":
        return [env.get("COMSPEC", "cmd.exe"), "/c", line], line
    else:  # a platform branch: mypy skips it elsewhere
        return [env.get("SHELL") or "/bin/sh", "-c", line], line


def outcome_status(outcome: ChildExit) -> tuple[str, str | None]:
    """The event status and signal name for how the child ended."""
    import signal as signal_mod

    sig = None
    if outcome.signal is not None:
        try:
            sig = signal_mod.Signals(outcome.signal).name
        except ValueError:
            sig = f"signal {outcome.signal}"
    if outcome.forwarded is not None or sig in _INTERRUPTS or outcome.exit_code == 130:
        return "interrupted", sig
    if outcome.exit_code == 0:
        return "success", None
    return "failure", sig


def _combined(observers: Sequence[runner_mod.Observer]) -> runner_mod.Observer | None:
    if len(observers) <= 1:
        return observers[0] if observers else None
    return _Fanout(observers)


class _Fanout:
    """Several observers of one relay."""

    def __init__(self, observers: Sequence[runner_mod.Observer]) -> None:
        self.observers = observers

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        for observer in self.observers:
            observer.feed(buf, n)

    def next_deadline(self) -> float | None:
        deadlines = [d for o in self.observers if (d := o.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def tick(self) -> None:
        for observer in self.observers:
            observer.tick()


class RunSession:
    """Everything one ``run`` needs, resolved before the command starts."""

    def __init__(self, parsed: ParsedRun, env: Mapping[str, str]) -> None:
        values = parsed.values
        self.quiet = bool(values.get("quiet"))
        flags = {opt.setting: (values[opt.dest], opt.flags[-1]) for opt in RUN_OPTIONS
                 if opt.setting is not None and opt.dest in values}
        if values.get("no_cloud"):
            flags["cloud.enabled"] = (False, "--no-cloud")
        # A typo in the config file must not fail the build it wraps: defaults, and a warning.
        self.config: Config = config_mod.load(env, lenient=True).with_flags(flags)
        if not self.quiet:
            for problem in self.config.problems:
                sys.stderr.write(f"claude-notify: warning: {problem} (the default is used)\n")
            for key in ("sound", "icon"):
                if (missing := _missing_file(self.config[key])) is not None:
                    sys.stderr.write(f"claude-notify: warning: {key} {missing}: no such file "
                                     f"({self.config.source(key)})\n")
        self.argv, self.display = command_argv(
            parsed.command, exec_=bool(values.get("exec_")), shell=bool(values.get("shell")),
            env=env)
        self.pattern = _compile(values.get("match"))
        self.every = _duration(values.get("every"), "--every")
        # Absolute: `show` and the cloud name the file from wherever they are asked.
        self.log_path = (str(Path(str(values["log"])).expanduser().absolute())
                         if values.get("log") else None)
        self.stream = bool(values.get("stream"))
        if self.stream and (values.get("no_cloud") or not self.config["cloud.enabled"]):
            raise UsageError("--stream sends output to the cloud: it cannot go with --no-cloud")
        self.use_pty = (sys.platform != "win32" and not values.get("no_pty")
                        and os.isatty(1))
        self.env = env
        from claude_notify.dispatch import Dispatcher

        notify_on = ("custom_regex" if self.pattern is not None
                     else "partial" if self.every else "exit")
        self.dispatcher = Dispatcher(self.config, env, quiet=self.quiet, notify_on=notify_on,
                                     stream=self.stream)

    def execute(self) -> int:
        from claude_notify import runner

        tail = runner.Tail(self.config["tail_bytes"])
        base = TaskEvent(type="started", source="run", task_id=new_id(), machine_id=machine_id(),
                         session_id=session_id(self.env), command=self.display, cwd=str(Path.cwd()),
                         host=host_name(), started_at=utcnow(), log_path=self.log_path)
        log = self._open_log()
        if self.config["on"] != "never":
            self.dispatcher.prepare()
            self.dispatcher.emit(base)  # registers the task with the cloud, when logged in
        watcher = self._watcher(base, tail)
        # What sinks run beside the command: the cloud's timer, the --stream upload.
        watches = [w for sink in self.dispatcher.sinks if (w := sink.watch_run(base)) is not None]
        observers: list[runner.Observer] = [*([watcher] if watcher is not None else []), *watches]
        try:
            outcome = runner.run(self.argv, use_pty=self.use_pty, tail=tail, log=log,
                                 observer=_combined(observers), keep_handlers=True)
        finally:
            if log is not None:
                log.close()
        try:  # mid-run notices and the streamed log go out before the task's end
            if watcher is not None:
                watcher.finish(self.config["timeout"])
            for watch in watches:
                if (problem := watch.close()) is not None:
                    self.dispatcher.warn(problem)
        except runner.LateSignal:
            pass  # asked to stop: skip the stragglers, still record the end
        try:
            self._emit(self._finished(base, outcome))
        except runner.LateSignal:
            pass  # asked to stop while notifying: the history (first sink) has the task
        return outcome.wrapper_exit

    def _watcher(self, base: TaskEvent, tail: Tail) -> Watcher | None:
        if self.pattern is None and not self.every:
            return None
        from claude_notify.midrun import Watcher

        start = time.monotonic()
        return Watcher(pattern=self.pattern, every=self.every,
                        interval=self.config["match_interval"], tail=tail,
                        emit=lambda kind, text, out: self._emit(
                            replace(base, type=kind, event_id=new_id(), tail=out, match=text,
                                    duration_s=time.monotonic() - start)))

    @staticmethod
    def _finished(base: TaskEvent, outcome: ChildExit) -> TaskEvent:
        status, sig = outcome_status(outcome)
        # The end is the start plus the child's monotonic run time, not the clock read after
        # the log and the stream were flushed: started_at..ended_at spans exactly duration_s.
        ended_at = (base.started_at + timedelta(seconds=outcome.duration_s)
                    if base.started_at is not None else utcnow())
        return replace(
            base, type="finished", event_id=new_id(), status=status,  # type: ignore[arg-type]
            ended_at=ended_at, duration_s=outcome.duration_s, exit_code=outcome.exit_code,
            signal=sig, tail=clean_output(outcome.tail), peak_rss_bytes=outcome.peak_rss_bytes,
            cpu_time_s=outcome.cpu_time_s)

    def _emit(self, event: TaskEvent) -> None:
        self.dispatcher.emit(event)

    def _open_log(self) -> BinaryIO | None:
        if self.log_path is None:
            return None
        try:
            return Path(self.log_path).open("wb")  # closed by execute()
        except OSError as exc:
            raise UsageError(f"--log: cannot write {self.log_path}: {exc.strerror}") from None


def _missing_file(value: str) -> str | None:
    """``value`` when it names a file (a path, not a sound or icon name) that is not there."""
    if not value or not (os.sep in value or value.startswith(("~", "."))):
        return None
    return None if Path(value).expanduser().exists() else value


def _compile(pattern: object) -> re.Pattern[bytes] | None:
    if not pattern:
        return None
    import re

    try:
        return re.compile(str(pattern).encode("utf-8"), re.MULTILINE)
    except re.error as exc:
        raise UsageError(f"--match: bad regular expression: {exc}") from None


def _duration(raw: object, flag: str) -> float | None:
    if not raw:
        return None
    try:
        value = config_mod.parse_duration(str(raw))
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if value <= 0:
        raise UsageError(f"{flag}: must be longer than zero")
    return value


def run_command(parsed: ParsedRun, env: Mapping[str, str] | None = None) -> int:
    """Resolve, run, notify; the exit code to leave with."""
    return RunSession(parsed, os.environ if env is None else env).execute()
