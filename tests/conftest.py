"""Shared fixtures. The desktop harness lives in ``tests/desktop.py``; this only exposes it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from desktop import APT_PACKAGES, DesktopSession, missing_tools


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DesktopSession]:
    """A running Xvfb + private D-Bus + dunst for ``@pytest.mark.desktop`` tests.

    Skips when the tools are missing, except under ``CI``: there a skip would hide that the
    real-desktop tests never ran, so it fails instead.
    """
    missing = missing_tools()
    if missing:
        reason = f"desktop harness needs {', '.join(missing)} (apt-get install {APT_PACKAGES})"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with DesktopSession(tmp_path_factory.mktemp("desktop")) as session:
        yield session
