"""Named relations: the concepts every layer asks the store for, defined once.

Each function returns DuckDB-dialect SQL (the store transpiles it for PostgreSQL) that
can stand wherever a table can: ``FROM ({completed_orders(before=as_of)}) o``. Values are
written with the toolkit's literal builders (:func:`~segmint.store.literal`), never
quoted by hand.

* :func:`completed_orders` / :data:`COMPLETED`: a purchase is an order whose status is
  ``completed`` (the feature catalog, profiles, personas, recommendations, experiments and
  campaigns all count the same orders); *as of* a date means strictly before it.
* :func:`~segmint.store.latest_consent_sql`: the consent in force per (user, channel,
  purpose).
* :func:`latest_run_sql`: the newest run of a kind (features, a segmentation, a
  recommendation batch, a campaign), optionally as of a time.
* :func:`segment_at_sql`: each user's segment in a segmentation's latest run as of a time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from segmint.store._sql import ident, literal

__all__ = [
    "COMPLETED",
    "RUN_TABLES",
    "completed",
    "completed_orders",
    "latest_run_sql",
    "latest_runs_sql",
    "segment_at_sql",
]

COMPLETED = "status = 'completed'"
"""The condition that makes an order a purchase (on ``orders``; prefix an alias with
:func:`completed`)."""

RunKind = Literal["feature", "segment", "recommendation", "campaign", "prediction"]

RUN_TABLES: dict[str, str] = {
    "feature": "feature_runs",
    "segment": "segment_runs",
    "recommendation": "recommendation_runs",
    "campaign": "campaign_runs",
    "prediction": "predict_runs",
}
"""The table holding the runs of each kind (every one has ``run_id`` and ``created_at``)."""


def completed(alias: str | None = None) -> str:
    """:data:`COMPLETED` on orders aliased ``alias`` (``o.status = 'completed'``)."""
    return f"{alias}.{COMPLETED}" if alias else COMPLETED


def _window(column: str, since: date | datetime | None, before: date | datetime | None) -> str:
    out = ""
    if since is not None:
        out += f" AND {column} >= {literal(since)}"
    if before is not None:
        out += f" AND {column} < {literal(before)}"
    return out


def completed_orders(
    *,
    before: date | datetime | None = None,
    since: date | datetime | None = None,
    columns: str = "*",
) -> str:
    """A SELECT of the completed orders, in ``[since, before)`` when given.

    Parameters
    ----------
    before : date or datetime, optional
        The as-of instant: orders strictly before it (a date is its midnight UTC).
    since : date or datetime, optional
        Orders at or after it.
    columns : str
        The select list (default every column of ``orders``).
    """
    return f"SELECT {columns} FROM orders WHERE {COMPLETED}{_window('ts', since, before)}"


NEWEST: dict[str, str] = {"prediction": "as_of DESC, created_at DESC, run_id DESC"}
"""The order that makes a run the newest, for the kinds where it is not the creation
time: predictions describe customers *as of* a date, and the latest date is the current
state (a re-run at the same date, e.g. with other settings, is newer)."""


def latest_run_sql(
    kind: RunKind,
    /,
    *,
    at: date | datetime | None = None,
    columns: str = "run_id",
    **where: Any,
) -> str:
    """A SELECT of the newest run of ``kind`` (one row at most).

    Newest is by ``created_at``, then ``run_id`` (both descending), as everywhere in
    segmint, except for prediction runs (:data:`NEWEST`): there the newest as-of date
    comes first, so a run made later at an earlier date (a previous churn state filled in
    for ``churn_risk_change``, a segmentation run with ``--as-of`` in the past that
    computed its predictions there) does not replace the current one. ``at`` keeps runs
    created at or before that instant (a user's segment *at a time*); keyword arguments
    are equality filters on the run table's columns (``segmentation="rfm"``,
    ``method="lifecycle"``; ``kind="batch"`` filters the ``kind`` column of
    recommendation runs, as ``kind`` itself is positional-only).
    """
    table = RUN_TABLES[kind]
    conds = [f"{ident(col)} = {literal(value)}" for col, value in where.items()]
    if at is not None:
        conds.append(f"created_at <= {literal(at)}")
    where_sql = f" WHERE {' AND '.join(conds)}" if conds else ""
    order = NEWEST.get(kind, "created_at DESC, run_id DESC")
    return f"SELECT {columns} FROM {table}{where_sql} ORDER BY {order} LIMIT 1"


def latest_runs_sql(
    *, at: date | datetime | None = None, columns: str = "segmentation, run_id"
) -> str:
    """A SELECT of the newest run of every segmentation (one row per segmentation,
    ordered by name), optionally as of ``at``."""
    when = f" WHERE created_at <= {literal(at)}" if at is not None else ""
    return (
        f"SELECT {columns} FROM segment_runs{when} QUALIFY row_number() OVER "
        "(PARTITION BY segmentation ORDER BY created_at DESC, run_id DESC) = 1 ORDER BY segmentation"
    )


def segment_at_sql(segmentation: str, at: date | datetime | None = None) -> str:
    """A SELECT of ``user_id, segment, run_id``: every user's segment in the latest run of
    ``segmentation`` created at or before ``at`` (default: the latest run)."""
    run = latest_run_sql("segment", at=at, segmentation=segmentation)
    return (
        f"SELECT a.user_id, a.segment, a.run_id FROM segment_assignments a WHERE a.run_id = ({run})"
    )
