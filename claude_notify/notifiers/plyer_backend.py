"""plyer, the last generic fallback, run in a child Python so its habits cannot reach us.

In-process, plyer would print tracebacks and warnings on our stderr when a platform module is
missing, call ``notify-send`` with no timeout, and on Windows hold the command's exit for the
balloon's whole display time (a non-daemon thread sleeping ``timeout`` seconds). The child
answers one line as soon as the notification is up; it is killed, with anything it started, if
that answer misses the deadline, and otherwise left to keep a Windows balloon on screen.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

from claude_notify.notifiers._helpers import clean_text
from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

if TYPE_CHECKING:
    import subprocess

TITLE_LIMIT: Final = 200
BODY_LIMIT: Final = 1000
_DEFAULT_SECONDS: Final = 10

# The child: sys.path loses "" so a plyer.py in the current directory is never imported; one
# JSON-encoded (so ASCII, whatever the console encoding) line answers; a failure in plyer's own
# balloon thread within half a second still counts as a failure.
_CHILD: Final = """\
import io, json, os, sys, threading, warnings
sys.path[:] = [p for p in sys.path if p]
warnings.simplefilter("ignore")
sys.stderr = io.StringIO()
def answer(text, code):
    sys.stdout.write(json.dumps(text) + "\\n")
    sys.stdout.flush()
    if code:
        os._exit(code)
threading.excepthook = lambda a: answer(f"{a.exc_type.__name__}: {a.exc_value}", 1)
try:
    from plyer import notification
    notification.notify(**json.loads(sys.argv[1]))
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(0.5)
except Exception as exc:
    answer(f"{type(exc).__name__}: {exc}", 1)
answer("ok", 0)
"""

_lingering: list[subprocess.Popen[bytes]] = []
"""Children still holding a Windows balloon, kept so none is collected while it runs."""


def _no_option(text: str) -> str:
    # plyer puts the title and message before the options of notify-send's argv, where a
    # leading "-" would be taken for an option; a zero-width space keeps it text.
    return "\u200b" + text if text.startswith("-") else text


def build_plyer_kwargs(n: Notification, *, platform: str) -> dict[str, object]:
    """The keyword arguments for ``plyer.notification.notify``."""
    icon = n.icon or ""
    if platform == "win32" and not icon.lower().endswith(".ico"):
        icon = ""  # plyer's balloon raises for anything but an .ico file
    seconds = _DEFAULT_SECONDS if n.timeout_ms < 0 else max(1, round(n.timeout_ms / 1000))
    return {
        "title": _no_option(clean_text(n.title, limit=TITLE_LIMIT, newlines=False)),
        "message": _no_option(clean_text(n.body, limit=BODY_LIMIT)),
        "app_name": clean_text(n.app_name, limit=TITLE_LIMIT, newlines=False),
        "app_icon": icon,
        "timeout": seconds,
    }


def build_argv(n: Notification, *, platform: str, python: str) -> list[str]:
    """The child's argv: the script, then the keyword arguments as one JSON (ASCII) string."""
    return [python, "-c", _CHILD, json.dumps(build_plyer_kwargs(n, platform=platform))]


def plyer_takes_for_flatpak(root: Path = Path("/")) -> bool:
    """plyer treats any host with ``/app`` as Flatpak and builds a portal call from the raw text."""
    return (root / "app").is_dir()


def _has_session_bus(env: Mapping[str, str]) -> bool:
    # Without one, notify-send would autolaunch a bus daemon and leave it running.
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    return runtime is not None and Path(runtime, "bus").exists()


class PlyerNotifier:
    """plyer's notification facade: notify-send or dbus-python on Linux, a balloon on Windows."""

    name: ClassVar[str] = "plyer"

    def __init__(self, host: Host) -> None:
        self.host = host

    def available(self) -> Availability:
        import importlib.util

        platform = self.host.platform
        if platform == "darwin":
            return Availability(False, "plyer's macOS notifications no longer show on modern macOS")
        if platform not in ("linux", "win32"):
            return Availability(False, f"plyer is not supported here ({platform})")
        if not sys.executable or importlib.util.find_spec("plyer") is None:
            return Availability(False, "plyer is not installed")
        if platform == "linux" and plyer_takes_for_flatpak():
            return Availability(False, "plyer would take this host for Flatpak (/app exists)")
        if platform == "linux" and not _has_session_bus(self.host.env):
            return Availability(False, "no D-Bus session bus for plyer's notify-send")
        return Availability(True, "plyer is installed")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        import time

        if timeout <= 0:
            return DeliveryResult(self.name, False, "no time left to run plyer", retryable=True)
        deadline = time.monotonic() + timeout
        _reap()
        argv = build_argv(notification, platform=self.host.platform, python=sys.executable)
        try:
            child = _Child(argv, dict(self.host.env))
        except OSError as exc:
            return DeliveryResult(self.name, False, f"cannot start Python: {exc.strerror or exc}")
        line = child.answer(timeout)
        if line is None:
            child.kill()
            return DeliveryResult(self.name, False, f"plyer did not answer within {timeout:g}s",
                                  retryable=True)
        child.settle(min(0.2, max(0.0, deadline - time.monotonic())))
        try:
            answer = json.loads(line)
        except ValueError:
            code = child.proc.returncode
            return DeliveryResult(self.name, False, f"plyer's child exited ({code}), no answer")
        if answer == "ok":
            return DeliveryResult(self.name, True, "handed to plyer")
        return DeliveryResult(self.name, False,
                              "plyer: " + clean_text(str(answer), limit=200, newlines=False))


class _Child:
    """The child Python, read by a thread: on Windows a pipe cannot be read with a timeout."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import subprocess
        import threading

        if sys.platform == "win32":
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env,
                                         creationflags=subprocess.CREATE_NO_WINDOW)
        else:
            # Its own session, so a hung notify-send it started is killed with it.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        self.lines: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        if self.proc.stdout is not None:
            self.lines.append(self.proc.stdout.readline())

    def answer(self, timeout: float) -> bytes | None:
        """The first line, or ``None`` if none came within ``timeout`` seconds."""
        self.reader.join(timeout)
        return self.lines[0] if self.lines else None

    def settle(self, grace: float) -> None:
        """Reap a child that is exiting; keep one that holds a Windows balloon on screen."""
        import subprocess

        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            _lingering.append(self.proc)
            return
        self._close()

    def kill(self) -> None:
        if sys.platform != "win32":
            import os
            import signal

            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        self.reader.join(0.2)  # EOF follows the kill; only then may the pipe be closed
        if not self.reader.is_alive():
            self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _reap() -> None:
    for proc in list(_lingering):
        if proc.poll() is not None:
            _lingering.remove(proc)
            if proc.stdout is not None:
                proc.stdout.close()
