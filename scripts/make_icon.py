#!/usr/bin/env python3
"""Draw the app icon, ``claude_notify/data/claude-notify.png``: a white bell on a rounded orange
square, 128×128, anti-aliased by 4×4 supersampling; and the same drawing at 192 and 512 pixels
for the web app's manifest and notifications (``web/static/icon-*.png``: what a phone shows on
its home screen). Standard library only, so the icons can be remade anywhere; run it after
changing the drawing."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

SIZE = 128
SAMPLES = 4
ORANGE = (217, 119, 87)
WHITE = (255, 255, 255)
ROOT = Path(__file__).resolve().parent.parent / "claude_notify"
OUT = ROOT / "data" / "claude-notify.png"
STATIC = ROOT / "cloud" / "server" / "web" / "static"
WEB = {size: STATIC / f"icon-{size}.png" for size in (192, 512)}


def inside_square(x: float, y: float, r: float = 0.2) -> bool:
    cx, cy = min(max(x, r), 1 - r), min(max(y, r), 1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def inside_bell(x: float, y: float) -> bool:
    if (x - 0.5) ** 2 + (y - 0.2) ** 2 <= 0.045 ** 2:  # the knob
        return True
    if y <= 0.47 and ((x - 0.5) / 0.2) ** 2 + ((y - 0.47) / 0.25) ** 2 <= 1:  # the dome
        return True
    if 0.47 <= y <= 0.66 and abs(x - 0.5) <= 0.2 + (y - 0.47) * 0.45:  # the flaring body
        return True
    if 0.64 <= y <= 0.71 and abs(x - 0.5) <= 0.3:  # the rim
        return True
    return (x - 0.5) ** 2 + (y - 0.77) ** 2 <= 0.065 ** 2  # the clapper


def draw(size: int = SIZE) -> bytes:
    rows = bytearray()
    for py in range(size):
        rows.append(0)
        for px in range(size):
            total = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = (px + (sx + 0.5) / SAMPLES) / size
                    y = (py + (sy + 0.5) / SAMPLES) / size
                    if not inside_square(x, y):
                        continue
                    colour = WHITE if inside_bell(x, y) else ORANGE
                    for i in range(3):
                        total[i] += colour[i]
                    total[3] += 255
            n = SAMPLES * SAMPLES
            alpha = total[3] / n
            if alpha:
                rows.extend(round(total[i] / (total[3] / 255)) for i in range(3))
            else:
                rows.extend((0, 0, 0))
            rows.append(round(alpha))
    return png(size, size, bytes(rows))


def png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(draw())
    print(f"wrote {OUT}")
    for size, path in WEB.items():
        path.write_bytes(draw(size))
        print(f"wrote {path}")
    sys.exit(0)
