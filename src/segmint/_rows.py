"""Rows of a SELECT on a staging area, as DuckDB's own Python values.

:class:`~segmint.store.Staging` answers a value (``scalar``), a DataFrame or an Arrow
table. A statement computing several aggregates in one scan (counts and a median, two
quantiles) needs its one row as it is: :func:`first_row` fetches it as one struct, so the
values keep the types DuckDB gives them (a Decimal stays a Decimal, a time keeps its zone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from segmint.store import Staging

__all__ = ["first_row"]


def first_row(
    stage: Staging, sql: str, params: Sequence[Any] | None = None
) -> tuple[Any, ...] | None:
    """The first row of ``sql`` (a SELECT on the engine) as a tuple, or None without a row."""
    found = stage.scalar(f"SELECT _row_ FROM ({sql}) _row_", params)
    return None if found is None else tuple(found.values())
