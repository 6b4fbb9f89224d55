"""Clean installs for the packaging tests, made once per test session and shared.

``tests/test_install_script.py`` and ``tests/cloud/test_packaging.py`` both need what a user
gets: the sdist and wheel that ``python -m build`` makes from this checkout, and that wheel
installed with its ``[server]`` extra by ``scripts/install.sh`` into a throwaway HOME and pipx
home, with no pipx on PATH (so the installer bootstraps its own). Each costs tens of seconds, so
the first test to ask makes it and the rest reuse it (a module-level cache: the two test modules
import this one module, whichever pytest collects first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "scripts" / "install.sh"


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Home:
    """A user's clean machine: HOME, pipx's homes, and the environment that points at them."""

    root: Path
    env: dict[str, str]

    @property
    def bin_dir(self) -> Path:
        return Path(self.env["PIPX_BIN_DIR"])

    @property
    def command(self) -> Path:
        return self.bin_dir / "claude-notify"

    @property
    def app_python(self) -> Path:
        """The python of the venv pipx made for claude-notify."""
        return Path(self.env["PIPX_HOME"]) / "venvs" / "claude-notify" / "bin" / "python"


@dataclass(frozen=True)
class Installed:
    home: Home
    output: subprocess.CompletedProcess[str]


_cache: dict[str, object] = {}


def base_python() -> Path:
    """The interpreter under the dev venv: a user's python3, with no project packages on it."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    assert base.is_file(), base
    return base


def clean_home(root: Path) -> Home:
    """A fresh HOME whose PATH has ``python3`` (the base python) and no pipx.

    pip keeps its configuration (the index this machine reaches, from /etc and ``PIP_*``) and its
    download cache: neither is state a user's install depends on, and the cache saves a minute.
    """
    (root / "home").mkdir(parents=True)
    tools = root / "tools"
    tools.mkdir()
    (tools / "python3").symlink_to(base_python())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_NOTIFY", "PYTHON", "VIRTUAL_ENV", "PIPX", "XDG_",
                                "DBUS_", "DISPLAY", "WAYLAND", "TMUX", "CONDA"))}
    cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True,
                           text=True, check=False).stdout.strip()
    env.update({
        "HOME": str(root / "home"),
        "PIPX_HOME": str(root / "pipx"),
        "PIPX_BIN_DIR": str(root / "pipx-bin"),
        "PATH": f"{tools}:/usr/local/bin:/usr/bin:/bin",
        "PIP_CACHE_DIR": cache or str(Path.home() / ".cache" / "pip"),
    })
    assert shutil.which("pipx", path=env["PATH"]) is None, "pipx is on the clean PATH"
    return Home(root, env)


def run_installer(home: Home, *args: str, path_extra: str = "") -> subprocess.CompletedProcess[str]:
    """``bash scripts/install.sh ARGS`` as ``home``'s user; ``path_extra`` goes first on PATH."""
    env = dict(home.env)
    if path_extra:
        env["PATH"] = f"{path_extra}:{env['PATH']}"
    return subprocess.run(["/bin/bash", str(INSTALL_SH), *args], env=env, cwd=home.root,
                          capture_output=True, text=True, timeout=600, check=False)


def built_dist(factory: pytest.TempPathFactory) -> Dist:
    """``python -m build`` on this checkout: the sdist, then the wheel built from that sdist."""
    if "dist" not in _cache:
        out = factory.mktemp("dist")
        done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
        _cache["dist"] = Dist(sdist, wheel)
    dist = _cache["dist"]
    assert isinstance(dist, Dist)
    return dist


def server_install(factory: pytest.TempPathFactory) -> Installed:
    """The built wheel with ``[server]``, installed by ``install.sh --server`` in a clean HOME."""
    if "server" not in _cache:
        wheel = built_dist(factory).wheel
        home = clean_home(factory.mktemp("server-home"))
        done = run_installer(home, "--server", str(wheel))
        assert done.returncode == 0, done.stdout + done.stderr
        _cache["server"] = Installed(home, done)
    installed = _cache["server"]
    assert isinstance(installed, Installed)
    return installed
