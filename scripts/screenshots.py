#!/usr/bin/env python3
"""Make the README's pictures from real notifications, so they stay true.

Starts the test suite's desktop (``tests/desktop.py``: Xvfb, a private session D-Bus and dunst),
runs ``claude-notify`` for real — a build that passes, one that fails, Claude Code finishing a
turn and Claude Code asking for permission — and captures each popup as dunst drew it: ``xwd`` of
the screen, cropped to dunst's window, written as PNG with the standard library (no imaging
library needed). Needs ``xwd`` and ``xwininfo`` besides the suite's desktop tools (Debian:
``x11-apps x11-utils``).

    .venv/bin/python scripts/screenshots.py            # writes docs/img/*.png
    .venv/bin/python scripts/screenshots.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import desktop  # noqa: E402  (the suite's harness, found through the path above)

CLI = [sys.executable, "-m", "claude_notify"]


def _scenes(project: Path) -> list[tuple[str, list[str], bytes | None]]:
    """(file name, argv, stdin) of each picture."""
    # A stand-in `make` on PATH, so the titles read as a user's would (`make build`), not as
    # the `sh -c '…'` that prints the lines.
    bin_dir = project.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    make = bin_dir / "make"
    make.write_text(
        "#!/bin/sh\n"
        "if [ \"$1\" = build ]; then\n"
        "  echo 'cc -O2 -c src/*.c'; sleep 2.2; echo 'ld -o app *.o'; echo 'built app (2.1 MB)'\n"
        "else\n"
        "  echo 'collected 412 items'; sleep 1.3\n"
        "  echo 'FAILED tests/test_api.py::test_login - assert 401 == 200'\n"
        "  echo '1 failed, 411 passed in 1.2s'; exit 2\n"
        "fi\n")
    make.chmod(0o755)

    def hook(event: str, **extra: object) -> bytes:
        payload = {"session_id": "5f1c2e9a-screens", "transcript_path": "",
                   "cwd": str(project), "permission_mode": "default",
                   "hook_event_name": event, **extra}
        return json.dumps(payload).encode()

    return [
        ("success.png", [*CLI, "run", "--", "make", "build"], None),
        ("failure.png", [*CLI, "run", "--", "make", "test"], None),
        ("claude-stop.png", [*CLI, "hook"],
         hook("Stop", stop_hook_active=False,
              last_assistant_message="Refactored the login handler and all 412 tests pass.")),
        ("claude-permission.png", [*CLI, "hook"],
         hook("Notification", message="Claude needs your permission to use Bash",
              notification_type="permission_prompt")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    missing = [tool for tool in (*desktop.REQUIRED_TOOLS, "xwd", "xwininfo")
               if shutil.which(tool) is None]
    if missing:
        print(f"screenshots: missing {', '.join(missing)} (Debian: apt-get install "
              f"{desktop.APT_PACKAGES} x11-apps x11-utils)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cn-screens-") as tmp:
        work = Path(tmp)
        project = work / "my-app"
        project.mkdir()
        with desktop.DesktopSession(work) as session:
            env = _user_env(session.env, work)
            for name, command, stdin in _scenes(project):
                png = _capture(session, env, project, command, stdin)
                (args.out / name).write_bytes(png)
                print(f"wrote {args.out / name}")
    return 0


def _user_env(base: dict[str, str], home: Path) -> dict[str, str]:
    env = dict(base)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".state"), "XDG_DATA_HOME": str(home / ".data"),
                "CLAUDE_NOTIFY_BACKEND": "dbus",
                "PATH": f"{home / 'bin'}:{os.environ.get('PATH', '/usr/bin')}"})
    return env


def _capture(session: desktop.DesktopSession, env: dict[str, str], cwd: Path,
             command: list[str], stdin: bytes | None) -> bytes:
    before = session.marker()
    arrived = len(session.arrivals_since(before))
    subprocess.run(command, input=stdin, env=env, cwd=cwd, capture_output=True, timeout=120,
                   check=False)
    _wait(lambda: len(session.arrivals_since(before)) > arrived, "the notification")
    _wait(lambda: _dunst_window(env) is not None, "dunst's window")
    # The window is mapped before dunst has painted it: take shots until two agree.
    shots: list[bytes] = []

    def steady() -> bool:
        geometry = _dunst_window(env)
        if geometry is None:
            return False
        screen = subprocess.run(["xwd", "-root", "-silent"], env=env, capture_output=True,
                                check=True, timeout=30).stdout
        shots.append(xwd_to_png(screen, geometry))
        return len(shots) > 1 and shots[-1] == shots[-2]

    _wait(steady, "dunst to finish drawing")
    png = shots[-1]
    subprocess.run(["dunstctl", "close-all"], env=env, check=True, timeout=30)
    _wait(lambda: _dunst_window(env) is None, "the popup to close")
    return png


def _dunst_window(env: dict[str, str]) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of dunst's popup while one is on screen (dunst keeps its window
    when nothing shows, unmapped)."""
    tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True,
                          text=True, timeout=30).stdout
    for line in tree.splitlines():
        if "dunst" not in line.lower():
            continue
        ident = line.split()[0]
        info = subprocess.run(["xwininfo", "-id", ident], env=env, capture_output=True,
                              text=True, timeout=30).stdout
        fields = dict(re.findall(r"^\s*([A-Za-z -]+):\s+(\S+)", info, re.MULTILINE))
        if fields.get("Map State") != "IsViewable":
            continue
        box = tuple(int(fields[k]) for k in ("Absolute upper-left X", "Absolute upper-left Y",
                                             "Width", "Height"))
        if box[2] > 1 and box[3] > 1:
            return box[0], box[1], box[2], box[3]
    return None


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what}")
        time.sleep(0.05)


def xwd_to_png(data: bytes, crop: tuple[int, int, int, int]) -> bytes:
    """A 24/32-bit ZPixmap XWD dump (what Xvfb's ``xwd -root`` writes), cropped, as PNG."""
    header = struct.unpack(">25I", data[:100])
    header_size, _version, pixmap_format, depth, width, height = header[:6]
    byte_order, bits_per_pixel, bytes_per_line = header[7], header[11], header[12]
    red_mask, green_mask, blue_mask = header[14:17]
    ncolors = header[19]
    if pixmap_format != 2 or bits_per_pixel not in (24, 32) or depth not in (24, 32):
        raise SystemExit(f"screenshots: unexpected XWD format {pixmap_format}/{bits_per_pixel}")
    pixels = data[header_size + 12 * ncolors:]
    x0, y0, w, h = crop
    x0, y0 = max(0, x0), max(0, y0)
    w, h = min(w, width - x0), min(h, height - y0)
    step = bits_per_pixel // 8
    order = "little" if byte_order == 0 else "big"
    shifts = [(mask & -mask).bit_length() - 1 for mask in (red_mask, green_mask, blue_mask)]
    rows = bytearray()
    for y in range(y0, y0 + h):
        rows.append(0)  # PNG filter: none
        start = y * bytes_per_line + step * x0
        line = pixels[start:start + step * w]
        for at in range(0, len(line), step):
            value = int.from_bytes(line[at:at + step], order)
            rows.extend((value >> shift) & 0xFF for shift in shifts)
    return _png(w, h, bytes(rows))


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


if __name__ == "__main__":
    sys.exit(main())
