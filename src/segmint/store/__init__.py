"""Stores: where the canonical tables live (DuckDB file by default, PostgreSQL in production)."""

from segmint.store._base import DuckDBStore, Store, scratch_engine, split_columns, transpile
from segmint.store._claim import (
    CLAIM_FILE,
    ServiceClaim,
    access_mode,
    current_access,
    open_project_store,
    read_claim,
    readers_waiting,
    remove_claim,
    write_claim,
)
from segmint.store._consent import latest_consent_sql
from segmint.store._open import open_store
from segmint.store._postgres import PostgresStore
from segmint.store._relations import (
    COMPLETED,
    RUN_TABLES,
    completed,
    completed_orders,
    latest_run_sql,
    latest_runs_sql,
    segment_at_sql,
)
from segmint.store._schema import ALLOWED_VALUES, LOAD_ORDER, SCHEMA_VERSION, TABLES, Column, Table
from segmint.store._sql import (
    column_exists,
    date_lit,
    ident,
    lit,
    literal,
    table_exists,
    ts_lit,
)
from segmint.store._toolkit import Capabilities, Staging

__all__ = [
    "ALLOWED_VALUES",
    "CLAIM_FILE",
    "COMPLETED",
    "LOAD_ORDER",
    "RUN_TABLES",
    "SCHEMA_VERSION",
    "TABLES",
    "Capabilities",
    "Column",
    "DuckDBStore",
    "PostgresStore",
    "ServiceClaim",
    "Staging",
    "Store",
    "Table",
    "access_mode",
    "column_exists",
    "completed",
    "completed_orders",
    "current_access",
    "date_lit",
    "ident",
    "latest_consent_sql",
    "latest_run_sql",
    "latest_runs_sql",
    "lit",
    "literal",
    "open_project_store",
    "open_store",
    "read_claim",
    "readers_waiting",
    "remove_claim",
    "scratch_engine",
    "segment_at_sql",
    "split_columns",
    "table_exists",
    "transpile",
    "ts_lit",
    "write_claim",
]
