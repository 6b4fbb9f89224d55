"""Backend plugins, end to end with the real CLI: the example package from ``examples/``
installed by pip, chosen by name; a broken plugin is one line and never changes the wrapped
command's exit code; ``plugins`` lists what is installed; ``auto`` never reads entry points."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import cli_env, run_cli
from plugin_kit import install


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("plugins"))


def _env(tmp_path: Path, plugin_dir: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH", "")) if p)
    return cli_env(tmp_path, PYTHONPATH=path, CN_EXAMPLE_FILE=str(tmp_path / "shown.jsonl"),
                   **extra)


def test_a_backend_plugin_is_chosen_by_name_and_shows_the_notification(
    tmp_path: Path, plugin_dir: Path
) -> None:
    done = run_cli(["run", "--backend", "file", "--", "sh", "-c", "echo hi; exit 3"],
                   env=_env(tmp_path, plugin_dir))
    assert done.returncode == 3 and done.stdout == b"hi\n", done.stderr
    [shown] = [json.loads(line) for line in (tmp_path / "shown.jsonl").read_text().splitlines()]
    assert "sh -c" in shown["title"] + shown["body"] and "3" in shown["title"] + shown["body"]
    assert done.stderr == b""


def test_a_plugin_that_cannot_load_is_one_line_and_the_exit_code_stays(
    tmp_path: Path, plugin_dir: Path
) -> None:
    done = run_cli(["run", "--backend", "broken", "--", "sh", "-c", "exit 5"],
                   env=_env(tmp_path, plugin_dir))
    assert done.returncode == 5
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "plugin 'broken' (cn-broken-plugins 0.1) cannot be loaded: RuntimeError: this " \
           "plugin is broken on purpose" in err
    unknown = run_cli(["run", "--backend", "nosuch", "--", "true"],
                      env=_env(tmp_path, plugin_dir))
    assert unknown.returncode == 2 and b"unknown backend 'nosuch'" in unknown.stderr
    assert b"claude-notify plugins" in unknown.stderr and b"Traceback" not in unknown.stderr


def test_plugins_lists_what_is_installed_with_versions_and_problems(
    tmp_path: Path, plugin_dir: Path
) -> None:
    listed = run_cli(["plugins"], env=_env(tmp_path, plugin_dir))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.decode().splitlines()
    assert any(line.split()[:2] == ["backend", "file"] and
               "claude-notify-example-plugin 1.0.0  ok" in line for line in lines), lines
    assert any(line.startswith("server channel  example-hook") and line.endswith("ok")
               for line in lines), lines
    broken = [line for line in lines if " broken " in line]
    assert len(broken) == 2 and all("cannot be used: plugin 'broken'" in b for b in broken)
    as_json = json.loads(run_cli(["plugins", "--json"],
                                 env=_env(tmp_path, plugin_dir)).stdout)
    assert {(p["kind"], p["name"], p["problem"] is None) for p in as_json} >= {
        ("backend", "file", True), ("server channel", "example-hook", True),
        ("backend", "broken", False)}


def test_doctor_explains_a_plugin_backend(tmp_path: Path, plugin_dir: Path) -> None:
    env = _env(tmp_path, plugin_dir)
    Path(env["CLAUDE_NOTIFY_CONFIG"]).write_text('backend = "file"\n')
    told = run_cli(["doctor", "--json"], env=env)
    assert told.returncode == 0, told.stderr
    report = json.loads(told.stdout)
    [file] = [b for b in report["backends"] if b["name"] == "file"]
    assert (report["chosen"], file["candidate"], file["available"]) == ("file", True, True)


def test_run_with_built_in_backends_never_reads_entry_points(
    tmp_path: Path, plugin_dir: Path
) -> None:
    """``auto`` and a built-in name resolve without importlib.metadata (~5 ms a run)."""
    for backend in ("auto", "terminal"):
        env = _env(tmp_path, plugin_dir, PYTHONPROFILEIMPORTTIME="1")
        done = run_cli(["run", "--backend", backend, "--", "true"], env=env)
        assert done.returncode == 0 and b"| claude_notify.run" in done.stderr  # it profiled
        assert b"importlib.metadata" not in done.stderr, backend
        assert b"| claude_notify.plugins" not in done.stderr, backend
