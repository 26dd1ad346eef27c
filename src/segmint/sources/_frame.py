"""Rows in memory as a source: an Arrow table staged as ``raw`` in place of a file.

Tracking messages (:mod:`segmint.sources._tracking`) become rows in memory, one Arrow
table per canonical table; :class:`Frame` lets :func:`~segmint.sources._ingest._ingest_source`
load them through the very stages a file goes through (typing, checks, field issues,
duplicate keys, unknown references, cleaning, quarantine, the ``loads`` record). Only
the reading differs: :func:`stage_frame` copies the table into the load's ``raw`` and
the lines no one could parse into ``unparsed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from segmint.config import QuerySource
from segmint.sources._readers import Staged, _finish

if TYPE_CHECKING:
    from segmint.sources._area import Area

__all__ = ["Frame", "stage_frame"]


@dataclass(frozen=True)
class Frame:
    """Rows in memory, loaded as a source into ``table``.

    ``data`` holds ``_row`` (BIGINT, the row's number in the quarantine, unique) and one
    column per name of ``columns`` (ours, usually text: the values are coerced and
    checked as a file's text is); other columns are not loaded but kept in a rejected
    row's raw content. ``unparsed`` holds (row number, raw text, reason) of the input no
    row could be made of: each is quarantined as an unparseable row.
    """

    table: str
    data: pa.Table
    columns: tuple[str, ...]
    unparsed: tuple[tuple[int, str, str], ...] = ()
    location: str = "memory"

    def source(self) -> QuerySource:
        """The source's description: the column map (our names, as the frame's)."""
        return QuerySource(
            type="query",
            query=f"-- rows in memory: {self.location}",
            table=self.table,  # type: ignore[arg-type]
            columns={c: c for c in self.columns},
        )


def stage_frame(area: Area, frame: Frame) -> Staged:
    """Stage ``frame`` as the load's ``raw`` and its unparsed input as ``unparsed``."""
    area.execute(f"CREATE TEMP TABLE {area.unparsed} (_row BIGINT, raw VARCHAR, reason VARCHAR)")
    if frame.unparsed:
        bad = pa.table(
            {
                "_row": pa.array([r for r, _, _ in frame.unparsed], pa.int64()),
                "raw": pa.array([t for _, t, _ in frame.unparsed], pa.string()),
                "reason": pa.array([why for _, _, why in frame.unparsed], pa.string()),
            }
        )
        area.execute(f"INSERT INTO {area.unparsed} SELECT * FROM {area.frame('unparsed', bad)}")
    area.execute(f"CREATE TEMP TABLE {area.raw} AS SELECT * FROM {area.frame('rows', frame.data)}")
    return _finish(area, frame.location, "")
