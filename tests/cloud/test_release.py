"""Releases: one version, set in ``claude_notify/__init__.py``, everywhere a release shows it; the
wheel and sdist built offline; the CHANGELOG's section is the release note.

The build is ``python -m build --no-isolation`` (hatchling from the dev group), so it needs no
package index; the wheel is then run as it was built — unpacked first on ``sys.path`` — as the
CLI and as a server, which proves its version, its migrations, templates and static files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
from cloud_kit import free_port, wait_for
from deploy_kit import ROOT

from claude_notify import __version__

NOTES = [sys.executable, str(ROOT / "scripts" / "release_notes.py")]


def notes(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOTES, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


def released(text: str, version: str, date: str = "2026-12-06") -> str:
    """The CHANGELOG as the release steps leave it: Unreleased becomes ``version``, a new empty
    Unreleased above it (docs/releasing.md)."""
    assert text.count("## [Unreleased]\n") == 1
    return text.replace("## [Unreleased]\n", f"## [Unreleased]\n\n## [{version}] - {date}\n")


# ----------------------------------------------------------------------------- release notes


def test_the_unreleased_section_of_the_real_changelog() -> None:
    shown = notes("--unreleased")
    assert shown.returncode == 0, shown.stderr
    body = shown.stdout
    assert body.startswith("### Added\n- ")
    assert "## " not in body.replace("### ", ""), "no other section leaks in"
    # Everything between the heading and the next ## heading, nothing more (the file's own
    # words, found independently of the script).
    text = (ROOT / "CHANGELOG.md").read_text()
    start = text.index("## [Unreleased]\n") + len("## [Unreleased]\n")
    end = text.find("\n## [", start)
    assert body.strip() == text[start: end if end >= 0 else len(text)].strip()


def test_released_the_real_changelog_notes_are_that_section(tmp_path: Path) -> None:
    """Doing the release step on a copy of the real CHANGELOG: its notes are what Unreleased said,
    the new empty Unreleased is refused, and ``--check`` reads the right top section."""
    unreleased = notes("--unreleased").stdout
    copy = tmp_path / "CHANGELOG.md"
    copy.write_text(released((ROOT / "CHANGELOG.md").read_text(), "9.8.7"))
    shown = notes("--changelog", str(copy), "9.8.7")
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, unreleased, "")
    empty = notes("--changelog", str(copy), "--unreleased")
    assert (empty.returncode, empty.stderr) == (1, "release_notes: CHANGELOG.md: [Unreleased] is "
                                                   "empty\n")


def test_the_default_is_this_version_and_says_what_to_do_when_unreleased() -> None:
    """On the real CHANGELOG: ``__version__``'s notes if it is released, else one line saying the
    release step that is missing."""
    shown = notes()
    text = (ROOT / "CHANGELOG.md").read_text()
    if f"## [{__version__}] - " in text:
        assert shown.returncode == 0 and shown.stdout.strip(), shown.stderr
    else:
        assert (shown.returncode, shown.stdout) == (1, "")
        assert shown.stderr == (
            f"release_notes: CHANGELOG.md has no section [{__version__}]; move [Unreleased] "
            f"under '## [{__version__}] - YYYY-MM-DD' first (docs/releasing.md)\n")


@pytest.mark.parametrize(("changelog", "args", "error"), [
    ("## [Unreleased]\n\n## [1.0.0] - 2026-01-01\n- a\n", ["2.0.0"],
     "CHANGELOG.md has no section [2.0.0]; move [Unreleased] under '## [2.0.0] - YYYY-MM-DD' "
     "first (docs/releasing.md)"),
    ("## [Unreleased]\n\n## [1.0.0]\n- a\n", ["1.0.0"],
     "CHANGELOG.md: [1.0.0] has no date ('## [1.0.0] - YYYY-MM-DD')"),
    ("## [Unreleased]\n## 1.0.0 (soon)\n- a\n", ["1.0.0"],
     "CHANGELOG.md: a heading that is not '## [VERSION] - DATE': ## 1.0.0 (soon)"),
    (None, ["1.0.0"], "cannot read {missing}: No such file or directory"),
])
def test_bad_input_is_one_line(tmp_path: Path, changelog: str | None, args: list[str],
                               error: str) -> None:
    path = tmp_path / "CHANGELOG.md"
    if changelog is not None:
        path.write_text(changelog)
    shown = notes("--changelog", str(path), *args)
    assert (shown.returncode, shown.stdout) == (1, "")
    assert shown.stderr == f"release_notes: {error.format(missing=path)}\n"


def test_link_references_are_not_part_of_the_last_section(tmp_path: Path) -> None:
    path = tmp_path / "CHANGELOG.md"
    path.write_text("# Changelog\n\n## [Unreleased]\n\n## [1.0.0] - 2026-01-01\n\n### Added\n"
                    "- b\n\n[1.0.0]: https://example.invalid/1.0.0\n")
    assert notes("--changelog", str(path), "1.0.0").stdout == "### Added\n- b\n"


# ----------------------------------------------------------------------------- one version


def test_the_image_tags_name_this_version_and_check_finds_a_stale_one(tmp_path: Path) -> None:
    """compose's image and the kustomization's tag are the one place YAML cannot read Python, so
    ``--check`` compares them; on the real files only the CHANGELOG can be behind (before the
    release step)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import release_notes
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    real = release_notes.disagreements(__version__)
    assert all(problem.startswith("CHANGELOG.md") for problem in real), real

    for name in ("CHANGELOG.md", "deploy/compose.yaml", "deploy/k8s/kustomization.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "CHANGELOG.md").write_text(released((ROOT / "CHANGELOG.md").read_text(),
                                                    __version__))
    assert release_notes.disagreements(__version__, root=tmp_path) == []
    compose = tmp_path / "deploy" / "compose.yaml"
    compose.write_text(compose.read_text().replace(f"claude-notify:{__version__}",
                                                   "claude-notify:0.0.9"))
    assert release_notes.disagreements(__version__, root=tmp_path) == [
        f"deploy/compose.yaml: image claude-notify:0.0.9, not {__version__}"]


