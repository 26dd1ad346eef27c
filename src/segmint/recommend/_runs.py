"""Versioned recommendation runs: batch top-n lists and evaluations, stored in the store.

Tables (part of the store's schema, see ``segmint.store._schema``)::

    recommendation_runs(run_id, kind, created_at, as_of, model, n, n_users, params JSON,
                        metrics JSON)
    recommendations(run_id, user_id, rank, item_id, score, model, reason)

``kind`` is ``batch`` (a run that wrote lists) or ``evaluation`` (a model comparison; its
chosen model and the comparison table are in ``model`` and ``metrics``). Rows are written
set-based: batches of Arrow tables are staged in the store's engine (zero-copy) and appended
with ``INSERT ... SELECT`` (DuckDB) or COPY (PostgreSQL), all in one transaction.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from segmint.errors import NotFoundError
from segmint.store import Store, latest_run_sql
from segmint.store import lit as _lit

__all__ = [
    "RecommendationRun",
    "list_recommendation_runs",
    "load_run_record",
    "load_recommendations",
    "new_run_id",
    "save_run",
]

log = logging.getLogger(__name__)

ROWS_COLUMNS = ["run_id", "user_id", "rank", "item_id", "score", "model", "reason"]


@dataclass(frozen=True)
class RecommendationRun:
    """One stored run.

    Attributes
    ----------
    run_id : str
        Sortable id, e.g. ``r-20261126T120000-als-ab12cd``.
    kind : str
        ``batch`` (lists written) or ``evaluation`` (model comparison).
    created_at : datetime
        When it was made (UTC).
    as_of : datetime or None
        Only data before this instant was used.
    model : str
        The model that made the lists, or the model an evaluation chose.
    n : int or None
        List length.
    n_users : int
        Users with a list (batch) or users evaluated (evaluation).
    params : dict
        Model, interaction and filter parameters.
    metrics : dict
        Timings and counts (batch) or the comparison table (evaluation).
    """

    run_id: str
    kind: str
    created_at: datetime
    as_of: datetime | None
    model: str
    n: int | None
    n_users: int
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def new_run_id(model: str, now: datetime | None = None) -> str:
    """A run id that sorts by creation time: ``r-YYYYmmddTHHMMSS-<model>-xxxxxx``."""
    now = now or datetime.now(UTC)
    return f"r-{now.strftime('%Y%m%dT%H%M%S')}-{model}-{secrets.token_hex(3)}"


def _ts(value: datetime | None) -> str:
    if value is None:
        return "NULL"
    return f"CAST('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}+00' AS TIMESTAMPTZ)"


def _json(value: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, datetime):
            return o.isoformat()
        return str(o)

    return json.dumps(value, default=default, sort_keys=True)


def save_run(
    store: Store,
    run: RecommendationRun,
    rows: Iterable[pa.Table] = (),
) -> int:
    """Store a run record and its rows in one transaction; returns the rows written.

    Parameters
    ----------
    store : segmint.store.Store
        Where to write.
    run : RecommendationRun
        The run record.
    rows : iterable of pyarrow.Table
        Batches with ``user_id, item_id, score, rank, model, reason`` (no run_id).

    Returns
    -------
    int
        Number of recommendation rows written.
    """
    n_rows = 0
    started = time.perf_counter()
    with store.transaction(), store.staging() as stage:
        for batch in rows:
            if batch.num_rows == 0:
                continue
            name = stage.frame("rec_batch", batch)
            try:
                relation = (
                    f'(SELECT {_lit(run.run_id)} AS run_id, user_id, CAST("rank" AS INTEGER) '
                    f'AS "rank", item_id, score, model, reason FROM {name})'
                )
                stage.write("recommendations", relation, ROWS_COLUMNS)
            finally:
                stage.drop(name)
            n_rows += batch.num_rows
        # the record last: a run's metrics may be completed while its rows are written
        store.execute(
            "INSERT INTO recommendation_runs (run_id, kind, created_at, as_of, model, n, "
            f"n_users, params, metrics) VALUES ({_lit(run.run_id)}, {_lit(run.kind)}, "
            f"{_ts(run.created_at)}, {_ts(run.as_of)}, {_lit(run.model)}, "
            f"{'NULL' if run.n is None else int(run.n)}, {int(run.n_users)}, "
            f"{_lit(_json(run.params))}, {_lit(_json(run.metrics))})"
        )
    log.info(
        "recommendation run %s (%s, %s): %d users, %d rows in %.2fs",
        run.run_id,
        run.kind,
        run.model,
        run.n_users,
        n_rows,
        time.perf_counter() - started,
    )
    return n_rows


def list_recommendation_runs(store: Store, kind: str | None = None) -> pd.DataFrame:
    """Runs, newest first: run_id, kind, created_at, as_of, model, n, n_users.

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    kind : {'batch', 'evaluation'}, optional
        Only runs of this kind.

    Returns
    -------
    pandas.DataFrame
    """
    where = "" if kind is None else f"WHERE kind = {_lit(kind)} "
    return store.query(
        "SELECT run_id, kind, created_at, as_of, model, n, n_users FROM recommendation_runs "
        f"{where}ORDER BY created_at DESC, run_id DESC"
    )


def load_run_record(
    store: Store, run_id: str | None = None, kind: str = "batch"
) -> RecommendationRun:
    """A stored run record: ``run_id``, or the latest run of ``kind``.

    Raises
    ------
    segmint.errors.NotFoundError
        When there is no such run.
    """
    columns = (
        "run_id, kind, created_at, as_of, model, n, n_users, "
        "CAST(params AS VARCHAR) AS params, CAST(metrics AS VARCHAR) AS metrics"
    )
    frame = store.query(
        latest_run_sql("recommendation", columns=columns, run_id=run_id)
        if run_id
        else latest_run_sql("recommendation", columns=columns, kind=kind)
    )
    if frame.empty:
        if run_id:
            raise NotFoundError(
                f"recommendation run {run_id!r} not found in {store.location}; "
                "see segmint.recommend.list_recommendation_runs"
            )
        hint = (
            "run `segmint recommend` (segmint.recommend.recommend_all) first"
            if kind == "batch"
            else "run `segmint recommend evaluate` (segmint.recommend.evaluate_models) first"
        )
        raise NotFoundError(f"store {store.location} has no {kind} recommendation run; {hint}")
    row = frame.iloc[0]

    def ts(v: Any) -> datetime | None:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        t = pd.Timestamp(v)
        return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()

    created = ts(row["created_at"])
    assert created is not None
    return RecommendationRun(
        run_id=str(row["run_id"]),
        kind=str(row["kind"]),
        created_at=created,
        as_of=ts(row["as_of"]),
        model=str(row["model"]),
        n=None if pd.isna(row["n"]) else int(row["n"]),
        n_users=int(row["n_users"]),
        params=json.loads(row["params"]) if row["params"] else {},
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
    )


def load_recommendations(
    store: Store, run_id: str | None = None, user_id: str | None = None
) -> pd.DataFrame:
    """Stored lists of a batch run (the latest by default), optionally of one user.

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    run_id : str, optional
        The run; the latest batch run by default.
    user_id : str, optional
        Only this user's list.

    Returns
    -------
    pandas.DataFrame
        ``run_id, user_id, rank, item_id, score, model, reason`` sorted by user and rank.

    Raises
    ------
    segmint.errors.NotFoundError
        When the store has no (such) batch run.
    """
    run = load_run_record(store, run_id, kind="batch")
    where = f"run_id = {_lit(run.run_id)}"
    if user_id is not None:
        where += f" AND user_id = {_lit(str(user_id))}"
    frame = store.query(
        'SELECT run_id, user_id, "rank", item_id, score, model, reason FROM recommendations '
        f'WHERE {where} ORDER BY user_id, "rank"'
    )
    return pd.DataFrame(
        {
            "run_id": frame["run_id"].astype(str),
            "user_id": frame["user_id"].astype(str),
            "rank": pd.to_numeric(frame["rank"]).astype("int64"),
            "item_id": frame["item_id"].astype(str),
            "score": pd.to_numeric(frame["score"]).astype("float64"),
            "model": frame["model"].astype(str),
            "reason": frame["reason"].astype(str),
        }
    )
