"""The store interface and the DuckDB reference implementation."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import sqlglot

from segmint.errors import SegmintError, StoreBusyError, StoreError
from segmint.store._migrations import MIGRATIONS, Migration
from segmint.store._schema import (
    PREDICT_DDL,
    PRIVACY_ALTER_DDL,
    PRIVACY_DDL,
    SCHEMA_VERSION,
    SERVICE_DDL,
    SYSTEM_DDL,
    TABLES,
    WORKSPACE_DDL,
    Table,
    run_tables_ddl,
    table_ddl,
)
from segmint.store._toolkit import Capabilities, Staging

log = logging.getLogger(__name__)


def transpile(sql: str, dialect: str) -> list[str]:
    """Transpile DuckDB SQL (one or more statements) to ``dialect``."""
    if dialect == "duckdb":
        return [s.strip() for s in sqlglot.transpile(sql, read="duckdb", write="duckdb") if s]
    return [s for s in sqlglot.transpile(sql, read="duckdb", write=dialect) if s.strip()]


DERIVED_FROM = {"email_index": "email", "phone_index": "phone", "birthday_md": "birthday"}
"""A derived column of ``users`` -> the column the loader computes it from."""


def split_columns(table: Table, columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the non-key columns an upsert changes on stored rows, those it keeps as stored)."""
    update = [c for c in table.column_names if c not in table.key]
    if columns is not None:
        # a derived column (a blind index, birthday_md) follows the column it is made from
        update = [c for c in update if c in columns or DERIVED_FROM.get(c) in columns]
    keep = [c for c in table.column_names if c not in table.key and c not in update]
    return update, keep


def same_sql(columns: list[str], s: str = "s", t: str = "t") -> str:
    """SQL: the ``columns`` of rows ``s`` and ``t`` are all equal (NULL equal to NULL)."""
    if not columns:
        return "TRUE"
    row_s = ", ".join(f"{s}.{c}" for c in columns)
    row_t = ", ".join(f"{t}.{c}" for c in columns)
    return f"(row({row_s}) IS NOT DISTINCT FROM row({row_t}))"


def _sql_text(text: str) -> str:
    """A SQL string literal of ``text``."""
    return "'" + text.replace("'", "''") + "'"


def ts_sql(when: datetime | None) -> str:
    """A TIMESTAMPTZ literal of ``when`` (None: the transaction's current_timestamp)."""
    if when is None:
        return "current_timestamp"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"CAST('{when.astimezone(UTC).isoformat()}' AS TIMESTAMPTZ)"


