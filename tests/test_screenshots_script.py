"""``scripts/screenshots.py`` makes the README's pictures from real dunst popups: keep it
working."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.desktop
def test_the_screenshot_script_captures_each_popup(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshots.py"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sizes = {}
    for name in ("success", "failure", "claude-stop", "claude-permission"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
        sizes[name] = struct.unpack(">II", png[16:24])
    # dunst's popup, not the whole 1280x800 screen and not an empty crop
    assert all(100 < width < 1280 and 20 < height < 800 for width, height in sizes.values()), sizes
    # the failure's tail has more lines than the success's popup
    assert sizes["failure"][1] > sizes["claude-permission"][1]
