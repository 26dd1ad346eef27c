"""SQL literals and identifiers, written one way for both stores.

Every layer that must put a value into SQL text uses these (never its own quoting): a
string literal doubles its single quotes, an identifier doubles its double quotes, a
timestamp is written in UTC with microseconds and cast to TIMESTAMPTZ, so DuckDB and
PostgreSQL read the same instant. Prefer bound parameters (``store.query(sql, [value])``)
where the statement allows them; these are for the places that build SQL text
(generated views, ``IN (...)`` lists, DDL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segmint.store._base import Store

__all__ = ["column_exists", "date_lit", "ident", "lit", "literal", "table_exists", "ts_lit"]


def lit(value: Any) -> str:
    """A SQL string literal: ``O'Brien`` -> ``'O''Brien'``."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier, inner double quotes doubled (``a"b`` -> ``"a""b"``)."""
    return '"' + str(name).replace('"', '""') + '"'


def ts_lit(value: datetime) -> str:
    """A TIMESTAMPTZ literal of an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"CAST('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}+00' AS TIMESTAMPTZ)"


def date_lit(value: date) -> str:
    """A DATE literal."""
    return f"CAST('{value.isoformat()}' AS DATE)"


def literal(value: Any) -> str:
    """Any scalar as SQL: NULL, TRUE/FALSE, a number (``repr``), a timestamp, or a string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return ts_lit(value)
    if isinstance(value, date):
        return date_lit(value)
    return lit(value)


def table_exists(store: Store, table: str) -> bool:
    """Whether ``table`` exists in the store's current schema."""
    n = store.scalar(
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = current_schema() AND table_name = {lit(table)}"
    )
    return bool(n)


def column_exists(store: Store, table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` in the store's current schema."""
    n = store.scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        f"AND table_name = {lit(table)} AND column_name = {lit(column)}"
    )
    return bool(n)
