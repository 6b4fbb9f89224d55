"""The documented scale-out from a clean install: this checkout's wheel (built from its sdist)
installed with its ``[server]`` extra by ``scripts/install.sh`` into a throwaway HOME and pipx home
(no dev group), and ``claude-notify server worker`` on PostgreSQL and Redis.

The dev venv has every tool and transport installed, so it cannot show a dependency the
``[server]`` extra forgot, nor a file the wheel left out; this does. Slow (a pipx venv and an
install, made fast by pip's cache), so it carries its own marker: ``-m "not packaging"`` leaves it
out. The install is shared with tests/test_install_script.py (tests/packaging_kit.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from cloud_kit import wait_for
from packaging_kit import server_install


@pytest.mark.packaging
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(1200)
def test_a_fresh_server_install_runs_the_worker_on_redis(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, pg_db: str) -> None:
    home = server_install(tmp_path_factory).home
    env = {k: v for k, v in home.env.items() if not k.startswith("PIP")}
    env.update({"DATABASE_URL": pg_db, "REDIS_URL": "redis://127.0.0.1:6379/0",
                "CLAUDE_NOTIFY_SERVER_AUTO_MIGRATE": "1", "PATH": f"{home.bin_dir}:/usr/bin:/bin"})
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([str(home.command), "server", "worker"],
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
