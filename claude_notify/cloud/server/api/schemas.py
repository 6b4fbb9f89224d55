"""The base of every request body: unknown fields, NUL characters and odd JSON refused.

PostgreSQL cannot store NUL in text, and SQLite can: refusing it at the edge keeps both
databases answering the same, with a 422 instead of a database error. The same goes for what
:mod:`~claude_notify.cloud.server.api.jsonguard` refuses (NaN, 2**64, lone surrogates, deep
nesting).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from claude_notify.cloud.server.api import jsonguard


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if (why := jsonguard.problem(data)) is not None:  # first: it bounds _has_nul's recursion
            raise ValueError(why)
        if _has_nul(data):
            raise ValueError("text must not contain NUL characters")
        return data
