"""Linux desktops: the freedesktop notification service over the session D-Bus.

This is libnotify's protocol spoken directly with jeepney (pure Python, ~5 ms to import), so no
``notify-send`` is needed. We never start a bus of our own: with no session bus address and no
``$XDG_RUNTIME_DIR/bus`` socket the backend is simply unavailable (a similar tool leaked one
``dbus-daemon`` per call by autolaunching).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

if TYPE_CHECKING:
    from jeepney.io.blocking import DBusConnection

_BUS_NAME = "org.freedesktop.Notifications"
_PATH = "/org/freedesktop/Notifications"
_URGENCY = {"low": 0, "normal": 1, "critical": 2}
APP_ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data",  # noqa: PTH118,PTH120
                        "claude-notify.png")
"""The app's own icon, shipped in the package: used when no ``icon`` is set (``none``: no icon)."""
DESKTOP_ENTRY = "claude-notify"
"""The ``desktop-entry`` hint: servers that know a ``claude-notify.desktop`` group by it."""


def bus_address(env: dict[str, str] | Any) -> str | None:
    """The session bus to use, from the environment or the systemd user socket; never spawned."""
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return str(address)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):  # noqa: PTH110,PTH118 - cheap
        return f"unix:path={runtime}/bus"
    return None


def escape_markup(text: str) -> str:
    """Escape text for a server that renders body markup (a subset of XML)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_notify_args(n: Notification, capabilities: frozenset[str],
                      *, play_sound_ourselves: bool, replaces_id: int = 0) -> tuple[Any, ...]:
    """Arguments of ``Notify`` (signature ``susssasa{sv}i``) honouring the server's capabilities."""
    body = escape_markup(n.body) if "body-markup" in capabilities else n.body
    hints: dict[str, tuple[str, Any]] = {"urgency": ("y", _URGENCY[n.urgency])}
    if n.sound and not play_sound_ourselves:
        key = "sound-file" if os.sep in n.sound else "sound-name"
        hints[key] = ("s", n.sound)
    hints["desktop-entry"] = ("s", DESKTOP_ENTRY)
    icon = n.icon or APP_ICON
    if icon == "none":
        icon = ""
    elif os.sep in icon:
        hints["image-path"] = ("s", icon)
    actions = notify_actions(n) if "actions" in capabilities else []
    return (n.app_name, replaces_id, icon, n.title, body, actions, hints, n.timeout_ms)


def notify_actions(n: Notification) -> list[str]:
    """``Notify``'s flat ``[key, label, ...]``: "default" (a click) focuses the terminal, "log"
    opens the log. A window id is useless without ``xdotool``, so it offers no click then."""
    if n.focus is None and not n.log_path:
        return []
    from claude_notify.notifiers.actions import DEFAULT, LOG, can_focus

    actions: list[str] = []
    if n.focus is not None and can_focus(n.focus):
        actions += [DEFAULT, "Go to terminal"]
    if n.log_path:
        actions += [LOG, "Show log"]
    return actions


