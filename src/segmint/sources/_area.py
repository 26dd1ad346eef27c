"""One load's staging area: the store's :class:`~segmint.store.Staging` and the names of
the relations a load stages there.

A load stages the source as read (``raw``), typed (``typed``), the rejects, the quarantine
rows and the accepted rows (``accepted``) in the store's engine. Each relation has a role
(an attribute of :class:`Area`: ``area.raw``, ``area.typed_rows``, ...) and a name the
staging area makes on first use (``_stage_raw_12``), so that two loads never share a name
and no name is written by hand. :meth:`Area.close` drops every relation the load made,
table or view, also after an error.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import duckdb

from segmint._rows import first_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from segmint.store import Staging

__all__ = ["Area"]

# the relations of one load, by role (see the modules of segmint.sources for each)
_ROLES = frozenset(
    {
        # readers (segmint.sources._readers)
        "raw",  # the source's own columns + _row
        "raw0",  # the source as read, before numbering
        "unparsed",  # (_row, raw, reason) of the rows no reader could parse
        "text_rejects",  # DuckDB's rejects of a text file
        "text_scans",
        "first_raw0",  # the first reading of a text file, kept while a copy is read
        "first_rejects",
        "unparsed_lines",  # DuckDB's rejects, one row per record
        "stray_lines",  # records holding a stray line ending
        "blank_lines",  # blank records of a rewritten file
        "lines",  # a JSON Lines file's lines, numbered
        "held",  # a retry: the rows held in the quarantine
        # validation (segmint.sources._ingest)
        "typed0",
        "typed",
        "typed_rows",
        "checked",
        "valid",
        "rejects",
        "dupkeys",
        "dups",
        "bizdups",
        "badref",
        "fi_rows",
        "spelled",
        "rejected",
        "field_issues",
        "field_issue_keys",
        "accepted",
        "quarantine",
        "quarantine_fields",
        "load_row",
        # sealing (segmint.sources._seal)
        "sealed_in",  # the accepted rows, materialised once
        "sealed",  # the accepted rows as stored (personal values sealed)
        "erased",  # the keys of people who asked to be forgotten
    }
)


class Area:
    """A load's relations in a staging area: ``area.<role>`` is the role's name (made on
    first use); SQL runs on the engine through the staging area."""

    def __init__(self, stage: Staging) -> None:
        self.stage = stage
        self._names: dict[str, str] = {}

    def __getattr__(self, role: str) -> str:
        if role not in _ROLES:
            raise AttributeError(role)
        names = self.__dict__["_names"]
        if role not in names:
            names[role] = self.__dict__["stage"].name(role)
        return str(names[role])

    # -- SQL on the engine ------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement on the engine."""
        self.stage.execute(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first value of a SELECT (None when it has no row)."""
        return self.stage.scalar(sql, params)

    def count(self, relation: str) -> int:
        """Rows of a relation (``count(*)``)."""
        return int(self.scalar(f"SELECT count(*) FROM {relation}"))

    def row(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a SELECT, as DuckDB's own Python values (one scan; the row
        is fetched as one struct), or None when it has no row."""
        return first_row(self.stage, sql, params)

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a SELECT (for small results: names, counts by rule)."""
        table: pa.Table = self.stage.arrow(sql, params)
        return list(zip(*(column.to_pylist() for column in table.columns), strict=True))

    def frame(self, hint: str, data: Any) -> str:
        """A registered Arrow table or DataFrame, by a new name (see ``Staging.frame``)."""
        return self.stage.frame(hint, data)

    # -- dropping ---------------------------------------------------------------------
    def drop(self, name: str) -> None:
        """Drop a staged table or view now, if it exists."""
        kind = self.stage.kinds([name]).get(name)
        if kind:
            self.execute(f"DROP {kind} {name}")

    def close(self) -> None:
        """Drop every relation of this load (views too, which the staging area's own
        clean-up, dropping tables, leaves)."""
        names = list(self._names.values())
        if not names:
            return
        with contextlib.suppress(duckdb.Error):  # in an aborted transaction
            kinds = self.stage.kinds(names)
            for name in reversed(names):
                if name in kinds:
                    self.execute(f"DROP {kinds[name]} {name}")
