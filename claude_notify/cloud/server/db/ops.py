"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def insert_ignore(
    session: Session, model: type[DeclarativeBase], values: dict[str, Any], conflict: list[str]
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; ``True`` if this call inserted the row.

    The database arbitrates races on unique keys, so two requests carrying the same idempotency
    key cannot both win, whichever replica they reach.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Any = model.__table__
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(table.c[conflict[0]])
    )
    # RETURNING, not rowcount: drivers report -1 for a skipped ON CONFLICT row.
    return session.execute(stmt).first() is not None
