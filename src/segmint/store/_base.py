"""The store interface and the DuckDB reference implementation."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import sqlglot

from segmint.errors import StoreError
from segmint.store._schema import SCHEMA_VERSION, SYSTEM_DDL, TABLES, Table, table_ddl

log = logging.getLogger(__name__)


def transpile(sql: str, dialect: str) -> list[str]:
    """Transpile DuckDB SQL (one or more statements) to ``dialect``."""
    if dialect == "duckdb":
        return [s.strip() for s in sqlglot.transpile(sql, read="duckdb", write="duckdb") if s]
    return [s for s in sqlglot.transpile(sql, read="duckdb", write=dialect) if s.strip()]


class Store:
    """A place where the canonical tables live.

    The base class is the DuckDB store; :class:`PostgresStore` overrides only what differs.
    Every SQL string handed to :meth:`query` / :meth:`execute` is written in DuckDB's
    dialect and transpiled where the backend differs.

    The *engine* is the DuckDB connection where validation and staging run. For the DuckDB
    store it is the store itself (no copy); for PostgreSQL it is an in-memory DuckDB.
    """

    dialect = "duckdb"

    def __init__(self, path: str | Path) -> None:
        self.location = str(path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path))
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of the DuckDB store {path}: {exc.strerror}; "
                "fix `store:` in segmint.yaml"
            ) from None
        except duckdb.Error as exc:
            raise _open_error(Path(path), exc) from None
        self._check_length(Path(path))
        self._con.execute("SET TimeZone='UTC'")
        self._in_tx = False

    def _check_length(self, path: Path) -> None:
        """Refuse a file shorter than the blocks its header lists: cut short (a copy that
        stopped, a full disk), DuckDB would open it and fail at the first read of a lost
        block, in the middle of a command."""
        try:
            size = path.stat().st_size
        except OSError:
            return
        n_blocks, block_size = self._con.execute(
            "SELECT total_blocks, block_size FROM pragma_database_size() LIMIT 1"
        ).fetchone() or (0, 0)
        if size < int(n_blocks) * int(block_size):
            self._con.close()
            raise _unreadable(
                path,
                f"{size:,} bytes, fewer than the {int(n_blocks):,} blocks of "
                f"{int(block_size):,} bytes its header lists",
            )

    # -- engine ---------------------------------------------------------------------------
    @property
    def engine(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection where staging and validation run."""
        return self._con

    # -- plain SQL ------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        for stmt in transpile(sql, self.dialect) if params is None else [sql]:
            self._con.execute(stmt, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run one DuckDB-dialect SELECT and return a DataFrame."""
        return self._con.execute(sql, params).df()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.query(sql, params)
        return None if row.empty else row.iat[0, 0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside either all land or none do."""
        if self._in_tx:
            yield
            return
        self._con.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        else:
            self._con.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- schema ---------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables and record the schema version (idempotent)."""
        with self.transaction():
            self.execute(SYSTEM_DDL)
            for table in TABLES.values():
                self.execute(self._table_ddl(table))
            current = self.scalar("SELECT max(version) FROM schema_version")
            if current is None or pd.isna(current):
                self.execute(
                    f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION}, current_timestamp)"
                )
            elif int(current) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.location} has schema version {current}, newer than this "
                    f"segmint understands ({SCHEMA_VERSION}); upgrade segmint"
                )

    def _table_ddl(self, table: Table) -> str:
        return table_ddl(table)

    def schema_version(self) -> int:
        return int(self.scalar("SELECT max(version) FROM schema_version"))

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    # -- what ingestion needs -------------------------------------------------------------
    def reference_keys(self, table: str, column: str) -> str:
        """Name of a relation in the engine holding the distinct keys of ``table.column``."""
        return f"(SELECT DISTINCT {column} AS k FROM {table})"

    def columns_relation(self, table: str, columns: list[str]) -> str:
        """A relation in the engine with ``columns`` of store table ``table``."""
        return table

    def write_accepted(self, table: Table, relation: str) -> tuple[int, int, int]:
        """Upsert the rows of engine relation ``relation`` into ``table``.

        Returns (inserted, updated, unchanged). Must run inside :meth:`transaction`.
        """
        con = self._con
        cols = ", ".join(table.column_names)
        key_join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        if self.count(table.name) == 0:  # first load: straight in, one pass over the source
            row = con.execute(
                f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {relation}"
            ).fetchone()
            return (0 if row is None else int(row[0])), 0, 0
        # incremental load: compare with what is stored (materialize the batch once)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _acc_mat AS SELECT {cols} FROM {relation}")
        relation = "_acc_mat"
        row_s = ", ".join(f"s.{c}" for c in table.column_names)
        row_t = ", ".join(f"t.{c}" for c in table.column_names)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _existing AS
            SELECT s.{table.key[0]} AS _k0, {", ".join(f"s.{k}" for k in table.key)},
                   (row({row_s}) IS NOT DISTINCT FROM row({row_t})) AS same
            FROM {relation} s JOIN {table.name} t ON {key_join}"""
        )
        n_unchanged, n_updated = con.execute(
            "SELECT count(*) FILTER (WHERE same), count(*) FILTER (WHERE NOT same) FROM _existing"
        ).fetchone()  # type: ignore[misc]
        ex_join = " AND ".join(f"t.{k} = e.{k}" for k in table.key)
        con.execute(f"DELETE FROM {table.name} t USING _existing e WHERE {ex_join} AND NOT e.same")
        s_join = " AND ".join(f"s.{k} = e.{k}" for k in table.key)
        con.execute(
            f"""INSERT INTO {table.name} ({cols})
            SELECT {cols} FROM {relation} s
            WHERE NOT EXISTS (SELECT 1 FROM _existing e WHERE {s_join} AND e.same)"""
        )
        n_total = int(con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0])  # type: ignore[index]
        con.execute("DROP TABLE IF EXISTS _existing")
        con.execute("DROP TABLE IF EXISTS _acc_mat")
        return n_total - n_unchanged - n_updated, int(n_updated), int(n_unchanged)

    def write_rows(self, table: str, relation: str, columns: list[str]) -> None:
        """Append engine relation rows to a system table (quarantine, loads)."""
        cols = ", ".join(f'"{c}"' for c in columns)
        self._con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {relation}")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


