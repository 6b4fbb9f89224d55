"""The image for real, opt-in (``CN_DOCKER_TESTS=1``): built by a local Docker daemon with no
network, run read-only as uid 10001 against the local PostgreSQL.

What it proves: the Dockerfile builds offline from a wheelhouse on a Debian base made here; the
one-shot ``migrate`` container migrates a fresh database; the API container answers ``/healthz``
and its own ``HEALTHCHECK`` turns healthy; it runs as 10001 on a read-only root; ``server
create-user`` through ``docker exec`` makes an account whose token the API accepts.

Why opt-in: it needs a Docker daemon (Debian's ``docker.io``: ``dockerd --iptables=false
--bridge=none`` is enough, as containers use the host's network here) and takes minutes. Its
inputs come from the package registries this machine uses, before the build: the base image
(``CN_DOCKER_BASE``, default ``local/bookworm-python:base``) is made once with ``debootstrap``
from the Debian mirror apt is configured with (about 8 minutes) when the daemon lacks it, and the
wheelhouse with ``pip wheel``. The build itself runs with ``--network none``. docs/deploy.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloud_kit import wait_for
from conftest import empty_pg
from deploy_kit import IMAGE_UID, ROOT

pytestmark = [
    pytest.mark.skipif(os.environ.get("CN_DOCKER_TESTS") != "1",
                       reason="opt-in: CN_DOCKER_TESTS=1 builds and runs the image with a local "
                              "Docker daemon (minutes; docs/deploy.md)"),
    pytest.mark.postgres,
]

BASE = os.environ.get("CN_DOCKER_BASE", "local/bookworm-python:base")
PORT = 8080
"""The image's HEALTHCHECK asks 127.0.0.1:8080, and containers share the host's network here."""


def docker(*args: str, timeout: float = 120,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")
    return done


def apt_mirror() -> str:
    """The Debian mirror apt uses here (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    lists = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in lists:
        text = path.read_text(errors="replace") if path.is_file() else ""
        found = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text,
                          re.MULTILINE)
        if found:
            return found.group(1)
    pytest.fail("no Debian mirror in /etc/apt/sources.list{,.d}: make the base image by hand")


def ensure_base(tmp: Path) -> None:
    """The base image: Debian bookworm with python3 and its venv module, made with debootstrap
    (§ "offline builds" in docs/deploy.md) unless the daemon has it already."""
    if docker("image", "inspect", BASE, check=False).returncode == 0:
        return
    if shutil.which("debootstrap") is None:
        pytest.fail(f"no image {BASE} and no debootstrap to make it (apt-get install debootstrap)")
    rootfs = tmp / "rootfs"
    made = subprocess.run(["debootstrap", "--variant=minbase",
                           "--include=python3,python3-venv,ca-certificates", "bookworm",
                           str(rootfs), apt_mirror()], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(["docker", "import", "-", BASE], stdin=tar.stdout,
                                  capture_output=True, text=True, timeout=600, check=False)
    assert tar.returncode == 0 and imported.returncode == 0, imported.stderr


def build_context(tmp: Path) -> Path:
    """What the build sees (as .dockerignore allows), with a filled wheelhouse: every wheel the
    [server] extra needs, hatchling to build the project, and async-timeout, which redis wants on
    bookworm's Python 3.11.2 (below 3.11.3) and pip on this newer Python would leave out."""
    context = tmp / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "claude_notify", context / "claude_notify",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheelhouse = context / "deploy" / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    made = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir",
                           str(wheelhouse), f"{ROOT}[server]", "hatchling>=1.18", "async-timeout"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    for own in wheelhouse.glob("claude_notify-*.whl"):
        own.unlink()  # the image builds the project from the context's source, not this wheel
    return context


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.fail("CN_DOCKER_TESTS=1 but no Docker daemon answers (start dockerd)")
    tmp = tmp_path_factory.mktemp("docker")
    ensure_base(tmp)
    context = build_context(tmp)
    tag = f"claude-notify:test-{uuid.uuid4().hex[:8]}"
    dangling = set(docker("images", "-q", "--filter", "dangling=true").stdout.split())
    started = time.monotonic()
    docker("build", "--network", "none", "--build-arg", "PIP_NO_INDEX=1", "--build-arg",
           f"BASE_IMAGE={BASE}", "-t", tag, str(context), timeout=1800)
    print(f"\nimage built in {time.monotonic() - started:.0f} s")  # noqa: T201 (figure)
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)
        # The build stage's image, left untagged by the classic builder (ours: new since).
        ours = set(docker("images", "-q", "--filter", "dangling=true").stdout.split()) - dangling
        if ours:
            docker("rmi", *sorted(ours), check=False)


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A new, empty PostgreSQL database: the migrate container is what migrates it."""
    with empty_pg("cn_docker") as url:
        yield url


@pytest.mark.timeout(3600)
def test_the_image_migrates_serves_and_creates_a_user(image: str, fresh_db: str) -> None:
    with httpx.Client() as probe:
        try:
            probe.get(f"http://127.0.0.1:{PORT}/", timeout=2)
            pytest.fail(f"something already listens on 127.0.0.1:{PORT}, which the image uses")
        except httpx.TransportError:
            pass
    run = ["run", "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "--user", f"{IMAGE_UID}:{IMAGE_UID}", "--security-opt", "no-new-privileges:true",
           "--cap-drop", "ALL", "-e", f"DATABASE_URL={fresh_db}",
           "-e", f"CLAUDE_NOTIFY_SERVER_PUBLIC_URL=http://127.0.0.1:{PORT}"]
    migrated = docker(*run, "--rm", image, "migrate", timeout=300)
    assert migrated.returncode == 0
    name = f"cn-api-{uuid.uuid4().hex[:8]}"
    docker(*run, "-d", "--name", name, image, "--host", "127.0.0.1", "--port", str(PORT))
    try:
        started = time.monotonic()

        def healthz() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=3).status_code == 200
            except httpx.TransportError:
                state = docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
                assert state == "running", docker("logs", name, check=False).stderr[-3000:]
                return False

        wait_for(healthz, timeout=90, what="/healthz from the container")
        print(f"\n/healthz answered {time.monotonic() - started:.1f} s after start")  # noqa: T201
        assert httpx.get(f"http://127.0.0.1:{PORT}/readyz", timeout=5).status_code == 200

        assert docker("exec", name, "id", "-u").stdout.strip() == str(IMAGE_UID)
        status = docker("exec", name, "cat", "/proc/1/status").stdout
        assert re.search(rf"^Uid:\s+{IMAGE_UID}\s+{IMAGE_UID}\s", status, re.MULTILINE), status
        written = docker("exec", name, "touch", "/opt/claude-notify/x", check=False)
        assert written.returncode != 0 and "Read-only file system" in written.stderr

        created = docker("exec", name, "claude-notify", "server", "create-user",
                         "docker@example.com", "--plan", "pro", timeout=120)
        token = created.stdout.strip()
        assert "created docker@example.com (pro)" in created.stderr
        account = httpx.get(f"http://127.0.0.1:{PORT}/v1/account", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
        assert account.status_code == 200 and account.json()["email"] == "docker@example.com"

        # The image's own HEALTHCHECK (every 10 s after a 30 s start period) turns healthy.
        def healthy() -> bool:
            state = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
            if state != "healthy":
                time.sleep(1)  # a poll interval: each look is a docker process
            return state == "healthy"

        wait_for(healthy, timeout=120, what="the image's HEALTHCHECK to pass")
    finally:
        docker("rm", "-f", name, check=False)
