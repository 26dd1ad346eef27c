"""Stores: where the canonical tables live (DuckDB file by default, PostgreSQL in production)."""

from segmint.store._base import DuckDBStore, Store, scratch_engine, transpile
from segmint.store._consent import latest_consent_sql
from segmint.store._open import open_store
from segmint.store._postgres import PostgresStore
from segmint.store._schema import LOAD_ORDER, SCHEMA_VERSION, TABLES, Column, Table

__all__ = [
    "LOAD_ORDER",
    "SCHEMA_VERSION",
    "TABLES",
    "Column",
    "DuckDBStore",
    "PostgresStore",
    "Store",
    "Table",
    "latest_consent_sql",
    "open_store",
    "scratch_engine",
    "transpile",
]
