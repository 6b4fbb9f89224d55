"""A real Linux desktop for tests: Xvfb, a private D-Bus session bus and dunst, read back.

Tests that claim "the user saw a notification" must prove it against a real notification server,
not a mock. :class:`DesktopSession` owns every process it starts (each in its own process group,
killed on :meth:`DesktopSession.close`), so nothing leaks into the developer's desktop or the next
test run. Every wait has a deadline; nothing sleeps and hopes.

What dunst 1.9 gives us and how we read it:

- ``dunstctl history`` lists only *closed* notifications, so each read closes all first.
- There is no history-clear, so a test takes :meth:`DesktopSession.marker` (the highest id so far)
  before acting and looks only at newer ids.
- The history has no urgency field; a dunst rule ``script`` records ``DUNST_ID DUNST_URGENCY`` for
  every notification (``always_run_script`` runs it on arrival) and we join the two by id.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypedDict

import pytest

REQUIRED_TOOLS = ("Xvfb", "dbus-daemon", "dunst", "dunstctl", "busctl", "dbus-send")
"""Executables the harness runs (``dunstctl`` itself shells out to ``busctl`` and ``dbus-send``)."""

APT_PACKAGES = "xvfb dbus-x11 dunst libnotify-bin"

_STRIPPED_ENV_PREFIXES = (
    "SSH_",
    "TMUX",
    "DBUS_",
    "KITTY_",
    "WAYLAND_",
    "TERM_PROGRAM",
    "LC_TERMINAL",
    "CLAUDE_NOTIFY_",
)
_STRIPPED_ENV_KEYS = frozenset({"DISPLAY", "XAUTHORITY", "WINDOWID", "STY", "VTE_VERSION"})

_BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- No service directories: nothing may be auto-activated behind the test's back. -->
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_DUNSTRC = """\
[global]
    monitor = 0
    follow = none
    # Identical notifications must stay separate entries, or a repeated test sees nothing new.
    stack_duplicates = false
    history_length = 5000
    notification_limit = 0
    idle_threshold = 0
    markup = full
    always_run_script = true
    icon_path = ""

