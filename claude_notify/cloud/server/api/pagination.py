"""Keyset pagination: an opaque cursor of (created_at, id), newest first.

Keyset rather than offsets: pages stay stable while new rows arrive and cost the same deep in.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from claude_notify.cloud.server.api.errors import ApiError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    _S = TypeVar("_S", bound=Select[Unpack[tuple[Any, ...]]])
else:
    _S = TypeVar("_S")


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None:
            raise ValueError("naive")
        return created, uuid.UUID(row_id)
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(422, "cursor is not one this API issued") from None


def page(
    stmt: _S,
    *,
    created: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    cursor: str | None,
    limit: int,
) -> _S:
    """Order newest first, start after ``cursor``, fetch one extra row to know if more exist."""
    if cursor:
        at, last = decode_cursor(cursor)
        stmt = stmt.where(or_(created < at, and_(created == at, row_id < last)))
    return stmt.order_by(created.desc(), row_id.desc()).limit(limit + 1)
