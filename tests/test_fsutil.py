"""The one atomic writer: whole files or none, each writer's own mode, no temporary file left."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from claude_notify.fsutil import atomic_write

SIZE = 256 * 1024

WRITER = f"""
import sys
from pathlib import Path
from claude_notify.fsutil import atomic_write
path, letter, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    atomic_write(path, (letter * {SIZE}).encode(), mode=0o600)
print("done", flush=True)
"""


def test_two_processes_writing_one_file_never_leave_a_partial_file_or_a_temporary(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "shared"
    atomic_write(path, b"a" * SIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), letter, "150"],
                                env=env, stdout=subprocess.PIPE, text=True)
               for letter in "bc"]
    seen: set[bytes] = set()
    reads = 0
    while any(w.poll() is None for w in writers) or reads == 0:
        data = path.read_bytes()
        reads += 1
        assert len(data) == SIZE and data == data[:1] * SIZE, "a reader saw a partial file"
        seen.add(data[:1])
    for writer in writers:
        out, _ = writer.communicate(timeout=60)
        assert (writer.returncode, out) == (0, "done\n")
    assert path.read_bytes() in (b"b" * SIZE, b"c" * SIZE)
    assert seen & {b"b", b"c"}, "the reader never saw a writer's file"
    assert sorted(p.name for p in path.parent.iterdir()) == ["shared"], "a temporary was left"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_mode_is_exact_or_the_umask_default(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        secret, plain, kept = tmp_path / "secret", tmp_path / "plain", tmp_path / "kept"
        atomic_write(secret, "token")
        atomic_write(plain, "id", mode=None)
        atomic_write(kept, "{}", mode=0o664)  # wider than the umask allows: kept as asked
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o664


def test_refused_before_the_rename_or_failed_leaves_the_old_file_and_no_temporary(
        tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("old", encoding="utf-8")
    assert atomic_write(path, "new", before_replace=lambda: False) is False
    assert path.read_text(encoding="utf-8") == "old"

    def boom() -> bool:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, "new", before_replace=boom)
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    assert atomic_write(path, "new") is True
    assert path.read_text(encoding="utf-8") == "new"


def test_a_named_temporary_is_truncated_and_renamed(tmp_path: Path) -> None:
    path, scratch = tmp_path / "journal", tmp_path / "journal.compacting"
    scratch.write_text("a leftover much longer than the new content", encoding="utf-8")
    atomic_write(path, "short\n", temp=scratch, sync_dir=True)
    assert path.read_text(encoding="utf-8") == "short\n" and not scratch.exists()
