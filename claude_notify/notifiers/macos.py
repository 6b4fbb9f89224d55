"""macOS: terminal-notifier when installed, else AppleScript's ``display notification``.

Each backend is a pure argv builder plus a thin ``send``; the argv never passes through a shell.
Neither tool plays a sound file, only a named system sound, so a file is handed to ``afplay``.
Neither has an urgency: macOS decides banner or alert per app, so ``urgency`` is not mapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final

from claude_notify.notifiers._helpers import clean_text, find_tool, run_tool
from claude_notify.notifiers.base import Availability, DeliveryResult, Host, Notification

if TYPE_CHECKING:
    import subprocess

TITLE_LIMIT: Final = 200
BODY_LIMIT: Final = 1000
"""Notification Center shows about four lines; the rest would only lengthen the argv."""

TERMINAL_BUNDLES: Final[Mapping[str, str]] = {
    "Apple_Terminal": "com.apple.Terminal",
    "iTerm.app": "com.googlecode.iterm2",
    "WezTerm": "com.github.wez.wezterm",
    "vscode": "com.microsoft.VSCode",
    "ghostty": "com.mitchellh.ghostty",
    "WarpTerminal": "dev.warp.Warp-Stable",
    "Hyper": "co.zeit.hyper",
    "Tabby": "org.tabby",
    "zed": "dev.zed.Zed",
    "kitty": "net.kovidgoyal.kitty",
    "alacritty": "org.alacritty",
}
"""``TERM_PROGRAM`` → bundle id of the terminal to bring forward on click."""

_BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,254}")
_SOUND_FILE_SUFFIXES = (".aiff", ".aif", ".wav", ".mp3", ".m4a", ".caf", ".flac")

# ``on run argv`` makes the user's text data: AppleScript never parses it as code, so there is
# no string literal to escape. The script below is the only code osascript sees.
_OSA_RUN = "on run argv"
_OSA_SHOW = "display notification (item 2 of argv) with title (item 1 of argv)"
_OSA_SOUND = " sound name (item 3 of argv)"
_OSA_END = "end run"

_playing: list[subprocess.Popen[bytes]] = []
"""Detached ``afplay`` processes, kept so none is collected (and warned about) while playing."""


def terminal_bundle_id(env: Mapping[str, str]) -> str | None:
    """The app to activate when the notification is clicked: the terminal we run in.

    LaunchServices sets ``__CFBundleIdentifier`` to the app hosting the shell; it tells VS Code
    from its forks and survives tmux, so it wins over the ``TERM_PROGRAM`` table.
    """
    launched_by = env.get("__CFBundleIdentifier", "")
    if _BUNDLE_ID.fullmatch(launched_by):
        return launched_by
    return TERMINAL_BUNDLES.get(env.get("TERM_PROGRAM", ""))


def is_sound_file(sound: str) -> bool:
    """A path to play (``/x/done.aiff``) rather than a system sound name (``Glass``)."""
    return "/" in sound or sound.lower().endswith(_SOUND_FILE_SUFFIXES)


def _tn_value(text: str) -> str:
    # terminal-notifier reads options through NSUserDefaults, which takes a value starting with
    # "-" for an option and one starting with "[", "(", "{", "<" or '"' for a property list;
    # it strips one leading backslash from every value, so a backslash keeps any value literal.
    return "\\" + text


def build_terminal_notifier_argv(n: Notification, *, exe: str,
                                 env: Mapping[str, str]) -> list[str]:
    """The terminal-notifier argv for ``n``; every user value is escaped for NSUserDefaults.

    ``-message`` is always given, so the tool never reads the message from stdin. ``-group``
    is the task: its "still running" notices give way to the final one. No ``-timeout`` (it
    makes the tool wait for the user), and ``-activate`` without ``-sender``, which breaks
    ``-activate``.
    """
    argv = [exe,
            "-title", _tn_value(clean_text(n.title, limit=TITLE_LIMIT, newlines=False)),
            "-message", _tn_value(clean_text(n.body, limit=BODY_LIMIT))]
    if n.sound and not is_sound_file(n.sound):
        argv += ["-sound", _tn_value(clean_text(n.sound, newlines=False))]
    if n.icon and n.icon.startswith("/"):
        argv += ["-contentImage", _tn_value(n.icon)]
    if n.group:
        argv += ["-group", _tn_value(clean_text(n.group, newlines=False))]
    bundle = terminal_bundle_id(env)
    if bundle is not None:
        argv += ["-activate", bundle]
    return argv + _click_actions(n, env)


_PANE: Final = re.compile(r"%\d{1,9}")


def _click_actions(n: Notification, env: Mapping[str, str]) -> list[str]:
    """What a click does besides bringing the terminal forward: open the task's log
    (``-open``), and select its tmux pane (``-execute``). terminal-notifier has no buttons, so
    both ride on the click; ``-execute`` goes through ``/bin/sh``, hence only a validated pane
    id and quoted paths reach it."""
    extra: list[str] = []
    if n.log_path and n.log_path.startswith("/"):
        from pathlib import PurePosixPath

        extra += ["-open", _tn_value(PurePosixPath(n.log_path).as_uri())]
    pane = n.focus.tmux_pane if n.focus is not None else None
    socket = env.get("TMUX", "").split(",")[0]
    if pane and _PANE.fullmatch(pane) and socket.startswith("/"):
        import shlex
        import shutil

        tmux = shutil.which("tmux", path=env.get("PATH"))
        if tmux is not None:
            base = f"{shlex.quote(tmux)} -S {shlex.quote(socket)}"
            extra += ["-execute", _tn_value(f"{base} select-window -t {pane} \\; "
                                            f"select-pane -t {pane}")]
    return extra


def build_osascript_argv(n: Notification, *, exe: str) -> list[str]:
    """The osascript argv for ``n``: a fixed script, the user's text after ``--`` as data."""
    show = _OSA_SHOW
    data = [clean_text(n.title, limit=TITLE_LIMIT, newlines=False),
            clean_text(n.body, limit=BODY_LIMIT)]
    if n.sound and not is_sound_file(n.sound):
        show += _OSA_SOUND
        # "default" is terminal-notifier's word; AppleScript needs a real name or stays silent.
        data.append("Glass" if n.sound == "default" else clean_text(n.sound, newlines=False))
    return [exe, "-e", _OSA_RUN, "-e", show, "-e", _OSA_END, "--", *data]