class DBusNotifier:
    """``org.freedesktop.Notifications`` on the session bus."""

    name: ClassVar[str] = "dbus"

    def __init__(self, host: Host) -> None:
        self.host = host
        self._conn: DBusConnection | None = None
        self._caps: frozenset[str] | None = None
        self._shown: dict[str, int] = {}
        """The server's id of the last notification of each group: the next one replaces it."""

    def available(self) -> Availability:
        if self.host.platform != "linux" and not self.host.platform.startswith("freebsd"):
            return Availability(False, "not a freedesktop platform")
        address = bus_address(self.host.env)
        if address is None:
            return Availability(False, "no session D-Bus (DBUS_SESSION_BUS_ADDRESS unset, "
                                       "no $XDG_RUNTIME_DIR/bus)")
        return Availability(True, f"session bus at {address}")

    def prepare(self, *, timeout: float) -> None:
        """Connect and read the server's capabilities ahead of time (while the task runs)."""
        self._connect(time.monotonic() + timeout)

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        deadline = time.monotonic() + timeout
        try:
            conn, caps = self._connect(deadline)
            from jeepney import DBusAddress, new_method_call

            addr = DBusAddress(_PATH, bus_name=_BUS_NAME, interface=_BUS_NAME)
            ourselves = bool(notification.sound) and "sound" not in caps
            replaces = self._shown.get(notification.group, 0) if notification.group else 0
            args = build_notify_args(notification, caps, play_sound_ourselves=ourselves,
                                     replaces_id=replaces)
            msg = new_method_call(addr, "Notify", "susssasa{sv}i", args)
            reply = conn.send_and_get_reply(msg, timeout=_left(deadline))
            _raise_for_error(reply)
            if args[5]:
                self._hand_over(conn, int(reply.body[0]), notification)
        except TimeoutError:
            self.close()
            return DeliveryResult(self.name, False, "the notification server did not answer "
                                  f"within {timeout:.1f}s", retryable=True)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            self.close()
            return DeliveryResult(self.name, False, _one_line(exc), retryable=True)
        if ourselves and notification.sound:
            from claude_notify.notifiers.sound import play

            play(notification.sound, self.host.env)
        if notification.group:
            self._shown[notification.group] = int(reply.body[0])
        return DeliveryResult(self.name, True, f"notification id {reply.body[0]}")

    def _hand_over(self, conn: DBusConnection, ident: int, notification: Notification) -> None:
        """Give this connection to a detached listener that acts on the notification's actions.

        The server sends ``ActionInvoked`` only to the connection that called ``Notify``, and
        ``run`` must not wait for a click; the connection is ours alone from here on, so we
        drop it and connect afresh for the next notification (two readers would steal each
        other's replies)."""
        from claude_notify.notifiers.actions import spawn_listener

        self._conn = None
        self._caps = None
        try:
            spawn_listener(conn.sock.fileno(), ident, notification, self.host.env)
        finally:
            conn.close()  # our copy of the socket; the listener holds its own

    def server_info(self, *, timeout: float) -> str:
        """``name version (vendor)`` of the notification server, for ``doctor``."""
        deadline = time.monotonic() + timeout
        conn, _ = self._connect(deadline)
        from jeepney import DBusAddress, new_method_call

        addr = DBusAddress(_PATH, bus_name=_BUS_NAME, interface=_BUS_NAME)
        reply = conn.send_and_get_reply(new_method_call(addr, "GetServerInformation"),
                                        timeout=_left(deadline))
        _raise_for_error(reply)
        name, vendor, version, _spec = reply.body
        return f"{name} {version} ({vendor})"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._caps = None

    def _connect(self, deadline: float) -> tuple[DBusConnection, frozenset[str]]:
        if self._conn is not None and self._caps is not None:
            return self._conn, self._caps
        address = bus_address(self.host.env)
        if address is None:
            raise RuntimeError("no session D-Bus")
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        conn = open_dbus_connection(bus=address, auth_timeout=_left(deadline))
        try:
            addr = DBusAddress(_PATH, bus_name=_BUS_NAME, interface=_BUS_NAME)
            reply = conn.send_and_get_reply(new_method_call(addr, "GetCapabilities"),
                                            timeout=_left(deadline))
            _raise_for_error(reply)
        except BaseException:
            conn.close()
            raise
        self._conn, self._caps = conn, frozenset(reply.body[0])
        return self._conn, self._caps


def _raise_for_error(reply: Any) -> None:
    from jeepney import MessageType

    if reply.header.message_type == MessageType.error:
        name = reply.header.fields.get(4, "error")  # HeaderFields.error_name
        detail = reply.body[0] if reply.body else ""
        if name == "org.freedesktop.DBus.Error.ServiceUnknown":
            raise RuntimeError("no notification server is running on the session bus")
        raise RuntimeError(f"{name}: {detail}".strip(": "))


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
