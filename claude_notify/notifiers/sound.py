"""Play a notification sound when the backend cannot: a file through the first player found.

The player is started detached and never waited on: a sound must not hold the terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

# Players by preference; each takes the file as its last argument.
_FILE_PLAYERS = (
    ("pw-play", ()),
    ("paplay", ()),
    ("aplay", ("-q",)),
    ("afplay", ()),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet")),
)
# A freedesktop sound-theme name ("complete", "bell") needs canberra.
_NAME_PLAYER = ("canberra-gtk-play", ("-i",))


def player_argv(sound: str, env: Mapping[str, str]) -> list[str] | None:
    """The argv that plays ``sound`` (a path or a theme name), or ``None`` when nothing can."""
    path = env.get("PATH", os.defpath)
    if os.sep in sound or (sys.platform == "win32" and "/" in sound):
        for exe, args in _FILE_PLAYERS:
            found = shutil.which(exe, path=path)
            if found:
                return [found, *args, str(Path(sound).expanduser())]
        return None
    exe, args = _NAME_PLAYER
    found = shutil.which(exe, path=path)
    return [found, *args, sound] if found else None


def describe_player(env: Mapping[str, str]) -> str:
    """For ``doctor``: which player a sound file would go to."""
    path = env.get("PATH", os.defpath)
    for exe, _ in _FILE_PLAYERS:
        found = shutil.which(exe, path=path)
        if found:
            return found
    return "none found (install pipewire, pulseaudio-utils or alsa-utils)"


def play(sound: str, env: Mapping[str, str]) -> bool:
    """Start playing, detached; False when no player could be started."""
    argv = player_argv(sound, env)
    if argv is None:
        return False
    import subprocess

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=dict(env))
    except OSError:
        return False
    _playing.append(proc)  # never waited on; kept so no "still running" warning is raised
    return True


_playing: list[object] = []
