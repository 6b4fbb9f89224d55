"""Running users' regular expressions on untrusted output, with a time limit.

A rule's pattern is user input and a log chunk can be a megabyte: a pattern with catastrophic
backtracking (``(a|aa)+$``) would pin a server thread for minutes. The ``regex`` module accepts
the same syntax as ``re`` and can give up after a deadline; a pattern that times out is treated
as not matching, and logged, rather than stalling ingest.
"""

from __future__ import annotations

import logging
from typing import Final

import regex

log = logging.getLogger("claude_notify.server.patterns")

SEARCH_TIMEOUT_S: Final = 0.1


def first_matching_line(pattern: str, text: str, *, max_line: int = 4096) -> str | None:
    """The first line of ``text`` (clipped to ``max_line``) that ``pattern`` matches, if any."""
    try:
        compiled = regex.compile(pattern, regex.MULTILINE)
    except regex.error:
        return None
    for line in text.splitlines():
        try:
            if compiled.search(line[:max_line], timeout=SEARCH_TIMEOUT_S):
                return line[:max_line]
        except TimeoutError:
            log.warning("a match rule's pattern took too long and was skipped")
            return None
    return None


def matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches ``text`` within the time limit."""
    return first_matching_line(pattern, text) is not None
