"""The documented scale-out from a clean install: a fresh venv, ``pip install '.[server]'`` from
this checkout (no dev group), and ``claude-notify server worker`` on PostgreSQL and Redis.

The dev venv has every tool and transport installed, so it cannot show a dependency the
``[server]`` extra forgot; this does. Slow (a venv and an install, made fast by pip's cache), so
it carries its own marker: ``-m "not packaging"`` leaves it out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cloud_kit import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.packaging
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(1200)
def test_a_fresh_server_install_runs_the_worker_on_redis(tmp_path: Path, pg_db: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          f"{ROOT}[server]"], capture_output=True, timeout=900, check=False)
    assert pip.returncode == 0, pip.stderr.decode()[-2000:]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_NOTIFY", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"DATABASE_URL": pg_db, "REDIS_URL": "redis://127.0.0.1:6379/0",
                "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1", "PATH": f"{venv / 'bin'}:/usr/bin:/bin"})
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([str(venv / "bin" / "claude-notify"), "server", "worker"],
                                  env=env, cwd=tmp_path, stdout=out, stderr=out,
                                  start_new_session=True)
    try:
        def up() -> bool:
            assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
            return "delivery worker started" in log.read_text(errors="replace")

        wait_for(up, timeout=180, what="the worker to start")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert "No module named" not in text and "Traceback" not in text, text[-3000:]
