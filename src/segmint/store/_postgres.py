"""PostgreSQL store: overrides only what differs from the DuckDB reference store.

Validation still runs in an in-memory DuckDB engine (the same SQL as for the DuckDB
store); accepted rows, quarantine and load records are moved with COPY and upserted with
``INSERT ... ON CONFLICT``. Every write of a load happens in one PostgreSQL transaction.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from segmint.errors import StoreError
from segmint.store._base import (
    DERIVED_FROM,
    Store,
    same_sql,
    split_columns,
    transpile,
    ts_sql,
)
from segmint.store._schema import Table, table_ddl
from segmint.store._toolkit import Capabilities

log = logging.getLogger(__name__)


class PostgresStore(Store):
    """The canonical tables in a PostgreSQL database (``store: postgresql://...``)."""

    dialect = "postgres"
    secondary_indexes = True

    def __init__(self, url: str) -> None:  # noqa: D107 - same contract as Store
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'psycopg[binary]'"
            ) from exc
        self.location = _redact(url)
        try:
            self._pg = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.location}: {exc}") from None
        # JSON comes back as text, as from DuckDB, so both stores return the same frames.
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):
            self._pg.adapters.register_loader(name, TextLoader)
        self._engine = duckdb.connect()
        self._engine.execute("SET TimeZone='UTC'")
        self._pg.execute("SET TIME ZONE 'UTC'")
        self._tx: Any = None
        self._in_tx = False
        self._tmp = tempfile.TemporaryDirectory(prefix="segmint-pg-")

    capabilities = Capabilities(
        engine_is_store=False, arrow_fetch=False, secondary_indexes=True, shared=True
    )

    def _engine_connection(self) -> duckdb.DuckDBPyConnection:
        return self._engine

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return pa.Table.from_pandas(self.query(sql, params), preserve_index=False)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        for stmt in transpile(sql, self.dialect):
            self._pg.execute(stmt, params)  # type: ignore[arg-type]

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        (stmt,) = transpile(sql, self.dialect)
        with self._pg.cursor() as cur:
            cur.execute(stmt, params)  # type: ignore[arg-type]
            cols = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._in_tx = True
        try:
            with self._pg.transaction():
                yield
        finally:
            self._in_tx = False

    # An advisory lock is keyed by its name and by the store (database + schema): several
    # stores, and the tests, share one database. Names in use: 'schema' (creating and
    # migrating tables), 'ingest' (one load at a time), 'campaign-send' (claims under the
    # frequency cap).
    _STORE_KEY = "hashtext(current_database() || '.' || coalesce(current_schema(), ''))"

    def _lock_key(self, name: str) -> str:
        return f"hashtext('{name}'), {self._STORE_KEY}"

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self.transaction():
            self._pg.execute(f"SELECT pg_advisory_xact_lock({self._lock_key(name)})")
            yield

    def _table_ddl(self, table: Table) -> str:
        ddl = table_ddl(table)
        keys = ", ".join(table.key)
        # PostgreSQL gets real primary keys; JSON becomes JSONB so rows can be compared.
        return ddl[: ddl.rindex(")")] + f",\n    PRIMARY KEY ({keys})\n)"

    def _lock_schema(self) -> None:
        # held until the schema transaction ends: a second first open waits, then finds
        # every table (concurrent CREATE TABLE IF NOT EXISTS would fail on pg_type)
        self._pg.execute(f"SELECT pg_advisory_xact_lock({self._lock_key('schema')})")

    def _after_schema(self) -> None:
        # JSON -> JSONB (comparable); sqlglot keeps JSON, so convert here once.
        rows = self.query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'json'"
        )
        for t, c in rows.itertuples(index=False):
            self._pg.execute(f'ALTER TABLE {t} ALTER COLUMN "{c}" TYPE JSONB USING "{c}"::JSONB')

    def alter_column_type(self, table: str, column: str, type_: str) -> None:
        # through execute: the type is transpiled as in every DDL (VARCHAR -> TEXT)
        self.execute(
            f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {type_} '
            f'USING CAST("{column}" AS {type_})'
        )

    def set_primary_key(self, table: str, key: Sequence[str] | None) -> None:
        name = self._pg.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            [table],
        ).fetchone()
        if name is not None:
            self._pg.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name[0]}"')
        if key:
            self._pg.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(key)})")

    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        # a session lock: held across the load's transactions, released by the server
        # if this process dies. Inside a caller's transaction, a transaction lock instead:
        # released with it, also when it fails (an unlock in an aborted transaction fails,
        # and a session lock would then outlive the load)
        lock = self._lock_key("ingest")
        in_tx = self._in_tx
        take = "pg_try_advisory_xact_lock" if in_tx else "pg_try_advisory_lock"
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while not self._pg.execute(f"SELECT {take}({lock})").fetchone()[0]:  # type: ignore[index]
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"another load is running on this store ({self.location}); waited "
                    f"{self.lock_timeout:g} s for it to finish. Nothing was loaded: run this "
                    "load again once the other one has finished"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        try:
            yield
        finally:
            try:
                if not in_tx:
                    self._pg.execute(f"SELECT pg_advisory_unlock({lock})")
            except Exception:  # a broken connection: the server released the lock
                log.debug("could not release the ingest lock", exc_info=True)

    # -- moving rows between the engine and PostgreSQL ----------------------------------
    def _copy_in(self, target: str, relation: str, columns: list[str]) -> int:
        path = Path(self._tmp.name) / "copy.csv"
        cols = ", ".join(f'"{c}"' for c in columns)
        self._engine.execute(
            f"COPY (SELECT {cols} FROM {relation}) TO '{path}' (FORMAT csv, HEADER true)"
        )
        with self._pg.cursor() as cur:
            with (
                cur.copy(  # type: ignore[arg-type]
                    f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)"
                ) as copy,
                path.open("rb") as f,
            ):
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    copy.write(chunk)
            n = cur.rowcount
        path.unlink()
        return n

    def reference_keys(self, table: str, column: str) -> str:
        path = Path(self._tmp.name) / f"keys_{table}_{column}.csv"
        copy_sql = f"COPY (SELECT DISTINCT {column} FROM {table}) TO STDOUT WITH (FORMAT csv)"
        with self._pg.cursor() as cur, path.open("wb") as f, cur.copy(copy_sql) as copy:  # type: ignore[arg-type]
            for chunk in copy:
                f.write(chunk)
        name = f"_refkeys_{table}_{column}"
        self._engine.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv('{path}', "
            "columns={'k': 'VARCHAR'}, header=false, auto_detect=false)"
        )
        path.unlink()
        return name

    def to_engine(self, sql: str, columns: dict[str, str], name: str) -> str:
        path = Path(self._tmp.name) / f"{name}.csv"
        (stmt,) = transpile(sql, self.dialect)
        copy_sql = f"COPY ({stmt}) TO STDOUT WITH (FORMAT csv, HEADER true)"
        with self._pg.cursor() as cur, path.open("wb") as f, cur.copy(copy_sql) as copy:  # type: ignore[arg-type]
            for chunk in copy:
                f.write(chunk)
        spec = ", ".join(f"'{c}': '{t}'" for c, t in columns.items())
        # an empty string is quoted by COPY, a NULL is not: keep them apart
        self._engine.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv('{path}', "
            f"columns={{{spec}}}, header=true, auto_detect=false, allow_quoted_nulls=false)"
        )
        path.unlink()
        return name

    def columns_relation(self, table: str, columns: list[str]) -> str:
        path = Path(self._tmp.name) / f"cols_{table}.csv"
        cols = ", ".join(f'"{c}"' for c in columns)
        copy_sql = f"COPY (SELECT {cols} FROM {table}) TO STDOUT WITH (FORMAT csv, HEADER true)"
        with self._pg.cursor() as cur, path.open("wb") as f, cur.copy(copy_sql) as copy:  # type: ignore[arg-type]
            for chunk in copy:
                f.write(chunk)
        name = f"_cols_{table}"
        spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
        self._engine.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv('{path}', "
            f"columns={{{spec}}}, header=true, auto_detect=false)"
        )
        path.unlink()
        return name

    def write_accepted(
        self,
        table: Table,
        relation: str,
        *,
        columns: Sequence[str] | None = None,
        now: datetime | None = None,
        kept: str | None = None,
    ) -> tuple[int, int, int, int]:
        names = table.column_names
        update, _ = split_columns(table, columns)
        self._pg.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _stage_{table.name} "
            f"(LIKE {table.name} INCLUDING DEFAULTS)"
        )
        self._pg.execute(f"TRUNCATE _stage_{table.name}")
        n = self._copy_in(f"_stage_{table.name}", relation, names)
        n_kept = self._keep_stored(table, kept, update) if kept is not None else 0
        key_join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        same = same_sql(update)
        unchanged, updated = self._pg.execute(
            f"SELECT count(*) FILTER (WHERE {same}), count(*) FILTER (WHERE NOT {same}) "
            f"FROM _stage_{table.name} s JOIN {table.name} t ON {key_join}"
        ).fetchone()  # type: ignore[misc]
        # an update sets only the mapped columns, and only where one differs; the recorded
        # column is set on new rows only
        if update:
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in update)
            conflict = f"DO UPDATE SET {sets} WHERE NOT {same_sql(update, 'EXCLUDED', 't')}"
        else:
            conflict = "DO NOTHING"
        rec = [table.recorded] if table.recorded else []
        self._pg.execute(
            f"INSERT INTO {table.name} AS t ({', '.join(names + rec)}) "
            f"SELECT {', '.join(names + ([ts_sql(now)] if rec else []))} "
            f"FROM _stage_{table.name} ON CONFLICT ({', '.join(table.key)}) {conflict}"
        )
        return n - unchanged - updated, int(updated), int(unchanged), n_kept

    def _keep_stored(self, table: Table, kept: str, update: list[str]) -> int:
        """Copy the (key, field) pairs of ``kept`` in and put the stored value back into
        the stage for those whose key is stored (one UPDATE); returns how many pairs."""
        stage, pairs = f"_stage_{table.name}", f"_kept_{table.name}"
        row = self._pg.execute(f"SELECT EXISTS (SELECT 1 FROM {table.name})").fetchone()
        if row is None or not row[0]:  # nothing stored: nothing to keep (a first load)
            return 0
        keys = ", ".join(table.key)
        self._pg.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {pairs} AS "
            f"SELECT {keys}, ''::text AS _field FROM {table.name} WITH NO DATA"
        )
        self._pg.execute(f"TRUNCATE {pairs}")
        if not self._copy_in(pairs, kept, [*table.key, "_field"]):
            return 0
        k_join = " AND ".join(f"k.{c} = t.{c}" for c in table.key)
        row = self._pg.execute(
            f"SELECT count(*) FROM {pairs} k JOIN {table.name} t ON {k_join}"
        ).fetchone()
        n_kept = 0 if row is None else int(row[0])
        fields = {f for (f,) in self._pg.execute(f"SELECT DISTINCT _field FROM {pairs}")}
        # a kept field's derived columns (its blind index) are kept with it
        kept_cols = [c for c in update if DERIVED_FROM.get(c, c) in fields]
        if n_kept and kept_cols:
            sets = ", ".join(
                f"{c} = CASE WHEN %s = ANY(x._fields) THEN x._stored_{c} ELSE s.{c} END"
                for c in kept_cols
            )
            stored = ", ".join(f"t.{c} AS _stored_{c}" for c in kept_cols)
            s_join = " AND ".join(f"s.{c} = x.{c}" for c in table.key)
            self._pg.execute(
                f"""UPDATE {stage} AS s SET {sets}
                FROM (SELECT k.*, {stored}
                      FROM (SELECT {keys}, array_agg(_field) AS _fields FROM {pairs}
                            GROUP BY {keys}) k
                      JOIN {table.name} t ON {k_join}) x
                WHERE {s_join}""",
                [DERIVED_FROM.get(c, c) for c in kept_cols],
            )
        return n_kept

    def write_rows(self, table: str, relation: str, columns: list[str]) -> None:
        self._copy_in(table, relation, columns)

    def jdbc_source(self) -> dict[str, str] | None:
        info = self._pg.info
        schema = self._pg.execute("SELECT current_schema()").fetchall()[0][0]
        out = {
            "url": f"jdbc:postgresql://{info.host}:{info.port}/{info.dbname}",
            "user": info.user,
            "driver": "org.postgresql.Driver",
        }
        if info.password:
            out["password"] = info.password
        if schema:
            out["currentSchema"] = str(schema)
        return out

    def export_parquet(self, sql: str, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.arrow(sql)
        import pyarrow.parquet as pq

        pq.write_table(frame, path)
        return int(frame.num_rows)

    def close(self) -> None:
        self._pg.close()
        self._engine.close()
        self._tmp.cleanup()


def _redact(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        head, tail = url.split("@", 1)
        scheme, cred = head.split("//", 1)
        return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"
    return url
