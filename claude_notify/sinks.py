"""Where task events go. Every sink gets every event; ``notify`` says whether the user's flags
(``--on``, ``--min-duration``, mute) want a notification for it.

The contract is :class:`Sink`: one required method, and optional capabilities that do nothing
unless a sink overrides them, so callers use them on every sink without probing. Sinks outside
the core (the cloud's) are named in :data:`PLUGINS` and imported only when a process uses them.

The desktop sink renders the event and walks the backends best-first until one delivers, all
within one deadline: a hung D-Bus or a stuck helper holds the terminal no more than ``timeout``.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from claude_notify import render
from claude_notify.notifiers.base import DeliveryResult, Focus, Notification, Urgency

if TYPE_CHECKING:
    from claude_notify.config import Config
    from claude_notify.events import TaskEvent
    from claude_notify.notifiers.base import Host, Notifier


@dataclass(frozen=True, slots=True)
class NotifyDecision:
    """Whether the user wants a notification for an event, and why not if held back."""

    notify: bool
    held: str | None = None
    """Set when the flags wanted a notification but mute or quiet hours held it back."""
    urgency: str | None = None
    """The source's urgency hint (a permission prompt is critical), if it has one."""


class RunWatch(Protocol):
    """A sink's part in ``run`` while the command runs: the runner's observer hooks (see
    :class:`claude_notify.runner.Observer`) and an end."""

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        """Every chunk of output relayed: ``buf[:n]``, in a buffer the runner reuses."""

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` at which :meth:`tick` wants to run, if ever."""

    def tick(self) -> None:
        """Called once the deadline has passed."""

    def close(self) -> str | None:
        """The command ended: finish (within the sink's own bound); a problem worth a warning."""


class Sink(ABC):
    """Receives task events. Only :meth:`handle` is required; the rest are capabilities."""

    name: ClassVar[str]
    failure: str | None = None
    """Why the last event handled was not shown, for a sink that shows events (the desktop)."""

    @abstractmethod
    def handle(self, event: TaskEvent, decision: NotifyDecision) -> None:
        """Deal with one event; never raise for a delivery problem."""

    def prepare(self) -> None:  # noqa: B027 - a capability: most sinks have nothing to warm up
        """Warm up in the background while the task runs (the desktop connects to D-Bus)."""

    def not_delivered(self, event: TaskEvent, why: str) -> None:  # noqa: B027 - as prepare
        """Another sink could not show ``event`` (the history must not say "notified")."""

    def watch_run(self, task: TaskEvent) -> RunWatch | None:
        """What runs beside a ``run`` command (a timer, an output stream), given its start."""
        return None


PLUGINS: Final[Mapping[str, str]] = {
    "cloud": "claude_notify.cloud.sink:CloudSink",
    "stream": "claude_notify.cloud.stream:StreamSink",
}
"""Sinks found by name, so a process imports only those it uses (like the notifiers' backends)."""


def plugin(name: str) -> Callable[..., Sink]:
    """The class of the sink named ``name`` in :data:`PLUGINS`; ``KeyError`` when unknown."""
    import importlib

    module_name, _, class_name = PLUGINS[name].partition(":")
    cls: Callable[..., Sink] = getattr(importlib.import_module(module_name), class_name)
    return cls


@dataclass(frozen=True, slots=True)
class Style:
    """How notifications look, resolved from config and flags."""

    title: str
    message: str
    urgency: str
    sound: str
    icon: str
    tail_lines: int
    failure_urgency: str = "critical"
    actions: bool = True
    """Offer "Show log" and a click that focuses the task's terminal (``actions`` setting)."""
    shell_failure_urgency: str = "normal"
    """The shell integration notifies on its own after every long command: a failure there is
    news, not an alarm that stays on screen until dismissed."""

    @classmethod
    def from_config(cls, config: Config) -> Style:
        return cls(
            title=render.check_template(config["title"], option="title"),
            message=render.check_template(config["message"], option="message"),
            urgency=config["urgency"], sound=config["sound"], icon=config["icon"],
            tail_lines=config["tail_lines"], failure_urgency=config["failure_urgency"],
            shell_failure_urgency=config["shell.failure_urgency"], actions=config["actions"],
        )


def build_notification(event: TaskEvent, style: Style, *, urgency: str | None = None,
                       env: Mapping[str, str] | None = None) -> Notification:
    """Render one event into the words and hints of a notification.

    Templates shape what we run; an event that brings its own title (Claude's) keeps it.
    ``env`` is the environment of the process that saw the event: its terminal, for a click.
    """
    values = render.fields_of(event, tail_lines=style.tail_lines)
    own = event.title is not None
    title = render.render(style.title, values) if style.title and not own else (
        render.default_title(event, values))
    body = render.render(style.message, values) if style.message and not own else (
        render.default_body(event, values))
    level = style.urgency if style.urgency != "auto" else urgency or "auto"
    return Notification(title=render.shorten(title, 200), body=body,
                        urgency=_urgency(level, event, style), icon=style.icon or None,
                        sound=None if style.sound.strip().lower() in ("", "none")
                        else style.sound, group=event.task_id,
                        **_actions(event, style, env))


_PANE: Final = re.compile(r"%\d{1,9}")
_FOCUS_SOURCES: Final = frozenset({"run", "shell", "claude-code"})
"""Sources that run in the terminal the task belongs to (``watch`` and the relay do not)."""


def _actions(event: TaskEvent, style: Style,
             env: Mapping[str, str] | None) -> dict[str, Any]:
    """What the final notification's actions need: progress and match notices, replaced by
    the next one, get none."""
    if not style.actions or event.type not in ("finished", "needs_input"):
        return {}
    found: dict[str, Any] = {}
    if event.log_path and event.type == "finished":
        found["log_path"] = event.log_path
    if env is not None and event.source in _FOCUS_SOURCES:
        pane = env.get("TMUX_PANE", "") if env.get("TMUX") else ""
        window = env.get("WINDOWID", "")
        if _PANE.fullmatch(pane):
            found["focus"] = Focus(tmux_pane=pane)
        elif window.isdigit() and 0 < int(window) < 2**32 and env.get("DISPLAY"):
            found["focus"] = Focus(window_id=int(window))
    return found


def _urgency(level: str, event: TaskEvent, style: Style) -> Urgency:
    urgency: Urgency
    if level in ("low", "normal", "critical"):
        urgency = level  # type: ignore[assignment]  # checked just above
    elif event.type == "finished" and event.status == "failure":
        chosen = style.shell_failure_urgency if event.source == "shell" else style.failure_urgency
        urgency = chosen  # type: ignore[assignment]  # one of the three, checked by config
    elif event.type == "progress":
        urgency = "low"
    else:
        urgency = "normal"
    return urgency


class DesktopSink(Sink):
    """Delivers notifications through the local backends."""

    name: ClassVar[str] = "desktop"

    def __init__(self, *, host: Host, backend: str, style: Style, timeout: float,
                 quiet: bool = False) -> None:
        from claude_notify.notifiers import BACKENDS, candidates, known

        self.host = host
        self.style = style
        self.timeout = timeout
        self.quiet = quiet
        self.names = candidates(host) if backend == "auto" else [backend]
        unknown = [n for n in self.names if not known(n)]
        if unknown:
            from claude_notify.errors import UsageError

            raise UsageError(f"unknown backend {unknown[0]!r} "
                             f"(known: auto, {', '.join(sorted(BACKENDS))}; plugins: "
                             "claude-notify plugins)")
        self._loaded: dict[str, Notifier] = {}
        self._prepared: threading.Thread | None = None
        self.last: list[DeliveryResult] = []
        self.failure: str | None = None
        """Why the last notification was not shown by any backend, if it was not."""

    def prepare(self) -> None:
        """Import and connect the first usable backend while the task runs."""
        self._prepared = threading.Thread(target=self._prepare, daemon=True,
                                          name="claude-notify-prepare")
        self._prepared.start()

    def _prepare(self) -> None:
        for name in self.names:
            try:
                notifier = self._notifier(name)
                if notifier.available().ok:
                    prepare = getattr(notifier, "prepare", None)
                    if prepare is not None:
                        prepare(timeout=self.timeout)
                    return
            except Exception:  # noqa: S112 - warming up is best effort; send() reports
                continue

    def handle(self, event: TaskEvent, decision: NotifyDecision) -> None:
        self.failure = None
        if not decision.notify or event.type == "started":
            return
        results = self.deliver(build_notification(event, self.style, urgency=decision.urgency,
                                                  env=self.host.env))
        if not any(r.ok for r in results):
            why = "; ".join(f"{r.backend}: {r.detail}" for r in results) or "no backend"
            self.failure = why
            if not self.quiet:
                from claude_notify.errors import warn

                warn(f"notification not shown ({why})")

    def deliver(self, notification: Notification) -> list[DeliveryResult]:
        """Try backends best-first within the deadline; the results of every attempt."""
        deadline = time.monotonic() + self.timeout
        if self._prepared is not None:
            self._prepared.join(max(0.0, deadline - time.monotonic()))
            self._prepared = None
        results: list[DeliveryResult] = []
        for name in self.names:
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(DeliveryResult(
                    name, False, f"no answer within {self.timeout:g}s (is the notification "
                    "server hung?)", retryable=True))
                break
            try:
                notifier = self._notifier(name)
                availability = notifier.available()
            except Exception as exc:  # a backend that cannot even load is just unavailable
                results.append(DeliveryResult(name, False, f"cannot load: {exc}"))
                continue
            if not availability.ok:
                results.append(DeliveryResult(name, False, availability.reason))
                continue
            result = notifier.send(notification, timeout=left)
            results.append(result)
            if result.ok:
                break
        self.last = results
        return results

    def _notifier(self, name: str) -> Notifier:
        if name not in self._loaded:
            from claude_notify.notifiers import load

            self._loaded[name] = load(name, self.host)
        return self._loaded[name]


class HistorySink(Sink):
    """Records every finished task, notified or not, in the local history."""

    name: ClassVar[str] = "history"

    def __init__(self, *, keep: int) -> None:
        self.keep = keep

    def handle(self, event: TaskEvent, decision: NotifyDecision) -> None:
        if event.type not in ("finished", "needs_input"):
            return
        from claude_notify import history

        try:
            history.record(event, notified=decision.notify, muted=decision.held, keep=self.keep)
        except OSError as exc:
            from claude_notify.errors import ClaudeNotifyError

            raise ClaudeNotifyError(f"history not recorded: {exc}") from None

    def not_delivered(self, event: TaskEvent, why: str) -> None:
        """The desktop could not show it: the row must not say "notified"."""
        if event.type not in ("finished", "needs_input"):
            return
        from claude_notify import history

        try:
            history.record_delivery_failure(event.event_id, why)
        except OSError:
            pass  # the warning on stderr already said it was not shown