def scratch_engine() -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB with the canonical tables, empty and without constraints: a
    place to bind and type expressions written against them (custom features)."""
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    for table in TABLES.values():
        cols = ", ".join(f"{c.name} {c.type}" for c in table.columns)
        con.execute(f"CREATE TABLE {table.name} ({cols})")
    return con


#: DuckDB's file header: a main header and two database headers of 4 KiB each
_HEADER_BYTES = 3 * 4096


class Store:
    """A place where the canonical tables live.

    The base class is the DuckDB store; :class:`PostgresStore` overrides only what differs.
    Every SQL string handed to :meth:`query` / :meth:`execute` is written in DuckDB's
    dialect and transpiled where the backend differs.

    The *engine* is the DuckDB connection where validation and staging run. For the DuckDB
    store it is the store itself (no copy); for PostgreSQL it is an in-memory DuckDB.
    """

    dialect = "duckdb"

    read_only: bool = False
    """Opened read-only (a DuckDB file other processes may read at the same time)."""

    secondary_indexes = False
    """Capability: the store keeps lookup indexes and primary keys on run tables (PostgreSQL);
    DuckDB relies on zone maps, as an ART index would slow bulk writes."""

    capabilities = Capabilities(
        engine_is_store=True, arrow_fetch=True, secondary_indexes=False, shared=False
    )
    """What this store can do (see :class:`~segmint.store.Capabilities`); callers branch on
    these flags, never on :attr:`dialect`."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.location = str(path)
        self.read_only = read_only
        if read_only and not Path(path).is_file():
            raise StoreError(
                f"there is no DuckDB store at {path} yet: run `segmint ingest` (or any command "
                "that writes) to create it"
            )
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path), read_only=read_only)
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
        """Refuse a file shorter than the blocks in use need: cut short (a copy that
        stopped, a full disk), DuckDB would open it and fail at the first read of a lost
        block, in the middle of a command.

        The header's ``total_blocks`` counts free blocks too, and a checkpoint truncates
        free blocks at the end of the file, so a healthy file can be shorter than
        ``total_blocks`` blocks; only the blocks in use (plus the 3 header blocks of
        4 KiB) are a floor every healthy file meets."""
        try:
            size = path.stat().st_size
        except OSError:
            return
        n_used, block_size = self._con.execute(
            "SELECT used_blocks, block_size FROM pragma_database_size() LIMIT 1"
        ).fetchone() or (0, 0)
        needed = _HEADER_BYTES + int(n_used) * int(block_size)
        if int(n_used) and size < needed:
            self._con.close()
            raise _unreadable(
                path,
                f"{size:,} bytes, fewer than the {int(n_used):,} blocks of "
                f"{int(block_size):,} bytes in use need",
            )

    # -- engine ---------------------------------------------------------------------------
    def _engine_connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection where staging and validation run (store internals and
        :class:`Staging` only; layers use :meth:`staging`)."""
        return self._con

    def staging(self) -> Staging:
        """A staging area in the engine: ``with store.staging() as stage: ...``.

        Temporary tables and registered frames made through it are named by it and dropped
        when the block ends. See :class:`~segmint.store.Staging`.
        """
        return Staging(self)

    # -- plain SQL ------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        for stmt in transpile(sql, self.dialect) if params is None else [sql]:
            self._con.execute(stmt, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run one DuckDB-dialect SELECT and return a DataFrame."""
        return self._con.execute(sql, params).df()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first column of the first row of a SELECT (None when there is no row)."""
        row = self.query(sql, params)
        return None if row.empty else row.iat[0, 0]

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one DuckDB-dialect SELECT and return an Arrow table (zero-copy on DuckDB)."""
        return self._con.sql(sql, params=params).to_arrow_table()

    def insert(
        self,
        table: str,
        data: pd.DataFrame | pa.Table,
        columns: Sequence[str] | None = None,
    ) -> int:
        """Bulk-append the rows of a DataFrame or Arrow table to store table ``table``.

        ``columns`` (default: the frame's columns) are matched by name. One INSERT from a
        registered frame on DuckDB, COPY on PostgreSQL; joins the caller's transaction.
        Returns the number of rows.
        """
        if columns is None:
            columns = data.column_names if isinstance(data, pa.Table) else list(data.columns)
        cols = [str(c) for c in columns]
        n = int(data.num_rows if isinstance(data, pa.Table) else len(data))
        if n == 0:
            return 0
        with self.staging() as stage:
            stage.write(table, stage.frame(table, data), cols)
        return n

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

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` until the end of the transaction this opens (or joins).

        Writers of the same store taking the same lock run one after the other, so a check
        and the write it allows are one step. DuckDB: one process holds the file and the
        transaction is enough. PostgreSQL takes a transaction-level advisory lock keyed by
        the schema and ``name``.
        """
        with self.transaction():
            yield

    # -- schema ---------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables, migrate an older store and record its schema version.

        Idempotent. Runs in one transaction, under a lock where several processes may open
        the store at once (PostgreSQL), so two first opens never race and a failed
        migration leaves the store as it was.
        """
        with self.transaction():
            self._lock_schema()
            self.execute(SYSTEM_DDL)
            for table in TABLES.values():
                self.execute(self._table_ddl(table))
            current = self.scalar("SELECT max(version) FROM schema_version")
            if current is None or pd.isna(current):  # fresh: created at the latest schema
                self.execute(run_tables_ddl(secondary_indexes=self.secondary_indexes))
                self.execute(SERVICE_DDL)
                self.execute(WORKSPACE_DDL)
                self.execute(PRIVACY_DDL)
                for ddl in PRIVACY_ALTER_DDL:
                    self.execute(ddl)
                self.execute(PREDICT_DDL)
                self._record_version(SCHEMA_VERSION)
            elif int(current) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.location} has schema version {current}, newer than this "
                    f"segmint understands ({SCHEMA_VERSION}); upgrade segmint"
                )
            elif int(current) < SCHEMA_VERSION:
                steps = [step for step in MIGRATIONS if step.version > int(current)]
                for step in steps:
                    self._migrate(step)
                log.warning(
                    "store %s: migrated from schema version %d to %d (%s); a segmint older "
                    "than this one can no longer open it",
                    self.location,
                    int(current),
                    SCHEMA_VERSION,
                    "; ".join(step.description for step in steps),
                )
            self._after_schema()

    def add_columns(self, table: str, columns: dict[str, str]) -> list[str]:
        """Add the ``columns`` (name -> DuckDB type) that ``table`` lacks; returns their names.

        For tables whose columns follow the data (``features``: a custom feature, or one
        added to the catalog, gets its column when a run first stores it). One schema
        change under the store's schema lock; it joins the caller's transaction.
        """
        with self.schema_change():
            rows = self.query(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = current_schema() AND table_name = {_sql_text(table)}"
            )
            existing = {str(c).lower() for c in rows.iloc[:, 0]}
            added = [name for name in columns if name not in existing]
            for name in added:
                self.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {columns[name]}')
        return added

    def _migrate(self, step: Migration) -> None:
        log.info("store %s: migrating to schema version %d", self.location, step.version)
        try:
            step.apply(self)
        except SegmintError:
            raise
        except Exception as exc:  # an engine error: the transaction rolls back
            raise StoreError(
                f"store {self.location}: migration to schema version {step.version} "
                f"({step.description}) failed and was rolled back, the store is unchanged: "
                f"{str(exc)[:300]}"
            ) from None
        self._record_version(step.version)

    def _record_version(self, version: int) -> None:
        self.execute(f"INSERT INTO schema_version VALUES ({int(version)}, current_timestamp)")

    @contextmanager
    def schema_change(self) -> Iterator[None]:
        """Create or alter tables inside this block as one step: one transaction holding
        the store's schema lock (PostgreSQL: two processes creating the same table at once
        would otherwise fail on ``pg_type``; DuckDB: one process holds the file)."""
        with self.transaction():
            self._lock_schema()
            yield

    def _lock_schema(self) -> None:
        """Serialise schema changes between processes (none needed: one process per file)."""

    def _after_schema(self) -> None:
        """Backend-specific touches once every table exists (none for DuckDB)."""

    def set_primary_key(self, table: str, key: Sequence[str] | None) -> None:
        """Replace the primary key of ``table`` (None: drop it). DuckDB's canonical tables
        have none (keys are enforced by the loader), so this is a no-op here."""

    def alter_column_type(self, table: str, column: str, type_: str) -> None:
        """Change a column's type, converting the values (a migration step)."""
        self.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {type_}')

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

    def to_engine(self, sql: str, columns: dict[str, str], name: str) -> str:
        """Copy the result of a store query (DuckDB dialect, with ``columns`` of those
        types) into engine temp table ``name``; returns ``name``."""
        self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        return name

    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        """Hold the store's ingest lock while a load runs: one load at a time per store, so
        each load counts what it inserts against what the previous ones stored.

        DuckDB: a store file is open in one process at a time, nothing to do. PostgreSQL
        waits up to :attr:`lock_timeout` seconds for another load, then raises
        :class:`~segmint.errors.StoreError`.
        """
        yield

    lock_timeout: float = 600.0
    """Seconds a load waits for another load on the same store before it stops."""

    def write_accepted(
        self,
        table: Table,
        relation: str,
        *,
        columns: Sequence[str] | None = None,
        now: datetime | None = None,
        kept: str | None = None,
    ) -> tuple[int, int, int, int]:
        """Upsert the rows of engine relation ``relation`` (every column of ``table``).

        New keys are inserted whole. On a stored key only ``columns`` change (the non-key
        columns the source maps; default: all): the others keep their stored value, and a
        row is unchanged when every one of ``columns`` equals the stored value. The
        table's ``recorded`` column is set to ``now`` (default: the transaction's time) on
        new rows and never changed.

        ``kept`` names an engine relation of (the key columns, ``_field``): the fields of
        the batch that hold no usable value (field issues, NULL in ``relation``). On a
        stored key such a field keeps its stored value, in the comparison and in the
        update; on a new key it stays NULL.

        Returns (inserted, updated, unchanged, fields kept as stored). Must run inside
        :meth:`transaction`.
        """
        con = self._con
        names = table.column_names
        update, keep = split_columns(table, columns)
        rec = [table.recorded] if table.recorded else []
        cols = ", ".join(names + rec)
        new_row = ", ".join(names + ([ts_sql(now)] if rec else []))
        if self.count(table.name) == 0:  # first load: straight in, one pass over the source
            row = con.execute(
                f"INSERT INTO {table.name} ({cols}) SELECT {new_row} FROM {relation}"
            ).fetchone()
            return (0 if row is None else int(row[0])), 0, 0, 0
        # incremental load: compare with what is stored (materialize the batch once)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _acc_mat AS SELECT {', '.join(names)} FROM {relation}"
        )
        n_kept = self._keep_stored(table, kept, update) if kept is not None else 0
        key_join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        stored = "".join(f", t.{c}" for c in keep + rec)  # what an update keeps
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _existing AS
            SELECT {", ".join(f"s.{k}" for k in table.key)}, {same_sql(update)} AS same{stored}
            FROM _acc_mat s JOIN {table.name} t ON {key_join}"""
        )
        n_unchanged, n_updated = con.execute(
            "SELECT count(*) FILTER (WHERE same), count(*) FILTER (WHERE NOT same) FROM _existing"
        ).fetchone()  # type: ignore[misc]
        ex_join = " AND ".join(f"t.{k} = e.{k}" for k in table.key)
        con.execute(f"DELETE FROM {table.name} t USING _existing e WHERE {ex_join} AND NOT e.same")
        s_join = " AND ".join(f"s.{k} = e.{k}" for k in table.key)
        if not keep and not rec:  # the batch holds the whole row: changed and new rows alike
            con.execute(
                f"""INSERT INTO {table.name} ({cols})
                SELECT {cols} FROM _acc_mat s
                WHERE NOT EXISTS (SELECT 1 FROM _existing e WHERE {s_join} AND e.same)"""
            )
        else:  # new rows whole; changed rows: the mapped columns, the others as stored
            con.execute(
                f"""INSERT INTO {table.name} ({cols})
                SELECT {new_row} FROM _acc_mat s
                WHERE NOT EXISTS (SELECT 1 FROM _existing e WHERE {s_join})"""
            )
            changed = ", ".join(f"e.{c}" if c in keep else f"s.{c}" for c in names)
            changed += "".join(f", e.{c}" for c in rec)
            con.execute(
                f"""INSERT INTO {table.name} ({cols})
                SELECT {changed} FROM _acc_mat s JOIN _existing e ON {s_join} WHERE NOT e.same"""
            )
        n_total = int(con.execute("SELECT count(*) FROM _acc_mat").fetchone()[0])  # type: ignore[index]
        con.execute("DROP TABLE IF EXISTS _existing")
        con.execute("DROP TABLE IF EXISTS _acc_mat")
        return n_total - n_unchanged - n_updated, int(n_updated), int(n_unchanged), n_kept

    def _keep_stored(self, table: Table, kept: str, update: list[str]) -> int:
        """Put the stored value back into ``_acc_mat`` for the (key, field) pairs of
        ``kept`` whose key is stored (one UPDATE); returns how many pairs that is."""
        con = self._con
        k_join = " AND ".join(f"k.{c} = t.{c}" for c in table.key)
        keys = ", ".join(f"k.{c}" for c in table.key)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _kept_mat AS
            SELECT {keys}, list(k._field) AS _fields
            FROM {kept} k JOIN {table.name} t ON {k_join} GROUP BY {keys}"""
        )
        fields = {
            f for (f,) in con.execute("SELECT DISTINCT unnest(_fields) FROM _kept_mat").fetchall()
        }
        row = con.execute("SELECT coalesce(sum(len(_fields)), 0) FROM _kept_mat").fetchone()
        n_kept = 0 if row is None else int(row[0])
        # a kept field's derived columns (its blind index) are kept with it
        kept_cols = [c for c in update if DERIVED_FROM.get(c, c) in fields]
        if kept_cols:
            sets = ", ".join(
                f"{c} = CASE WHEN list_contains(x._fields, {_sql_text(DERIVED_FROM.get(c, c))}) "
                f"THEN x._stored_{c} ELSE s.{c} END"
                for c in kept_cols
            )
            stored = ", ".join(f"t.{c} AS _stored_{c}" for c in kept_cols)
            s_join = " AND ".join(f"s.{c} = x.{c}" for c in table.key)
            con.execute(
                f"""UPDATE _acc_mat AS s SET {sets}
                FROM (SELECT k.*, {stored} FROM _kept_mat k JOIN {table.name} t ON {k_join}) x
                WHERE {s_join}"""
            )
        con.execute("DROP TABLE IF EXISTS _kept_mat")
        return n_kept

    def write_rows(self, table: str, relation: str, columns: list[str]) -> None:
        """Append engine relation rows to a system table (quarantine, loads)."""
        cols = ", ".join(f'"{c}"' for c in columns)
        self._con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {relation}")

    # -- another engine reads the tables (issue 23) ----------------------------------------
    def jdbc_source(self) -> dict[str, str] | None:
        """How a JDBC reader (Spark) reaches this store's tables, or None when it cannot
        (DuckDB: another engine reads a Parquet copy, see :meth:`export_parquet`)."""
        return None

    def export_parquet(self, sql: str, path: Path) -> int:
        """Write the rows of a DuckDB-dialect SELECT to one Parquet file; the row count."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
        return int(
            self._con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0]
        )

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
    if is_lock_error(exc):
        held = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", text)
        by = f" (PID {held.group(2)}, {held.group(1)})" if held else ""
        return StoreBusyError(
            f"the DuckDB store {path} is in use by another process{by}: DuckDB allows one "
            "writer at a time. Wait for it to finish or stop it (while `segmint serve` runs, "
            "go through the service), then run the command again",
            pid=int(held.group(2)) if held else None,
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


def is_lock_error(exc: BaseException) -> bool:
    """``exc`` is DuckDB refusing a file another process holds (its lock)."""
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _unreadable(path: Path, found: str) -> StoreError:
    return StoreError(
        f"the DuckDB store {path} is not a readable DuckDB database, maybe truncated or "
        f"damaged ({found}). Restore it from a backup; without one, move it aside and run "
        "`segmint ingest` to load your sources into a new store (what only the store held, "
        "such as the delivery log, is then lost)"
    )
