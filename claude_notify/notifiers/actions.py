"""Acting on a freedesktop notification's actions after ``claude-notify`` has exited.

The server answers a click with ``ActionInvoked(id, key)`` sent only to the connection that
called ``Notify`` (dunst unicasts; others broadcast, which the match rule below also catches),
while ``run`` must return as soon as the notification is shown. So the sender hands its
connection's socket to a detached listener and forgets it (:func:`spawn_listener`).

Why a fresh interpreter rather than a bare ``fork()``: the sender may have other threads (the
desktop sink warms up in one, the cloud sink uploads in others), and a forked child inherits
their locks in whatever state they were, including the import lock. ``subprocess`` forks and
execs at once in C, so nothing of the parent's state survives but the socket we pass on; the
bus connection itself is the socket, already authenticated, so the listener speaks on it as is.

The listener runs in its own session with stdio on ``/dev/null``, ignores SIGHUP and SIGINT
(closing the terminal or ^C in it must not cancel a later click), and exits when the
notification closes, the bus goes away, or after :data:`LIFETIME` seconds. It only ever runs
fixed programs with validated arguments as separate argv items, never a shell.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import socket

    from claude_notify.notifiers.base import Focus, Notification

DEFAULT: Final = "default"
"""The action a click on the notification's body invokes: focus the terminal."""
LOG: Final = "log"
"""The "Show log" action."""
LIFETIME: Final = 3600.0
"""A notification still unanswered after an hour is forgotten: nobody is coming back to it."""

_PANE: Final = re.compile(r"%\d{1,9}")
_INTERFACE: Final = "org.freedesktop.Notifications"
_PATH: Final = "/org/freedesktop/Notifications"
_SERIAL: Final = 0x7FFF0000
"""Serial of our one call (``AddMatch``): far above any the sender used on this connection."""


def can_focus(focus: Focus) -> bool:
    """Whether a click could bring ``focus`` forward here (tmux always; X11 with xdotool)."""
    if focus.tmux_pane is not None:
        return True
    import shutil

    return focus.window_id is not None and shutil.which("xdotool") is not None


def listener_argv(ident: int, notification: Notification) -> list[str]:
    """The listener's arguments: the notification's id and what each action acts on."""
    argv = ["--id", str(ident)]
    if notification.log_path:
        argv += ["--log", notification.log_path]
    focus = notification.focus
    if focus is not None and focus.tmux_pane is not None:
        argv += ["--tmux-pane", focus.tmux_pane]
    elif focus is not None and focus.window_id is not None:
        argv += ["--window-id", str(focus.window_id)]
    return argv


def spawn_listener(fd: int, ident: int, notification: Notification,
                   env: Mapping[str, str]) -> None:
    """Start the detached listener on the bus socket ``fd``; best effort, never raises."""
    if sys.platform != "win32":  # freedesktop only; this keeps the Windows type check honest
        _spawn(fd, listener_argv(ident, notification), env)


if sys.platform != "win32":
    def _spawn(fd: int, args: list[str], env: Mapping[str, str]) -> None:
        import fcntl
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: PTH100,PTH120
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from claude_notify.notifiers.actions import main; sys.exit(main(sys.argv[2:]))")
        try:
            # The socket may sit at 0-2 (the wrapper had closed its stdin before connecting,
            # seen under tmux), where the child's stdio would be put over it: hand over a copy
            # from fd 3 up.
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError:
            return
        argv = [sys.executable, "-c", code, root, "--fd", str(high), *args]
        try:
            subprocess.Popen(argv, env=dict(env), pass_fds=(high,), start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True)
        except OSError:
            pass  # the notification is shown; only its buttons will do nothing
        finally:
            os.close(high)


# -- the listener (a process of its own) ---------------------------------------------------------

def main(argv: Sequence[str]) -> int:
    """Wait for this notification's actions on the inherited bus socket, act, exit on close."""
    import signal

    if sys.platform != "win32":  # freedesktop only; this keeps the Windows type check honest
        for sig in (signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
    args = _parse(argv)
    if args is None:
        return 2
    import socket

    with socket.socket(fileno=int(args["fd"])) as sock:
        _add_match(sock)
        for key in _actions_invoked(sock, int(args["id"])):
            _act(key, args)
    return 0


def _parse(argv: Sequence[str]) -> dict[str, str] | None:
    """``--name value`` pairs, each checked: anything malformed means no listener at all."""
    if len(argv) % 2:
        return None
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    checks: dict[str, Callable[[str], object]] = {
        "--fd": str.isdigit, "--id": str.isdigit, "--log": os.path.isabs,
        "--tmux-pane": _PANE.fullmatch, "--window-id": str.isdigit}
    if set(args) - set(checks) or not {"--fd", "--id"} <= set(args):
        return None
    if not all(checks[name](value) for name, value in args.items()):
        return None
    return {name.lstrip("-"): value for name, value in args.items()}


def _add_match(sock: socket.socket) -> None:
    """Also receive the signals of servers that broadcast them (dunst unicasts to us anyway)."""
    from jeepney.bus_messages import MatchRule, message_bus

    rule = MatchRule(type="signal", interface=_INTERFACE, path=_PATH)
    sock.sendall(message_bus.AddMatch(rule).serialise(serial=_SERIAL))


def _actions_invoked(sock: socket.socket, ident: int) -> Iterator[str]:
    """Each action key invoked on notification ``ident``, until it closes or time runs out."""
    import select
    import time

    from jeepney.low_level import MessageType, Parser

    parser = Parser()
    deadline = time.monotonic() + LIFETIME
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return
        data = sock.recv(65536)
        if not data:
            return  # the bus is gone, and the notification with it
        for msg in parser.feed(data):
            header = msg.header
            if (header.message_type != MessageType.signal or not msg.body
                    or header.fields.get(2) != _INTERFACE or msg.body[0] != ident):
                continue  # 2: HeaderFields.interface
            member = header.fields.get(3)  # HeaderFields.member
            if member == "NotificationClosed":
                return
            if member == "ActionInvoked" and len(msg.body) > 1:
                yield str(msg.body[1])


def _act(key: str, args: Mapping[str, str]) -> None:
    """Run the action's program, if it is installed; a failure is nobody's business here."""
    import shutil
    import subprocess

    commands: list[list[str]] = []
    if key == LOG and "log" in args:
        commands = [["xdg-open", args["log"]]]
    elif key == DEFAULT and "tmux-pane" in args:
        pane = args["tmux-pane"]
        commands = [["tmux", "select-window", "-t", pane], ["tmux", "select-pane", "-t", pane]]
    elif key == DEFAULT and "window-id" in args:
        commands = [["xdotool", "windowactivate", args["window-id"]]]
    for command in commands:
        if shutil.which(command[0]) is None:
            return
        try:
            # xdg-open may stay for as long as the viewer it started: do not wait for it.
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if command[0] != "xdg-open":
                proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return
