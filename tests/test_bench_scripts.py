"""The benchmark scripts run without a traceback and report what bench_all.py collects.

Cheap on purpose (CI runs it): benchkit's pure parts, ``bench_all.py --help``, one tiny benchmark
end to end through ``bench_all.py``, and the latency phase of ``bench_server.py`` against a
server that resets its connections (it used to die on ``httpx.ReadError``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchkit  # noqa: E402


def test_load_flags_a_run_above_the_core_count() -> None:
    calm = benchkit.Load(before=0.5, after=1.0, cores=2)
    busy = benchkit.Load(before=1.0, after=10.5, cores=2)
    assert not calm.loaded and calm.flag() == ""
    assert busy.loaded and "10.5" in busy.flag() and "2 cores" in busy.flag()
    assert busy.as_dict() == {"before": 1.0, "after": 10.5, "cores": 2, "loaded": True}


def test_cpu_of_children_and_of_a_process_tree() -> None:
    burn = [sys.executable, "-c", "import time\nt = time.process_time()\n"
            "while time.process_time() - t < 0.2: pass"]
    used = benchkit.ChildCPU()
    subprocess.run(burn, check=True)
    assert used.seconds() >= 0.15

    # A shell that runs the burner as its child and then waits: the tree's CPU includes it,
    # through the shell's cutime once reaped.
    parent = subprocess.Popen(["sh", "-c", '"$PY" -c "$BURN"; read x'], stdin=subprocess.PIPE,
                              env={**os.environ, "PY": burn[0], "BURN": burn[2]})
    try:
        tree = benchkit.TreeCPU([parent.pid])
        tree.snapshot()
        deadline = time.monotonic() + 60
        while tree.seconds() < 0.15:
            assert time.monotonic() < deadline, "the burner's CPU never showed in the tree"
            time.sleep(0.05)
        assert benchkit.process_cpu(parent.pid) is not None
    finally:
        parent.communicate(b"\n", timeout=60)
    assert benchkit.process_cpu(parent.pid) is None


def test_markdown_and_json_carry_every_field(tmp_path: Path) -> None:
    report = benchkit.Report("demo", benchkit.Load(before=3.0, after=3.5, cores=2))
    report.add("thing | with pipe", 12.5, "ms", 3.25, "run", "≤ 40 ms", True, "a note")
    report.add("other", None, "MiB/s")
    data = report.as_dict()
    assert set(data["results"][0]) == set(benchkit.RESULT_FIELDS)
    table = benchkit.markdown([data, {"bench": "broken", "load": {}, "results": [],
                                      "error": "boom"}])
    assert "| demo | thing \\| with pipe (a note) | 12.5 ms | 3.25 ms/run | ≤ 40 ms ✓ | ⚠ 3.0→3.5" \
        in table
    assert "| broken | **failed**: boom |" in table
    benchkit.write_json(tmp_path / "r.json", data)
    assert json.loads((tmp_path / "r.json").read_text())["load"]["loaded"] is True


def test_reporting_turns_a_failure_into_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info, \
            benchkit.reporting("demo", tmp_path / "out.json") as report:
        report.add("before the failure", 1.0, "ms")
        raise ConnectionResetError("peer went away")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "demo: error: ConnectionResetError: peer went away" in err
    assert "Traceback" not in err
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["error"] == "ConnectionResetError: peer went away"
    assert saved["results"][0]["measure"] == "before the failure"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SCRIPTS.parent)}


def test_bench_all_help_and_a_tiny_benchmark_end_to_end(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, str(SCRIPTS / "bench_all.py"), "--help"],
                            capture_output=True, text=True, timeout=60, env=_env())
    assert helped.returncode == 0 and "--quick" in helped.stdout

    out = tmp_path / "results"
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_all.py"), "--only", "shell",
                           "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    data = json.loads((out / "bench-results.json").read_text())
    (shell,) = data["benchmarks"]
    assert shell["bench"] == "shell" and shell["error"] is None
    assert set(shell["load"]) == {"before", "after", "cores", "loaded"}
    bash = [r for r in shell["results"] if r["measure"].startswith("bash")]
    assert bash and all(set(r) == set(benchkit.RESULT_FIELDS) for r in bash)
    assert all(r["cpu_ms"] is not None and r["wall"] is not None for r in bash)
    assert "| shell | bash" in (out / "bench-results.md").read_text()


@pytest.fixture
def resetting_server() -> Iterator[int]:
    """An HTTP server that reads a request and resets the connection (RST, no answer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = False

    def serve() -> None:
        while not stop:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                conn.recv(65536)
            except OSError:
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    import threading

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop = True
        thread.join(timeout=5)
        listener.close()


def test_bench_server_latency_phase_survives_reset_connections(resetting_server: int) -> None:
    import bench_server
    import httpx

    async def go() -> tuple[list[float], int]:
        receiver = bench_server.Receiver()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{resetting_server}",
                                     timeout=10) as client:
            return await bench_server.latency(client, receiver, rate=50, seconds=0.1)

    started = time.monotonic()
    samples, failed = asyncio.run(go())
    assert samples == [] and failed == 5
    assert time.monotonic() - started < 20  # no wait for webhooks of posts that failed
