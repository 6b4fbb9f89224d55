"""``--match``: the line reported is the last matching one, whatever the chunking.

The scan searches back from the end in growing windows instead of walking every match; these
tests hold it to the plain definition (the last of ``finditer`` over the complete lines).
"""

from __future__ import annotations

import itertools
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_notify.midrun import Needle, Watcher, last_match, required_literal
from claude_notify.runner import Tail

PATTERNS = ["^ERROR", "rror", r"\d+$", "^$", ".", "(?<=x)y", "^(ERROR|WARN):"]
LINES = st.lists(st.sampled_from(["ok", "ERROR: a", "WARN: b", "x", "xy", "", "12", "rror"]),
                 max_size=60)


def naive_last_line(pattern: re.Pattern[bytes], data: bytes) -> bytes | None:
    matches = list(pattern.finditer(data))
    if not matches:
        return None
    last = matches[-1]
    start = data.rfind(b"\n", 0, last.start()) + 1
    stop = data.find(b"\n", last.end())
    return data[start: stop if stop >= 0 else len(data)]


@settings(max_examples=150, deadline=None)
@given(lines=LINES, pattern=st.sampled_from(PATTERNS), extra=st.binary(max_size=20))
def test_last_match_is_the_last_of_finditer(lines: list[str], pattern: str,
                                            extra: bytes) -> None:
    compiled = re.compile(pattern.encode(), re.MULTILINE)
    complete = "".join(f"{line}\n" for line in lines).encode()
    data = complete + extra.replace(b"\n", b"")  # a partial line after the cut
    got = last_match(compiled, data, 0, len(complete))
    expected = naive_last_line(compiled, complete)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        start = data.rfind(b"\n", 0, got.start()) + 1
        stop = data.find(b"\n", got.end(), len(complete))
        assert data[start: stop if stop >= 0 else len(complete)] == expected


def test_last_match_in_a_long_run_of_matching_lines() -> None:
    compiled = re.compile(rb"^line \d+$", re.MULTILINE)
    data = b"".join(b"line %d\n" % i for i in range(100_000))
    found = last_match(compiled, data, 0, len(data))
    assert found is not None and found.group() == b"line 99999"


class Emitted:
    """What the watcher's worker thread sent, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, text: str | None, tail: str) -> None:
        with self.lock:
            self.items.append((kind, text))


@settings(max_examples=60, deadline=None)
@given(lines=LINES, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
       pattern=st.sampled_from([rb"^(ERROR|WARN):", rb"^ERROR: a"]))
def test_the_watcher_reports_the_last_matching_line_across_chunks(
    lines: list[str], cuts: list[int], pattern: bytes
) -> None:
    """``^ERROR: a`` needs the literal ``ERROR: a``, which a cut may split between chunks."""
    output = "".join(f"{line}\n" for line in lines).encode()
    compiled = re.compile(pattern, re.MULTILINE)
    emitted = Emitted()
    watcher = Watcher(pattern=compiled, every=None, interval=0.0, tail=Tail(100), emit=emitted)
    edges = sorted({0, len(output), *(c for c in cuts if c < len(output))})
    # One buffer reused, as the runner does, with a stale match past each chunk's end: the
    # watcher must read only ``buf[:n]``.
    stale = b"ERROR: a stale\n" * (len(output) // 15 + 2)
    buf = bytearray(stale[: len(output) + 15])
    for lo, hi in itertools.pairwise(edges):
        buf[: hi - lo] = output[lo:hi]
        watcher.feed(buf, hi - lo)
        buf[: hi - lo] = stale[: hi - lo]
    watcher.finish(timeout=10)
    assert not watcher.thread.is_alive()
    matching = [line for line in lines if compiled.search(line.encode())]
    texts = [text for kind, text in emitted.items if kind == "match"]
    if matching:
        assert texts and texts[-1] == matching[-1]
        assert set(texts) <= set(matching)
    else:
        assert texts == []


@pytest.mark.parametrize("chunks", [[b"x\nERR", b"OR: a\n"], [b"ok\nERROR: a", b"\nok\n"],
                                    [b"ERROR", b": ", b"a", b"\n"]])
def test_a_match_split_between_chunks_is_found(chunks: list[bytes]) -> None:
    emitted = Emitted()
    watcher = Watcher(pattern=re.compile(rb"^ERROR: a", re.MULTILINE), every=None,
                      interval=0.0, tail=Tail(100), emit=emitted)
    for chunk in chunks:
        watcher.feed(bytearray(chunk), len(chunk))
    watcher.finish(timeout=10)
    assert [text for kind, text in emitted.items if kind == "match"] == ["ERROR: a"]


def test_the_required_literal_is_taken_only_where_every_match_needs_it() -> None:
    def literal(pattern: bytes) -> bytes:
        return required_literal(re.compile(pattern, re.MULTILINE))

    assert literal(rb"^ERROR") == b"ERROR"
    assert literal(rb"^(ERROR|WARN): (\d+) failed") == b" failed"
    assert literal(rb"loss=\d+") == b"loss="
    assert literal(rb"ab?c") == b"a"
    assert literal(rb"[EW]RROR") == b"RROR"
    for unsure in (rb"ERROR|WARN", rb"(?i)error", rb"(?x) E R R", rb"\d+", rb"[EW]"):
        assert literal(unsure) == b"", unsure


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(alphabet="EROWANerowan :\t0123456789x", max_size=12),
                      max_size=30),
       pattern=st.sampled_from([*PATTERNS, "ERROR: a", r"^\s*WARN\b", "an? ERR", "O+R",
                                "(ERROR)?x", r"\d+ ERR"]))
def test_the_needle_never_hides_a_match(lines: list[str], pattern: str) -> None:
    compiled = re.compile(pattern.encode(), re.MULTILINE)
    data = "".join(f"{line}\n" for line in lines).encode()
    if compiled.search(data) is not None:
        assert Needle(compiled).present(data, 0, len(data))
