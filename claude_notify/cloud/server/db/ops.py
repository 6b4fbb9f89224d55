"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql import Executable

_M = TypeVar("_M", bound=DeclarativeBase)


def insert_ignore(
    session: Session, model: type[DeclarativeBase], values: dict[str, Any], conflict: list[str]
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; ``True`` if this call inserted the row.

    The database arbitrates races on unique keys, so two requests carrying the same idempotency
    key cannot both win, whichever replica they reach.
    """
    stmt = _insert_ignore(session.get_bind().dialect.name, model, tuple(conflict))
    # RETURNING, not rowcount: drivers report -1 for a skipped ON CONFLICT row.
    return session.execute(stmt, values).first() is not None


@functools.cache
def _insert_ignore(dialect: str, model: type[DeclarativeBase], conflict: tuple[str, ...]
                   ) -> Executable:
    """The statement, built once: the values travel as parameters, and building it afresh
    (``.values(**values)``) cost a hot path such as Stripe's webhook a tenth of its CPU."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Any = model.__table__
    return (insert(table).on_conflict_do_nothing(index_elements=list(conflict))
            .returning(table.c[conflict[0]]))


def upsert_row(
    session: Session,
    model: type[_M],
    values: dict[str, Any],
    conflict: list[str],
    touch: dict[str, Any],
) -> _M:
    """Insert or, on conflict, update ``touch``; the row comes back locked, in one statement.

    ``ON CONFLICT DO UPDATE`` takes the row lock on PostgreSQL (SQLite's writer holds the whole
    database), so what follows in the transaction sees no concurrent change to it.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(model)
        .values(**values)
        .on_conflict_do_update(index_elements=conflict, set_=touch)
        .returning(model)
    )
    row: _M = session.scalars(stmt, execution_options={"populate_existing": True}).one()
    return row
