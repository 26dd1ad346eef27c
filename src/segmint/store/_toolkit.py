"""What a layer needs from a store beyond plain SQL: capability flags and a staging area.

Every store has two halves. The *store* holds the canonical tables (a DuckDB file, or a
PostgreSQL database); the *engine* is a DuckDB connection where rows are staged, checked
and reshaped before they are written (for the DuckDB store it is the same connection, so
nothing is copied). Layers never touch the engine directly: they open a
:class:`Staging` area (``with store.staging() as stage:``), which names its own temporary
tables and views, drops them when the block ends (also on an error), and moves rows into
store tables with :meth:`Staging.write`. Where a step is faster when the engine *is* the
store, the caller asks :attr:`Store.capabilities` (a :class:`Capabilities`), never the
dialect.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import pyarrow as pa

from segmint.store._sql import ident

if TYPE_CHECKING:
    from collections.abc import Sequence

    from segmint.store._base import Store

__all__ = ["Capabilities", "Staging"]


@dataclass(frozen=True)
class Capabilities:
    """What a store can do, for callers that pick a faster path where it exists.

    Attributes
    ----------
    engine_is_store : bool
        The staging engine and the store are one DuckDB connection: a staged table can be
        joined with store tables in one statement and rows need no copy (DuckDB). When
        False, rows cross from the engine to the store through :meth:`Staging.write`
        (PostgreSQL's COPY).
    arrow_fetch : bool
        :meth:`Store.arrow` returns query results as Arrow without a pandas round trip.
    secondary_indexes : bool
        Run tables carry lookup indexes and primary keys (PostgreSQL); DuckDB relies on
        zone maps, as an ART index would slow bulk writes.
    shared : bool
        Several processes may use the store at once (PostgreSQL); writers serialise with
        :meth:`Store.lock`. A DuckDB file is open in one process at a time.
    """

    engine_is_store: bool
    arrow_fetch: bool
    secondary_indexes: bool
    shared: bool


_counter = itertools.count(1)
_HINT = re.compile(r"[^a-z0-9_]+")


def temp_relations(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, str]:
    """Which of ``names`` are temporary tables or views on ``con``: name -> ``TABLE`` or
    ``VIEW``. (DuckDB's own catalog functions: a look-up in ``information_schema``, which
    spans every catalog, costs twice as much, and a load drops tens of names.)"""
    if not names:
        return {}
    rows = con.execute(
        "SELECT table_name, 'TABLE' FROM duckdb_tables() WHERE temporary "
        "AND table_name IN (SELECT unnest(?::VARCHAR[])) "
        "UNION ALL SELECT view_name, 'VIEW' FROM duckdb_views() WHERE temporary "
        "AND view_name IN (SELECT unnest(?::VARCHAR[]))",
        [list(names), list(names)],
    ).fetchall()
    return {str(n): str(k) for n, k in rows}


class Staging:
    """Temporary tables and registered frames in a store's engine, dropped on exit.

    Create with :meth:`Store.staging`. Names are made here (``_stage_<hint>_<n>``), so two
    steps, or two threads with their own stores, never collide; every name made is dropped
    when the ``with`` block ends. SQL run here is DuckDB SQL on the engine: it sees staged
    names, and (only when :attr:`Capabilities.engine_is_store`) the store's tables too;
    otherwise bring store rows in with :meth:`from_store`.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._con: duckdb.DuckDBPyConnection = store._engine_connection()
        self._tables: list[str] = []
        self._views: list[str] = []

    # -- naming -----------------------------------------------------------------------
    def name(self, hint: str = "t") -> str:
        """A fresh temporary name (not yet created); it is dropped on exit if created."""
        clean = _HINT.sub("_", hint.lower()).strip("_") or "t"
        name = f"_stage_{clean}_{next(_counter)}"
        self._tables.append(name)
        return name

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The engine's connection, for registering SQL functions on it (the vault's)."""
        return self._con

    # -- putting rows in --------------------------------------------------------------
    def table(self, hint: str, sql: str, params: Sequence[Any] | None = None) -> str:
        """``CREATE TEMP TABLE <new name> AS <sql>`` in the engine; returns the name."""
        name = self.name(hint)
        self._con.execute(f"CREATE TEMP TABLE {name} AS {sql}", params)
        return name

    def view(self, hint: str, sql: str) -> str:
        """``CREATE TEMP VIEW <new name> AS <sql>`` in the engine (nothing is copied;
        the query runs where the view is read); returns the name."""
        name = self.name(hint)
        self._con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
        return name

    def frame(self, hint: str, data: pd.DataFrame | pa.Table, *, copy: bool = False) -> str:
        """Make a DataFrame or Arrow table readable by name in the engine.

        By default a zero-copy view (registered); ``copy=True`` materialises it as a
        temporary table (when the frame will be freed or read many times).
        """
        name = self.name(hint)
        if copy:
            view = name + "_src"
            self._con.register(view, data)
            try:
                self._con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {view}")
            finally:
                self._con.unregister(view)
        else:
            self._tables.remove(name)
            self._views.append(name)
            self._con.register(name, data)
        return name

    def from_store(self, hint: str, sql: str, columns: dict[str, str]) -> str:
        """The result of a store query (DuckDB SQL; ``columns``: name -> DuckDB type) as
        a temporary table in the engine; returns its name."""
        name = self.name(hint)
        return self._store.to_engine(sql, columns, name)

    # -- reading and changing staged rows ---------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run DuckDB SQL on the engine. Any rows it returns are read and dropped, so the
        connection is free for the next statement (DuckDB refuses new work while a result
        is pending)."""
        self._con.execute(sql, params).fetchall()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A SELECT on the engine as a DataFrame."""
        return self._con.execute(sql, params).df()

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """A SELECT on the engine as an Arrow table (no pandas copy)."""
        return self._con.sql(sql, params=params).to_arrow_table()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first column of the first row of a SELECT on the engine (None if empty)."""
        rows = self._con.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def count(self, name: str) -> int:
        """Rows of a staged table or view."""
        return int(self.scalar(f"SELECT count(*) FROM {name}"))

    # -- moving rows out --------------------------------------------------------------
    def write(self, table: str, relation: str, columns: Sequence[str]) -> None:
        """Append the rows of staged ``relation`` (a name or a parenthesised SELECT on
        the engine) to store table ``table``: one INSERT on DuckDB, COPY on PostgreSQL.
        Joins the caller's transaction."""
        self._store.write_rows(table, relation, list(columns))

    def drop(self, name: str) -> None:
        """Drop one staged name now (it is no longer dropped on exit)."""
        if name in self._views:
            self._views.remove(name)
            self._con.unregister(name)
        else:
            if name in self._tables:
                self._tables.remove(name)
            self._drop_relation(name)

    def kinds(self, names: Sequence[str]) -> dict[str, str]:
        """Which of ``names`` exist in the engine as temporary relations: name -> ``TABLE``
        or ``VIEW`` (one look-up for all)."""
        return temp_relations(self._con, names)

    def _drop_relation(self, name: str) -> None:
        """Drop a staged name, whether SQL made it a table or a view."""
        kind = temp_relations(self._con, [name]).get(name)
        if kind:
            self._con.execute(f"DROP {kind} IF EXISTS {ident(name)}")

    def close(self) -> None:
        """Drop every table and view this staging area made (also those that SQL run
        through it created under a name from :meth:`name`)."""
        for name in reversed(self._views):
            with contextlib.suppress(duckdb.Error):  # the connection is gone
                self._con.unregister(name)
        # in an aborted transaction its temp tables go with the rollback
        with contextlib.suppress(duckdb.Error):
            # one look-up for all: most were dropped already, by their load
            kinds = temp_relations(self._con, self._tables)
            for name in reversed(self._tables):
                if name in kinds:
                    self._con.execute(f"DROP {kinds[name]} IF EXISTS {ident(name)}")
        self._views.clear()
        self._tables.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
