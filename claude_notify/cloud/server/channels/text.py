"""Text helpers every channel shares: what providers accept, how they count, how to trim.

Two private-use characters, :data:`PLACEHOLDER_OPEN` and :data:`PLACEHOLDER_CLOSE`, are reserved:
the template renderer marks each value with them, so :func:`clean` removes them from every text
that comes from a user or a provider, and no value can forge a placeholder.
"""

from __future__ import annotations

import re
from typing import Final

PLACEHOLDER_OPEN: Final = "\ue000"
PLACEHOLDER_CLOSE: Final = "\ue001"
_FORBIDDEN_CHARS: Final = re.compile(f"[{PLACEHOLDER_OPEN}{PLACEHOLDER_CLOSE}]")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def clean(text: str) -> str:
    """Text every provider accepts: lone surrogates (undecodable bytes) become U+FFFD,
    control characters other than newline and tab are dropped, and our placeholder
    characters cannot be forged."""
    return _FORBIDDEN_CHARS.sub("", _CONTROL.sub("", valid(text).replace("\r\n", "\n")))


def valid(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes) as U+FFFD: encodable everywhere."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def utf16_len(text: str) -> int:
    """Length as Telegram and Discord count it (UTF-16 code units: an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def trim_top(text: str, keep: int) -> str:
    """The last ``keep`` characters of ``text``, from a line start where possible, after a
    marker saying how much was cut."""
    if len(text) <= keep:
        return text
    cut = len(text) - max(keep, 0)
    newline = text.find("\n", cut)
    if newline != -1 and newline - cut < 200:
        cut = newline + 1
    return f"[… {cut} characters trimmed]\n" + text[cut:]