DuckDBStore = Store


def _open_error(path: Path, exc: duckdb.Error) -> StoreError:
    """What DuckDB's refusal to open ``path`` means, and what to do."""
    import re

    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first if len(first) <= 200 else first[:199] + "…"
    if path.is_dir():
        return StoreError(
            f"the DuckDB store {path} is a folder, not a file; set `store:` in segmint.yaml "
            "to a file path such as store.duckdb"
        )
    if "Could not set lock" in text or "Conflicting lock" in text:
        held = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", text)
        by = f" (PID {held.group(2)}, {held.group(1)})" if held else ""
        return StoreError(
            f"the DuckDB store {path} is in use by another process{by}: DuckDB allows one "
            "writer at a time. Wait for it to finish or stop it (while `segmint serve` runs, "
            "go through the service), then run the command again"
        )
    unreadable = (
        "not a valid DuckDB database",
        "Could not read enough bytes",
        "Corrupt database file",
        "checksum",
    )
    if any(s in text for s in unreadable):
        return _unreadable(path, first)
    return StoreError(f"cannot open the DuckDB store {path}: {first}")


def _unreadable(path: Path, found: str) -> StoreError:
    return StoreError(
        f"the DuckDB store {path} is not a readable DuckDB database, maybe truncated or "
        f"damaged ({found}). Restore it from a backup; without one, move it aside and run "
        "`segmint ingest` to load your sources into a new store (what only the store held, "
        "such as the delivery log, is then lost)"
    )
