"""PostgreSQL store: overrides only what differs from the DuckDB reference store.

Validation still runs in an in-memory DuckDB engine (the same SQL as for the DuckDB
store); accepted rows, quarantine and load records are moved with COPY and upserted with
``INSERT ... ON CONFLICT``. Every write of a load happens in one PostgreSQL transaction.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from segmint.errors import StoreError
from segmint.store._base import Store, transpile
from segmint.store._schema import Table, table_ddl

log = logging.getLogger(__name__)


class PostgresStore(Store):
    """The canonical tables in a PostgreSQL database (``store: postgresql://...``)."""

    dialect = "postgres"

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

    @property
    def engine(self) -> duckdb.DuckDBPyConnection:
        return self._engine

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

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self.transaction():
            # keyed by the schema too: several stores (and the tests) share one database
            self._pg.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(%s))",
                [name],
            )
            yield

    def _table_ddl(self, table: Table) -> str:
        ddl = table_ddl(table)
        keys = ", ".join(table.key)
        # PostgreSQL gets real primary keys; JSON becomes JSONB so rows can be compared.
        return ddl[: ddl.rindex(")")] + f",\n    PRIMARY KEY ({keys})\n)"

    def ensure_schema(self) -> None:
        super().ensure_schema()
        # JSON -> JSONB (comparable); sqlglot keeps JSON, so convert here once.
        rows = self.query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'json'"
        )
        for t, c in rows.itertuples(index=False):
            self._pg.execute(f'ALTER TABLE {t} ALTER COLUMN "{c}" TYPE JSONB USING "{c}"::JSONB')

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

    def write_accepted(self, table: Table, relation: str) -> tuple[int, int, int]:
        cols = table.column_names
        collist = ", ".join(cols)
        self._pg.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _stage_{table.name} "
            f"(LIKE {table.name} INCLUDING DEFAULTS)"
        )
        self._pg.execute(f"TRUNCATE _stage_{table.name}")
        n = self._copy_in(f"_stage_{table.name}", relation, cols)
        key_join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        row_s = ", ".join(f"s.{c}" for c in cols)
        row_t = ", ".join(f"t.{c}" for c in cols)
        unchanged, updated = self._pg.execute(
            f"SELECT count(*) FILTER (WHERE ROW({row_s}) IS NOT DISTINCT FROM ROW({row_t})), "
            f"count(*) FILTER (WHERE ROW({row_s}) IS DISTINCT FROM ROW({row_t})) "
            f"FROM _stage_{table.name} s JOIN {table.name} t ON {key_join}"
        ).fetchone()  # type: ignore[misc]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in table.key)
        self._pg.execute(
            f"INSERT INTO {table.name} ({collist}) SELECT {collist} FROM _stage_{table.name} "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {sets}"
        )
        return n - unchanged - updated, int(updated), int(unchanged)

    def write_rows(self, table: str, relation: str, columns: list[str]) -> None:
        self._copy_in(table, relation, columns)

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
