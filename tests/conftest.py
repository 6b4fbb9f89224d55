"""Shared fixtures. The desktop harness lives in ``tests/desktop.py``; this only exposes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from desktop import APT_PACKAGES, REQUIRED_TOOLS, DesktopSession, require_tools


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DesktopSession]:
    """A running Xvfb + private D-Bus + dunst for ``@pytest.mark.desktop`` tests.

    Skips when the tools are missing, except under ``CI``, where it fails instead.
    """
    require_tools(REQUIRED_TOOLS, packages=APT_PACKAGES, purpose="the desktop harness")
    with DesktopSession(tmp_path_factory.mktemp("desktop")) as session:
        yield session