@pytest.mark.timeout(300)
def test_an_offline_build_whose_wheel_reports_this_version_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                            str(ROOT)], capture_output=True, text=True, timeout=240, check=False,
                           env={**os.environ, "PIP_NO_INDEX": "1"})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    # build makes the wheel from the unpacked sdist: a wheel at all proves the sdist has what a
    # wheel build needs.
    (sdist,) = out.glob(f"claude_notify-{__version__}.tar.gz")
    (wheel,) = out.glob(f"claude_notify-{__version__}-py3-none-any.whl")
    with tarfile.open(sdist) as archive:
        top = f"claude_notify-{__version__}/"
        in_sdist = {name.removeprefix(top) for name in archive.getnames()}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "claude_notify/__init__.py"} <= in_sdist

    unpacked = tmp_path / "wheel"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"claude_notify-{__version__}.dist-info/METADATA").decode()
        archive.extractall(unpacked)  # noqa: S202 (the wheel this test just built)
    assert f"\nVersion: {__version__}\n" in metadata
    web = "claude_notify/cloud/server/web/"
    assert {f"{web}templates/signin.html", f"{web}static/app.css",
            "claude_notify/cloud/server/db/migrations/env.py"} <= names, sorted(names)[:20]

    # The wheel's own code, ahead of the editable checkout on sys.path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_NOTIFY")}
    env["PYTHONPATH"] = str(unpacked)
    where = subprocess.run([sys.executable, "-c", "import claude_notify; print(claude_notify"
                            ".__file__)"], env=env, capture_output=True, text=True, check=True,
                           cwd=tmp_path)  # not the checkout's directory, first on sys.path
    assert Path(where.stdout.strip()).is_relative_to(unpacked)
    version = subprocess.run([sys.executable, "-m", "claude_notify", "--version"], env=env,
                             capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path)
    assert version.stdout == f"claude-notify, version {__version__}\n"

    port = free_port()
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
                "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1",
                "CLAUDE_NOTIFY_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "claude_notify", "server", "--port",
                               str(port)], env=env, stdout=log, stderr=log, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=90, what="the wheel's server to be ready")
        assert httpx.get(f"{url}/openapi.json", timeout=10).json()["info"]["version"] == \
            __version__
        page = httpx.get(f"{url}/app/signin", timeout=10)
        assert page.status_code == 200 and "<form" in page.text
        assert httpx.get(f"{url}/app/static/app.css", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
