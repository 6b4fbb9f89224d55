"""Is the user looking at this terminal? ``True``, ``False``, or ``None`` when it cannot be told.

The decision (:func:`looking`) is a pure function of :class:`Facts`; the probes that gather them
(:func:`gather`) are thin wrappers around ``xdotool``/``xprop``, ``lsappinfo``/``osascript`` and
``tmux``, each run through an injectable ``run`` so tests can hand in recorded output.

What can be told, and what cannot:

- X11: the active window (``_NET_ACTIVE_WINDOW``) against the terminal's ``$WINDOWID``.
- macOS: the frontmost application against the terminal's bundle id (app, not tab).
- tmux: whether our pane is the active pane of the active window of an attached session. A pane
  nobody can see means "not looking" whatever the window manager says.
- Wayland has no portable "active window" (an XWayland ``_NET_ACTIVE_WINDOW`` goes stale while a
  native window has focus), SSH hides the user's desktop from us, and unknown terminals give no
  id: all are "cannot tell", and the caller notifies.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

Run = Callable[[Sequence[str]], "str | None"]
"""Runs a probe: its stdout, or ``None`` when it is missing, fails or takes too long."""




@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the probes found; ``None`` everywhere means nothing could be found out."""

    platform: str
    """``sys.platform`` of the machine the shell runs on."""
    remote: bool = False
    """The shell runs over SSH: the user's screen is elsewhere."""
    wayland: bool = False
    """A Wayland session, where X11 answers about focus cannot be trusted."""
    window_id: int | None = None
    """The terminal's X11 window (``$WINDOWID``)."""
    active_window: int | None = None
    """The X11 window that has focus."""
    terminal_app: str | None = None
    """macOS: the bundle id of the terminal application the shell runs in."""
    frontmost_app: str | None = None
    """macOS: the bundle id of the frontmost application."""
    tmux_pane: str | None = None
    """``#{pane_active} #{window_active} #{session_attached}`` of our tmux pane."""


def looking(facts: Facts) -> bool | None:
    """Whether the user is looking at this shell; ``None`` when it cannot be told."""
    pane = pane_visible(facts.tmux_pane)
    if pane is False:
        return False
    return window_focused(facts)


def pane_visible(state: str | None) -> bool | None:
    """tmux: our pane is active in the active window of a session some client has attached."""
    if state is None:
        return None
    parts = state.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    pane_active, window_active, attached = (int(p) for p in parts)
    return pane_active == 1 and window_active == 1 and attached > 0


def window_focused(facts: Facts) -> bool | None:
    """Whether the terminal's window (or application, on macOS) has focus."""
    if facts.remote:
        return None
    if facts.platform == "darwin":
        if facts.terminal_app and facts.frontmost_app:
            return facts.terminal_app.lower() == facts.frontmost_app.lower()
        return None
    if facts.wayland or facts.window_id is None or facts.active_window is None:
        return None
    return facts.window_id == facts.active_window


# -- parsing probe output (pure) -----------------------------------------------------------------

_XPROP_ID: Final = re.compile(r"(?:window id # |=\s*)(0x[0-9a-fA-F]+|\d+)")
"""Typed ``WINDOW`` (as window managers set it) or a plain number (as ``xprop -set`` does)."""
_BUNDLE: Final = re.compile(r'"?CFBundleIdentifier"?\s*=\s*"([^"]+)"')


def parse_window_id(text: str | None) -> int | None:
    """``$WINDOWID`` or ``xdotool getactivewindow`` output: decimal (or hex) window id."""
    if not text:
        return None
    try:
        value = int(text.strip(), 0)
    except ValueError:
        return None
    return value or None


def parse_xprop_active(text: str | None) -> int | None:
    """``xprop -root -notype _NET_ACTIVE_WINDOW``: ``_NET_ACTIVE_WINDOW: window id # 0x1a00007``."""
    if not text:
        return None
    found = _XPROP_ID.search(text)
    return parse_window_id(found.group(1)) if found else None


def parse_lsappinfo_bundle(text: str | None) -> str | None:
    """``lsappinfo info -only bundleid ASN``: ``"CFBundleIdentifier"="com.apple.Terminal"``."""
    if not text:
        return None
    found = _BUNDLE.search(text)
    return found.group(1) if found else None


def terminal_bundle(env: Mapping[str, str]) -> str | None:
    """The bundle id of the macOS terminal app this shell runs in, from its environment."""
    from claude_notify.notifiers.macos import terminal_bundle_id

    return terminal_bundle_id(env)


# -- probes (thin) -------------------------------------------------------------------------------

def gather(env: Mapping[str, str], *, platform: str, run: Run) -> Facts:
    """Ask only the probes that can answer here; each is skipped when its answer is moot."""
    remote = bool(env.get("SSH_CONNECTION") or env.get("SSH_TTY"))
    wayland = bool(env.get("WAYLAND_DISPLAY")) or env.get("XDG_SESSION_TYPE") == "wayland"
    tmux_pane = _tmux_state(env, run)
    if pane_visible(tmux_pane) is False or remote:
        return Facts(platform=platform, remote=remote, wayland=wayland, tmux_pane=tmux_pane)
    if platform == "darwin":
        terminal = terminal_bundle(env)
        front = _frontmost_app(run) if terminal else None
        return Facts(platform=platform, tmux_pane=tmux_pane, terminal_app=terminal,
                     frontmost_app=front)
    window_id = parse_window_id(env.get("WINDOWID"))
    active = None
    if window_id is not None and env.get("DISPLAY") and not wayland:
        active = _x11_active_window(run)
    return Facts(platform=platform, wayland=wayland, window_id=window_id,
                 active_window=active, tmux_pane=tmux_pane)


def _tmux_state(env: Mapping[str, str], run: Run) -> str | None:
    if not env.get("TMUX"):
        return None
    pane = env.get("TMUX_PANE")
    target = ["-t", pane] if pane else []
    return run(["tmux", "display-message", "-p", *target,
                "#{pane_active} #{window_active} #{session_attached}"])


def _x11_active_window(run: Run) -> int | None:
    active = parse_window_id(run(["xdotool", "getactivewindow"]))
    if active is None:
        active = parse_xprop_active(run(["xprop", "-root", "-notype", "_NET_ACTIVE_WINDOW"]))
    return active


def _frontmost_app(run: Run) -> str | None:
    asn = (run(["lsappinfo", "front"]) or "").strip()
    if asn:
        bundle = parse_lsappinfo_bundle(run(["lsappinfo", "info", "-only", "bundleid", asn]))
        if bundle:
            return bundle
    answer = run(["osascript", "-e",
                  "id of application (path to frontmost application as text)"])
    return answer.strip() or None if answer else None


def subprocess_runner(env: Mapping[str, str], *, timeout: float = 1.0) -> Run:
    """A :data:`Run` that executes the probe with ``env``, giving up after ``timeout``."""

    def run(argv: Sequence[str]) -> str | None:
        try:
            done = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True,
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    return run