[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0

[record_urgency]
    script = "{script}"
"""

_URGENCY_SCRIPT = """\
#!/bin/sh
printf '%s %s %s\\n' "$DUNST_ID" "$DUNST_URGENCY" "$DUNST_SUMMARY" >> '{log}'
"""


class Received(TypedDict):
    """One notification as dunst received it."""

    id: int
    summary: str
    body: str
    """As sent by the client."""
    message: str
    """As dunst formatted it (``<b>summary</b>\\nbody``), markup not yet rendered."""
    appname: str
    urgency: str | None
    """``low``, ``normal`` or ``critical``; ``None`` until dunst's rule script has recorded it."""
    icon_path: str


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> list[str]:
    """Those of ``tools`` (by default, what the harness runs) that are not on ``PATH``."""
    return [tool for tool in tools if shutil.which(tool) is None]


def require_tools(tools: Sequence[str], *, packages: str, purpose: str) -> None:
    """Skip the test when ``tools`` are missing, but fail it under ``CI``.

    In CI a skip would go green while the real-desktop code never ran.
    """
    missing = missing_tools(tools)
    if not missing:
        return
    reason = f"{purpose} needs {', '.join(missing)} (apt-get install {packages})"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def clean_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without anything that ties a child to the developer's own desktop or terminal."""
    return {
        key: value
        for key, value in base.items()
        if key not in _STRIPPED_ENV_KEYS and not key.startswith(_STRIPPED_ENV_PREFIXES)
    }


class DesktopSession:
    """Xvfb + private session bus + dunst, started by :meth:`start`, all killed by :meth:`close`."""

    def __init__(self, workdir: Path, *, start_timeout: float = 15.0) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.display = ""
        self.env: dict[str, str] = {}
        """Environment for children: DISPLAY, DBUS_SESSION_BUS_ADDRESS, private XDG dirs."""
        self._xvfb: subprocess.Popen[bytes] | None = None
        self._bus: subprocess.Popen[bytes] | None = None
        self._dunst: subprocess.Popen[bytes] | None = None
        self._spawned: list[subprocess.Popen[Any]] = []
        self._frozen = False
        self._urgency_log = workdir / "urgency.log"
        self._logs: list[IO[bytes]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> DesktopSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> DesktopSession:
        """Start Xvfb, the bus and dunst; on any failure stop what did start, then raise."""
        try:
            self._start_xvfb()
            self._start_bus()
            self._start_dunst()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything this session started, newest first. Safe to call twice."""
        self.thaw()
        for proc in reversed(self._spawned):
            _stop(proc)
        self._spawned.clear()
        for proc in (self._dunst, self._bus, self._xvfb):
            if proc is not None:
                _stop(proc)
        self._dunst = self._bus = self._xvfb = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    def _log(self, name: str) -> IO[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(log)
        return log

    def _start_xvfb(self) -> None:
        # -displayfd lets Xvfb pick a free display itself: no race with other sessions on the host.
        self._xvfb, number = self._start_reporting(
            lambda fd: [
                "Xvfb",
                "-displayfd",
                fd,
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "1280x800x24",
            ],
            name="xvfb",
        )
        socket = Path(f"/tmp/.X11-unix/X{number}")
        _wait_until(socket.exists, self.start_timeout, f"{socket} to appear", self._xvfb)
        self.display = f":{number}"

    def _start_bus(self) -> None:
        runtime = self.workdir / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        config = self.workdir / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=runtime / "bus"), encoding="utf-8")
        self._bus, address = self._start_reporting(
            lambda fd: [
                "dbus-daemon",
                f"--config-file={config}",
                "--nofork",
                "--nopidfile",
                f"--print-address={fd}",
            ],
            name="dbus",
        )
        self.env = clean_env(os.environ) | {
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": address,
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
        }

    def _start_reporting(
        self, argv: Callable[[str], list[str]], *, name: str
    ) -> tuple[subprocess.Popen[Any], str]:
        """Start a daemon that prints one line (display, address) on a pipe once it is ready."""
        read_fd, write_fd = os.pipe()
        try:
            proc = _popen(
                argv(str(write_fd)),
                env=clean_env(os.environ),
                stdout=self._log(name),
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            return proc, _read_line(read_fd, proc, self.start_timeout)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)

    def _start_dunst(self) -> None:
        script = self.workdir / "record-urgency.sh"
        script.write_text(_URGENCY_SCRIPT.format(log=self._urgency_log), encoding="utf-8")
        script.chmod(0o755)
        self._urgency_log.touch()
        dunstrc = self.workdir / "dunstrc"
        dunstrc.write_text(_DUNSTRC.format(script=script), encoding="utf-8")
        self._dunst = _popen(
            ["dunst", "-config", str(dunstrc)], env=self.env, stdout=self._log("dunst")
        )
        _wait_until(
            lambda: self._dunstctl("count", "displayed", check=False).returncode == 0,
            self.start_timeout,
            "dunst to answer on the bus",
            self._dunst,
        )

    # -- children --------------------------------------------------------------------------------

    def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in this desktop (``env`` is merged over :attr:`env`); killed on close."""
        proc = _popen(argv, env=self.env | dict(env or {}), **kwargs)
        self._spawned.append(proc)
        return proc

    def reap(self, proc: subprocess.Popen[Any]) -> None:
        """Stop a child from :meth:`spawn` now, with its whole process group."""
        _stop(proc)
        if proc in self._spawned:
            self._spawned.remove(proc)

    # -- reading what dunst received ---------------------------------------------------------

    def marker(self) -> int:
        """The highest notification id so far; take it before a case, read only newer ids."""
        self._dunstctl("close-all")
        ids = [n["id"] for n in self._history()]
        ids.extend(self._urgencies())
        return max(ids, default=0)

    def notifications_since(self, marker: int) -> list[Received]:
        """Every notification with an id above ``marker``, oldest first (closes them all first)."""
        self._dunstctl("close-all")
        urgencies = self._urgencies()
        found = [n for n in self._history() if n["id"] > marker]
        for n in found:
            n["urgency"] = urgencies.get(n["id"])
        return sorted(found, key=lambda n: n["id"])

    def wait_for(
        self,
        predicate: Callable[[Received], bool] = lambda n: True,
        *,
        since: int,
        timeout: float = 5.0,
    ) -> Received:
        """The first notification newer than ``since`` that matches, polling until ``timeout``.

        Raises ``TimeoutError`` listing what did arrive, so a failure shows the near misses.
        """
        deadline = time.monotonic() + timeout
        seen: list[Received] = []
        while True:
            seen = self.notifications_since(since)
            # Only complete entries: the urgency record lands a moment after the history entry.
            for n in seen:
                if n["urgency"] is not None and predicate(n):
                    return n
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching notification within {timeout}s; got {seen!r}")
            time.sleep(0.05)

    # -- faults ----------------------------------------------------------------------------------

    def freeze(self) -> None:
        """SIGSTOP dunst: it keeps its bus name, so every ``Notify`` call hangs unanswered.

        Do not read notifications while frozen: ``dunstctl`` would hang too (it has a timeout).
        """
        if self._dunst is not None and not self._frozen:
            os.kill(self._dunst.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        """SIGCONT dunst; the calls it missed are then answered."""
        if self._dunst is not None and self._frozen:
            os.kill(self._dunst.pid, signal.SIGCONT)
        self._frozen = False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Hung notification server for the ``with`` block, thawed even if the test fails."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    # -- internals --------------------------------------------------------------------------------

    def _dunstctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["dunstctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=5,
            check=check,
        )

    def _history(self) -> list[Received]:
        raw = json.loads(self._dunstctl("history").stdout)
        return [_received(entry) for group in raw["data"] for entry in group]

    def _urgencies(self) -> dict[int, str]:
        return {ident: urgency for ident, urgency, _ in self._arrivals()}

    def arrivals_since(self, marker: int) -> list[tuple[int, str, str]]:
        """``(id, urgency, summary)`` of every notification dunst showed after ``marker``, in
        order, replacements included: a notification that replaced another keeps its id, so
        the history alone cannot tell that there were two."""
        return [arrival for arrival in self._arrivals() if arrival[0] > marker]

    def _arrivals(self) -> list[tuple[int, str, str]]:
        found = []
        for line in self._urgency_log.read_text(encoding="utf-8").splitlines():
            ident, urgency, summary = [*line.split(" ", 2), "", ""][:3]
            if ident.isdigit() and urgency:
                found.append((int(ident), urgency.lower(), summary))
        return found


def _received(entry: Mapping[str, Mapping[str, Any]]) -> Received:
    def field(name: str) -> Any:
        return entry.get(name, {}).get("data", "")

    return Received(
        id=int(field("id")),
        summary=str(field("summary")),
        body=str(field("body")),
        message=str(field("message")),
        appname=str(field("appname")),
        urgency=None,
        icon_path=str(field("icon_path")),
    )


def _popen(argv: Sequence[str], *, env: Mapping[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if "stdout" in kwargs and "stderr" not in kwargs:
        kwargs["stderr"] = subprocess.STDOUT
    # Own process group: close() can kill a child together with everything it started.
    return subprocess.Popen(list(argv), env=dict(env), start_new_session=True, **kwargs)


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the child's process group, SIGKILL it if it lingers, and reap the child."""
    # Signal the group only while the leader is unreaped: until then its id cannot be reused.
    if proc.returncode is None:
        # SIGCONT first: a stopped process would leave SIGTERM pending.
        for sig in (signal.SIGCONT, signal.SIGTERM):
            _killpg(proc, sig)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            _killpg(proc, signal.SIGKILL)
            proc.wait(timeout=3)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _killpg(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _read_line(fd: int, proc: subprocess.Popen[Any], timeout: float) -> str:
    """Read one line a child prints on ``fd``, or fail by the deadline or if the child dies."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{_name(proc)} printed nothing within {timeout}s")
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.1))
        if ready:
            chunk = os.read(fd, 256)
            if not chunk:
                raise RuntimeError(f"{_name(proc)} exited ({proc.wait()}) before it was ready")
            data += chunk
    return data.split(b"\n", 1)[0].decode().strip()


def _wait_until(
    condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[Any]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise RuntimeError(f"{_name(proc)} exited ({proc.returncode}) waiting for {what}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _name(proc: subprocess.Popen[Any]) -> str:
    args = proc.args
    return str(args[0]) if isinstance(args, list) and args else str(args)
