"""deploy/compose.yaml and deploy/.env.example: the file lists every server setting and nothing
else, each shown default is the real one, and compose runs the image as the Dockerfile means it
to be run, with commands the real CLI accepts.

What this does not prove: that Docker Compose starts it (no Docker daemon or compose here)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from deploy_kit import DEPLOY, IMAGE_UID, ROOT

from claude_notify import __version__
from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError

ENV_EXAMPLE = DEPLOY / ".env.example"
COMPOSE = DEPLOY / "compose.yaml"
SERVER_SERVICES = ("api", "worker", "migrate")
LINE = re.compile(r"^(?P<commented># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def variable(field: str) -> str:
    """The variable Settings.from_env reads for ``field``."""
    return {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
        field, "CLAUDE_NOTIFY_SERVER_" + field.upper())


def entries() -> Iterator[tuple[str, str, bool]]:
    """``(name, value, set)`` for each ``NAME=value`` line, commented (``set`` false) or not."""
    for line in ENV_EXAMPLE.read_text().splitlines():
        if (m := LINE.match(line)) is not None:
            yield m["name"], m["value"], m["commented"] is None


def test_every_setting_and_nothing_else() -> None:
    names = [name for name, _, _ in entries()]
    assert len(names) == len(set(names)), "a variable is listed twice"
    expected = {variable(f.name) for f in dataclasses.fields(Settings)}
    missing = sorted(expected - set(names))
    assert not missing, f"add to deploy/.env.example (scripts/gen_env_example.py): {missing}"
    unknown = sorted(set(names) - expected)
    assert not unknown, f"not server settings: {unknown}"


def test_each_variable_sets_its_setting() -> None:
    """Read back through Settings.from_env: a name the server ignored would change nothing
    whatever its value (each is tried with values of every type until one parses)."""
    fields = {variable(f.name): f.name for f in dataclasses.fields(Settings)}
    defaults = Settings.from_env({})
    for name, _, _ in entries():
        changed = []
        for raw in ("7", "7.5", "true", "false", "redis://probe:6379/0"):
            try:
                value = getattr(Settings.from_env({name: raw}), fields[name])
            except ConfigError:
                continue
            changed.append(value != getattr(defaults, fields[name]))
        assert any(changed), f"{name} does not set {fields[name]}"


def test_shown_defaults_are_the_real_ones() -> None:
    defaults = Settings.from_env({})
    fields = {variable(f.name): f.name for f in dataclasses.fields(Settings)}
    for name, value, is_set in entries():
        if is_set or value == "":  # set on purpose, or "unset" (None, or made per machine)
            continue
        assert getattr(Settings.from_env({name: value}), fields[name]) == \
            getattr(defaults, fields[name]), f"{name}={value} is not the default"


def test_what_the_example_sets_is_valid() -> None:
    values = {name: value for name, value, is_set in entries() if is_set}
    assert "CLAUDE_NOTIFY_SERVER_PUBLIC_URL" in values
    Settings.from_env(values).validate()


def test_the_example_is_generated_from_settings_py() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_env_example.py"),
                             "--check"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def compose() -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_the_services() -> None:
    services = compose()
    assert set(services) == {"api", "worker", "migrate", "postgres", "redis"}
    for name in SERVER_SERVICES:
        service = services[name]
        assert service["image"] == f"claude-notify:{__version__}"
        assert service["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
        assert service["env_file"] == ".env"
        assert service["read_only"] is True
        env = service["environment"]
        assert isinstance(env, dict)
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"}}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    worker_check = services["worker"]["healthcheck"]
    assert isinstance(worker_check, dict)
    assert "9100/metrics" in worker_check["test"][-1]


@pytest.mark.parametrize("service", SERVER_SERVICES)
def test_each_command_is_one_the_cli_accepts(service: str) -> None:
    """``claude-notify server <command> --help`` parses every option compose passes."""
    command = compose()[service]["command"]
    assert isinstance(command, list)
    result = subprocess.run([sys.executable, "-m", "claude_notify", "server", *command, "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
