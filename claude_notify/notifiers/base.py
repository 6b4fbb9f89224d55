"""What every backend speaks: a :class:`Notification` in, a :class:`DeliveryResult` out.

Backends never raise for a failed delivery: they answer ``DeliveryResult(ok=False, detail=...)``
so the caller can try the next one and tell the user, in one line, why nothing showed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

Urgency = Literal["low", "normal", "critical"]
URGENCIES: tuple[Urgency, ...] = ("low", "normal", "critical")


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One notification, already rendered; backends only escape it for their transport."""

    title: str
    """Plain text, one line."""
    body: str = ""
    """Plain text, may span lines; backends escape it (markup, AppleScript, argv)."""
    urgency: Urgency = "normal"
    """Hint for the notification server; ``critical`` usually means sticky."""
    icon: str | None = None
    """An icon file path or a freedesktop icon name."""
    sound: str | None = None
    """A sound file path or a platform sound name; ``None`` for silence."""
    app_name: str = "claude-notify"
    """The application name shown by the notification server."""
    timeout_ms: int = -1
    """Expiry in milliseconds; -1 leaves it to the server."""
    group: str | None = None
    """Notifications of one task share it: a backend that can replace one with the next (D-Bus
    ``replaces_id``, terminal-notifier ``-group``) shows only the latest, so "still running"
    and "matched" notices give way to the final one."""
    log_path: str | None = None
    """The task's log file: a backend that supports actions offers "Show log" opening it."""
    focus: Focus | None = None
    """Where the task's terminal is: a click on the notification brings it forward."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Focus:
    """A terminal a click can bring forward; both ids are validated where they are read."""

    tmux_pane: str | None = None
    """The tmux pane (``%12``) the task ran in; ``$TMUX`` in the environment names the server."""
    window_id: int | None = None
    """The X11 window of the terminal (``$WINDOWID``), when not in tmux."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one delivery attempt went."""

    backend: str
    """Name of the backend that tried."""
    ok: bool
    """Whether the notification was handed over to something that shows it."""
    detail: str = ""
    """One line, safe to show the user (why it failed, or the server's id)."""
    retryable: bool = False
    """Whether the same attempt could succeed later (a timeout, a busy server)."""


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a backend can be used here, and why (shown by ``claude-notify doctor``)."""

    ok: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """The facts backend selection depends on, gathered once so tests can pass them in."""

    platform: str
    """``sys.platform`` value: ``linux``, ``darwin``, ``win32``."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The environment to decide with."""
    is_wsl: bool = False
    """Running inside Windows Subsystem for Linux."""
    tty_path: str | None = "/dev/tty"
    """The controlling terminal to write escape sequences to, if any."""
    settings: Mapping[str, object] = field(default_factory=dict)
    """Resolved configuration values backends may honour (``terminal.sequence``…)."""

    @property
    def is_ssh(self) -> bool:
        """A desktop API here would notify the remote machine, not the user's."""
        return bool(self.env.get("SSH_CONNECTION") or self.env.get("SSH_TTY"))

    @property
    def in_tmux(self) -> bool:
        """Escape sequences need tmux's passthrough wrapping."""
        return bool(self.env.get("TMUX"))


class Notifier(Protocol):
    """A notification backend. Constructed cheaply; nothing is imported or opened before use."""

    name: ClassVar[str]

    def available(self) -> Availability:
        """Cheap and free of side effects: can this backend work here, and why not."""
        ...

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        """Deliver, never blocking longer than ``timeout`` seconds, never raising."""
        ...


@dataclass
class MemoryNotifier:
    """An in-memory backend for tests and dry runs: it keeps what it was sent."""

    name: ClassVar[str] = "memory"
    sent: list[Notification] = field(default_factory=list)
    fail_with: str | None = None

    def available(self) -> Availability:
        return Availability(True, "in-memory backend")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        if self.fail_with is not None:
            return DeliveryResult(self.name, False, self.fail_with)
        self.sent.append(notification)
        return DeliveryResult(self.name, True, f"kept #{len(self.sent)}")
