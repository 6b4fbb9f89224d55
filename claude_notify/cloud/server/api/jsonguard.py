"""JSON from clients and providers, checked for what neither database nor a response can hold.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``1e999`` (as infinity), integers of any size,
lone surrogates (``"\\ud800"``) and nesting as deep as its recursion allows. None of these makes
the round trip through both databases and back out as JSON: PostgreSQL's ``jsonb`` refuses NaN
and ``\\ud800``, SQLite stores them and every later response that includes them fails to encode,
an integer past 64 bits overflows a column, and deep nesting exhausts the recursion of whatever
walks the value next. They are refused where the JSON comes in, the same on both databases.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

MAX_DEPTH: Final = 32
"""Deeper than any body the API or a provider (Telegram, Discord, Feishu) sends."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""In a Python string a valid astral character is one code point, so any surrogate is alone."""


def problem(value: Any, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why parsed JSON cannot be taken (one line), or ``None``.

    Iterative, so a deeply nested value costs no stack before it is refused.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return "text must be valid Unicode (it has a lone surrogate)"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return "integers must fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return f"JSON must not be nested more than {max_depth} levels deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def loads(raw: bytes | str) -> Any:
    """Parse a request body; ``ValueError`` with a one-line reason for anything refused."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"JSON must not be nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # JSONDecodeError and undecodable bytes
        raise ValueError("the body is not JSON") from None
    if (why := problem(value)) is not None:
        raise ValueError(why)
    return value
