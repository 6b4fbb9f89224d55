"""What the deploy tests share: the repository's paths and the tools the dev group installs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE_UID = 10001
"""The numeric uid the Dockerfile creates and every manifest runs as."""


def tool(name: str, hint: str) -> str:
    """The path of ``name``: beside the dev python (wheels' binaries) or on PATH; a missing tool
    fails the test (nothing skips: ``scripts/test.sh`` installs them all)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(f"{name} is missing: {hint}")
    return found


def image_entrypoint() -> list[str]:
    """The Dockerfile's ``ENTRYPOINT`` (exec form): what every compose and k8s command follows."""
    import json
    import re

    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(),
                      re.MULTILINE)
    assert found, "the Dockerfile has no exec-form ENTRYPOINT"
    argv: list[str] = json.loads(found.group(1))
    return argv
