"""Plugins installed for the tests: the example package from ``examples/``, built and installed
by pip into a directory of its own, and a broken distribution beside it (a plugin whose import
fails, and a channel whose send raises). Put the directory on ``PYTHONPATH`` (a subprocess) or
``sys.path`` (this process) and ``importlib.metadata`` finds them as it would installed ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "claude-notify-example-plugin"

BROKEN_METADATA = "Metadata-Version: 2.1\nName: cn-broken-plugins\nVersion: 0.1\n"
BROKEN_ENTRY_POINTS = """\
[claude_notify.backends]
broken = cn_broken:Notifier

[claude_notify.channels]
broken = cn_broken:Channel
explody = cn_explody:Channel
"""
BROKEN_MODULE = 'raise RuntimeError("this plugin is broken on purpose")\n'
EXPLODY_MODULE = '''\
from claude_notify.cloud.server.channels.base import SendResult


class Channel:
    """A channel whose every send raises: the worker must survive it."""

    def __init__(self, settings, http):
        self.http = http

    @staticmethod
    def validate_config(config):
        return dict(config)

    async def send(self, message) -> SendResult:
        raise RuntimeError("boom, with a secret https://x.example/t0ken in it")
'''


def install(where: Path) -> Path:
    """Install the example and the broken distributions into ``where``; returns it."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--target", str(where), str(EXAMPLE)],
                   check=True, capture_output=True, timeout=300)
    info = where / "cn_broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(BROKEN_METADATA)
    (info / "entry_points.txt").write_text(BROKEN_ENTRY_POINTS)
    (where / "cn_broken.py").write_text(BROKEN_MODULE)
    (where / "cn_explody.py").write_text(EXPLODY_MODULE)
    return where
