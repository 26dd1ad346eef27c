"""Ids a person types: a run id given in full, or by a prefix that only one id has.

Run ids are long (``rfm-20261127T101500-3f9a``); a prefix that matches one id resolves to
it, one that matches several is an error listing them (at most ten), so a script never
acts on a guess. Used for segmentation runs and campaign plans. It sits below the layers
and imports only the error tree.
"""

from __future__ import annotations

from typing import Any

from segmint.errors import ConfigError

SHOWN = 10
"""Candidates listed in an ambiguous-prefix error."""


def by_prefix(store: Any, table: str, column: str, prefix: str, *, what: str) -> str | None:
    """The one value of ``table.column`` starting with ``prefix``; None when none does.

    Raises
    ------
    segmint.errors.ConfigError
        Several values start with ``prefix`` (exit 2); the message lists them.
    """
    if not prefix:
        return None
    found = store.query(
        f"SELECT DISTINCT {column} AS id FROM {table} WHERE substr({column}, 1, ?) = ? "
        f"ORDER BY 1 LIMIT {SHOWN + 1}",
        [len(prefix), prefix],
    )["id"].tolist()
    if len(found) == 1:
        return str(found[0])
    if not found:
        return None
    more = ", …" if len(found) > SHOWN else ""
    raise ConfigError(
        f"{prefix!r} is the start of several {what} ids: "
        f"{', '.join(map(str, found[:SHOWN]))}{more}; give more of the id"
    )
