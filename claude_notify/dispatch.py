"""One road for every task event, whatever saw it (run, watch, shell, the Claude Code hook).

The dispatcher decides once — ``on``, ``min_duration``, mute and quiet hours — and hands the event
and that decision to every sink: the history records everything, the desktop notifies when told.
A sink's failure is one line on stderr and never reaches the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from claude_notify.errors import ClaudeNotifyError, warn
from claude_notify.sinks import NotifyDecision

if TYPE_CHECKING:
    from claude_notify.config import Config
    from claude_notify.events import TaskEvent
    from claude_notify.sinks import Sink


def wanted(event: TaskEvent, *, on: str, min_duration: float) -> bool:
    """``--on`` and ``--min-duration``: the flags that decide for every sink."""
    if on == "never":
        return False
    if event.type == "finished" and (event.duration_s or 0.0) < min_duration:
        return False
    if on == "success":
        return event.status == "success"
    if on == "failure":
        return event.status in ("failure", "interrupted")
    return True


class Dispatcher:
    """The sinks for one process, built from resolved configuration."""

    def __init__(self, config: Config, env: Mapping[str, str], *, quiet: bool = False,
                 sinks: list[Sink] | None = None, notify_on: str = "exit",
                 stream: bool = False) -> None:
        self.config = config
        self.quiet = quiet
        self.sinks = sinks if sinks is not None else default_sinks(
            config, env, quiet=quiet, notify_on=notify_on, stream=stream)

    def prepare(self) -> None:
        """Warm up sinks that can (connect to D-Bus) while the task runs."""
        for sink in self.sinks:
            sink.prepare()

    def decide(self, event: TaskEvent, *, on: str | None = None,
               min_duration: float | None = None, urgency: str | None = None) -> NotifyDecision:
        want = wanted(event, on=on or self.config["on"],
                      min_duration=self.config["min_duration"] if min_duration is None
                      else min_duration)
        if not want:
            return NotifyDecision(False, urgency=urgency)
        from claude_notify import mute

        held = mute.reason(mute.parse_hours(self.config["quiet_hours"]))
        return NotifyDecision(held is None, held, urgency)

    def emit(self, event: TaskEvent, *, on: str | None = None,
             min_duration: float | None = None, urgency: str | None = None) -> NotifyDecision:
        decision = self.decide(event, on=on, min_duration=min_duration, urgency=urgency)
        for sink in self.sinks:
            try:
                sink.handle(event, decision)
            except ClaudeNotifyError as exc:
                self.warn(str(exc))
            except Exception as exc:  # a sink bug must never cost the user their exit code
                self.warn(f"{sink.name} failed: {type(exc).__name__}: {exc}")
        failure = next((sink.failure for sink in self.sinks if sink.failure), None)
        if failure:  # the history was written first: it learns the popup did not show
            for sink in self.sinks:
                sink.not_delivered(event, failure)
        return decision

    def warn(self, message: str) -> None:
        if not self.quiet:
            warn(message)


def default_sinks(config: Config, env: Mapping[str, str], *, quiet: bool,
                  notify_on: str = "exit", stream: bool = False) -> list[Sink]:
    """The history and the desktop notifier; the cloud joins them once logged in, and the
    output stream when ``run --stream`` asks for it."""
    from claude_notify.notifiers import current_host
    from claude_notify.sinks import DesktopSink, HistorySink, Style, plugin

    settings = {key: config[key] for key in ("terminal.sequence", "terminal.bell")}
    desktop = DesktopSink(host=current_host(env, settings), backend=config["backend"],
                          style=Style.from_config(config), timeout=config["timeout"],
                          quiet=quiet)
    sinks: list[Sink] = []
    if config["history.keep"] > 0:  # first: recorded even if the user interrupts a slow send
        sinks.append(HistorySink(keep=config["history.keep"]))
    sinks.append(desktop)
    if config["cloud.enabled"]:
        from claude_notify.paths import state_dir

        # No login, no network: one stat on the hot path (the path is cloud.account's).
        if (state_dir() / "cloud.json").exists():
            sinks.append(plugin("cloud")(channels=config["cloud.channels"], notify_on=notify_on))
        if stream:  # logged in or not: the stream says so itself, once the command has run
            sinks.append(plugin("stream")())
    return sinks
