"""Stores: where the canonical tables live (DuckDB file by default, PostgreSQL in production)."""

from segmint.store._base import DuckDBStore, Store, scratch_engine, transpile
from segmint.store._consent import latest_consent_sql
from segmint.store._open import open_store
from segmint.store._postgres import PostgresStore
from segmint.store._schema import LOAD_ORDER, SCHEMA_VERSION, TABLES, Column, Table
from segmint.store._sql import (
    column_exists,
    date_lit,
    ident,
    lit,
    literal,
    table_exists,
    ts_lit,
)

__all__ = [
    "LOAD_ORDER",
    "SCHEMA_VERSION",
    "TABLES",
    "Column",
    "DuckDBStore",
    "PostgresStore",
    "Store",
    "Table",
    "column_exists",
    "date_lit",
    "ident",
    "latest_consent_sql",
    "lit",
    "literal",
    "open_store",
    "scratch_engine",
    "table_exists",
    "transpile",
    "ts_lit",
]