def build_afplay_argv(sound: str, *, exe: str, env: Mapping[str, str]) -> list[str]:
    """The afplay argv for a sound file; a leading ``-`` cannot be read as an option."""
    if sound.startswith("~/") and env.get("HOME"):
        sound = env["HOME"] + sound[1:]
    elif sound.startswith("-"):
        sound = "./" + sound
    return [exe, sound]


def _available(host: Host, tool: str, hint: str) -> Availability:
    if host.platform != "darwin":
        return Availability(False, f"{tool} is macOS only (this is {host.platform})")
    found = find_tool(host, tool)
    if found is None:
        return Availability(False, f"{tool} not found on PATH{hint}")
    return Availability(True, f"{tool} at {found}")


def _play_file(sound: str, host: Host) -> str:
    """Start ``afplay`` detached: the sound may outlast the deadline, the caller need not."""
    import subprocess

    for proc in list(_playing):
        if proc.poll() is not None:
            _playing.remove(proc)
    exe = find_tool(host, "afplay")
    if exe is None:
        return "; sound not played: afplay not found"
    try:
        _playing.append(subprocess.Popen(
            build_afplay_argv(sound, exe=exe, env=host.env), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=dict(host.env)))
    except OSError as exc:
        return f"; sound not played: {exc.strerror or exc}"
    return ""


def _send(backend: str, argv: list[str], n: Notification, host: Host,
          timeout: float) -> DeliveryResult:
    result = run_tool(backend, argv, timeout=timeout, env=dict(host.env))
    if result.ok and n.sound and is_sound_file(n.sound):
        note = _play_file(n.sound, host)
        if note:
            return DeliveryResult(backend, True, result.detail + note)
    return result


class TerminalNotifierApp:
    """terminal-notifier: click brings the terminal forward. Unmaintained, but still works."""

    name: ClassVar[str] = "terminal-notifier"

    def __init__(self, host: Host) -> None:
        self.host = host

    def available(self) -> Availability:
        return _available(self.host, "terminal-notifier", " (brew install terminal-notifier)")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        exe = find_tool(self.host, "terminal-notifier")
        if exe is None:
            return DeliveryResult(self.name, False, "terminal-notifier not found on PATH")
        argv = build_terminal_notifier_argv(notification, exe=exe, env=self.host.env)
        return _send(self.name, argv, notification, self.host, timeout)


class OsaScriptNotifier:
    """AppleScript, always present; the notification is attributed to Script Editor."""

    name: ClassVar[str] = "osascript"

    def __init__(self, host: Host) -> None:
        self.host = host

    def available(self) -> Availability:
        return _available(self.host, "osascript", "")

    def send(self, notification: Notification, *, timeout: float) -> DeliveryResult:
        exe = find_tool(self.host, "osascript")
        if exe is None:
            return DeliveryResult(self.name, False, "osascript not found on PATH")
        argv = build_osascript_argv(notification, exe=exe)
        return _send(self.name, argv, notification, self.host, timeout)

