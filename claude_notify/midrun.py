"""``run --match`` and ``--every``: notices while the task runs.

The runner hands every chunk of output to :meth:`Watcher.feed`, on the relay's path: a chunk
that cannot match costs a byte search at C speed (:class:`Needle`), and only output that may
match meets the regular expression. The notices go out from a worker thread, so a slow
notification never holds the output back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from claude_notify.render import clean_output

if TYPE_CHECKING:
    import re
    import threading

    from claude_notify.runner import Tail


class Watcher:
    """``--match`` and ``--every``: events while the task runs, sent from a worker thread."""

    def __init__(self, *, pattern: re.Pattern[bytes] | None, every: float | None,
                 interval: float, tail: Tail, emit: Any) -> None:
        import queue
        import threading

        self.pattern = pattern
        self.needle = Needle(pattern)
        self.every = every
        self.interval = interval
        self.tail = tail
        self.emit = emit
        self.carry = b""
        self.next_match_at = 0.0
        self.held: str | None = None
        self.next_progress = time.monotonic() + every if every else None
        self.queue: queue.SimpleQueue[tuple[str, str | None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        if self.pattern is None:
            return
        # Searched in the runner's own buffer, never copied whole: output that cannot match is
        # only scanned at C speed, and of output that does, only the matching line is copied.
        cut = buf.rfind(b"\n", 0, n) + 1
        if not cut:  # no line ends here yet
            self.carry = (self.carry + buf[:n])[-4096:]
            return
        body = buf.find(b"\n", 0, cut) + 1 if self.carry else 0
        line = self._last_line(buf, body, cut)
        if line is None and self.carry:  # the line the last chunk began
            head = self.carry + buf[:body]
            line = self._last_line(head, 0, len(head))
        self.carry = bytes(buf[max(cut, n - 4096) : n])
        if line is not None:
            self._matched(clean_output(line).strip()[:500])

    def _last_line(self, data: bytes | bytearray, start: int, end: int) -> bytes | None:
        """The last line of ``data[start:end]`` (whole lines) that matches, if any."""
        if self.pattern is None or not self.needle.present(data, start, end):
            return None
        found = last_match(self.pattern, data, start, end)
        if found is None:
            return None
        lo = data.rfind(b"\n", start, found.start()) + 1 or start
        hi = data.find(b"\n", found.end(), end)
        return bytes(data[lo : hi if hi >= 0 else end])

    def _matched(self, text: str) -> None:
        if time.monotonic() >= self.next_match_at:
            self._send_match(text)
        else:
            self.held = text  # rate-limited: the latest match goes out when the wait is over

    def _send_match(self, text: str) -> None:
        self.queue.put(("match", text))
        self.next_match_at = time.monotonic() + self.interval
        self.held = None

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.next_progress,
                                 self.next_match_at if self.held is not None else None)
                     if d is not None]
        return min(deadlines) if deadlines else None

    def tick(self) -> None:
        now = time.monotonic()
        if self.held is not None and now >= self.next_match_at:
            self._send_match(self.held)
        if self.next_progress is not None and self.every and now >= self.next_progress:
            self.queue.put(("progress", None))
            self.next_progress = now + self.every

    def finish(self, timeout: float) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            kind, text = item
            try:
                self.emit(kind, text, clean_output(self.tail.value()))
            except Exception:  # noqa: S112 - a failed mid-run notice must not stop the relay
                continue


class Needle:
    """A literal every match must contain, to skip output that cannot match at C speed.

    Python's ``re`` crawls through a line-anchored pattern (``^ERROR``: ~55 MB/s) but finds a
    byte with ``memchr`` at gigabytes a second. So the longest run of literal bytes in the
    pattern's top-level sequence (required by any match) is taken from the parsed pattern, and
    output is searched first for the byte of it that is rarest in this very output (counted on
    a sample now and then: ``F`` is on every line of a log of ``INFO``, ``T`` may be on none),
    then for the whole literal; only output that holds it is handed to the regular expression.
    """

    _SAMPLE = 1 << 16
    _RECOUNT = 64
    """Chunks between two choices of the rare byte."""

    def __init__(self, pattern: re.Pattern[bytes] | None) -> None:
        self.literal = required_literal(pattern) if pattern is not None else b""
        self.choices = sorted(set(self.literal))
        self.rare: int | None = None
        self.chunks = 0

    def present(self, data: bytes | bytearray, start: int, end: int) -> bool:
        """Whether ``data[start:end]`` holds the literal (always, when there is none)."""
        if not self.literal:
            return True
        if self.chunks % self._RECOUNT == 0 or self.rare is None:
            sample = min(end, start + self._SAMPLE)
            self.rare = min(self.choices, key=lambda b: data.count(b, start, sample))
        self.chunks += 1
        first = data.find(self.rare, start, end)
        if first < 0:
            return False
        return data.find(self.literal, max(start, first - len(self.literal) + 1), end) >= 0


def required_literal(pattern: re.Pattern[bytes]) -> bytes:
    """The longest literal run of the pattern's top level, or ``b""`` when unsure."""
    import re

    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return b""
    try:  # a private parser: anything unexpected only turns the shortcut off
        from re import _parser  # type: ignore[attr-defined]

        items = list(_parser.parse(pattern.pattern, pattern.flags))
        literal_op = _parser.LITERAL
    except Exception:
        return b""
    best = run = b""
    for op, value in items:
        if op == literal_op and isinstance(value, int):
            run += bytes([value])
            best = max(best, run, key=len)
        else:
            run = b""
    return best


def last_match(pattern: re.Pattern[bytes], data: bytes | bytearray, start: int,
               end: int) -> re.Match[bytes] | None:
    """The last match in ``data[start:end]``, without walking every match in Python.

    Regular expressions only search forwards, so: one search tells whether there is any match;
    then windows that start on a line and double in size are searched back from the end, so a
    pattern that matches every line costs one short window, not a loop over every line.
    """
    first = pattern.search(data, start, end)
    if first is None:
        return None
    size = 256
    while True:
        lo = max(first.start(), end - size)
        if lo > first.start():  # from a line's start, never before the first match
            lo = data.rfind(b"\n", first.start(), lo) + 1 or first.start()
        last = None
        for match in pattern.finditer(data, lo, end):
            last = match
        if last is not None:
            return last
        size *= 4
