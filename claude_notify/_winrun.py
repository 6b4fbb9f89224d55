"""The runner on native Windows: pipes and threads, no pty, no POSIX signals.

Type-checked (``mypy --platform win32``), not run, in CI. What differs from POSIX is in the
README: the child sees pipes rather than a console, Ctrl-C reaches it through the console's own
process group, and resource usage is not measured.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, BinaryIO

from claude_notify.errors import CommandNotExecutable, CommandNotFound

if TYPE_CHECKING:
    from claude_notify.runner import ChildExit, Observer, Tail


def run_windows(argv: Sequence[str], *, tail: Tail, log: BinaryIO | None,
                observer: Observer | None) -> ChildExit:
    """Run ``argv`` with its output relayed through two threads."""
    from claude_notify.runner import CHUNK, ChildExit

    lock = threading.Lock()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise CommandNotFound(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise CommandNotExecutable(f"permission denied: {argv[0]}") from None

    def pump(src: IO[bytes], dst: BinaryIO) -> None:
        while chunk := src.read1(CHUNK) if hasattr(src, "read1") else src.read(CHUNK):
            dst.write(chunk)
            dst.flush()
            with lock:
                view = memoryview(chunk)
                tail.feed(view)
                if log is not None:
                    log.write(chunk)
                if observer is not None:
                    observer.feed(chunk, len(chunk))

    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE was asked for
        raise RuntimeError("no pipes")
    threads = [threading.Thread(target=pump, args=(proc.stdout, sys.stdout.buffer), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, sys.stderr.buffer), daemon=True)]
    for t in threads:
        t.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = proc.wait()
    for t in threads:
        t.join()
    return ChildExit(code, None, None, time.monotonic() - start, tail.value(), None, None)
