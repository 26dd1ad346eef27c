"""Batch recommendations for every user, stored as a run; one user's list from the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from segmint.config import RecommendConfig
from segmint.errors import NotFoundError
from segmint.features import default_as_of
from segmint.recommend._base import Filters, Recommender, n_cpus
from segmint.recommend._interactions import Interactions, build_interactions
from segmint.recommend._registry import default_segmentation, filters_from_config, make_model
from segmint.recommend._runs import (
    RecommendationRun,
    _lit,
    load_run_record,
    new_run_id,
    save_run,
)
from segmint.store import Store, completed, latest_run_sql, no_personalization_sql, ts_lit

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

__all__ = ["recommend_all", "recommend_for_user", "resolve_model"]

log = logging.getLogger(__name__)


def resolve_model(
    store: Store,
    model: str | Recommender,
    config: RecommendConfig,
    engine: SparkEngine | None = None,
) -> Recommender:
    """A model instance from a name, ``'best'`` (the latest evaluation's choice) or itself
    (``engine``: see :func:`make_model`)."""
    if isinstance(model, Recommender):
        return model
    if model == "best":
        try:
            model = load_run_record(store, kind="evaluation").model
        except NotFoundError:
            raise NotFoundError(
                "model 'best' needs an evaluation: run `segmint recommend evaluate` "
                "(segmint.recommend.evaluate_models) first, or name a model"
            ) from None
    return make_model(model, config, engine=engine)


# long on purpose: a 40-line docstring; the ~40-line body is a list of named steps
# (_build_for, _users_to_recommend, _batch_record, save_run) around a batch generator.
def recommend_all(
    store: Store,
    model: str | Recommender = "best",
    *,
    n: int | None = None,
    config: RecommendConfig | None = None,
    filters: Filters | None = None,
    user_ids: Sequence[str] | None = None,
    interactions: Interactions | None = None,
    n_jobs: int | None = None,
    save: bool = True,
    personalization: str = "opt_out",
    engine: SparkEngine | None = None,
) -> RecommendationRun:
    """Fit a model on all interactions and store top-n lists for every user as a run.

    Every user of the ``users`` table gets a list: users without interactions get
    popularity in their segment, then global popularity; users without ``personalization``
    consent get global popularity only (``model`` ``popularity``). Rows are written in batches
    (sorted by user) inside one transaction.

    Parameters
    ----------
    store : segmint.store.Store
        Where the data is and where the run is written.
    model : str or Recommender, default 'best'
        A model name, ``'best'`` (the model chosen by the latest evaluation) or an
        unfitted (or fitted, with ``interactions``) Recommender.
    n : int, optional
        Items per user (``config.n``, 10 by default).
    config : RecommendConfig, optional
        The project's ``recommend:`` settings.
    filters : Filters, optional
        Overrides the filters of ``config``.
    user_ids : sequence of str, optional
        Only these users (all users by default).
    interactions : Interactions, optional
        Use these instead of building them from the store (the model is fitted on them
        unless it is already fitted on exactly these).
    n_jobs : int, optional
        Worker threads for recommending (all CPUs by default).
    save : bool, default True
        Write the run (otherwise only the record is returned, for dry runs).
    personalization : {'opt_out', 'opt_in'}, default 'opt_out'
        ``privacy.personalization``: who may get personal lists (opt_out: all but those
        who revoked ``personalization`` consent; opt_in: only those who granted it).
    engine : SparkEngine, optional
        The project's engine: with Spark, a model named ``als`` is fitted by MLlib.

    Returns
    -------
    RecommendationRun
        The stored run record (``metrics`` has timings and row counts).

    Raises
    ------
    segmint.errors.NotFoundError
        For ``model='best'`` without an evaluation run.
    """
    cfg = config or RecommendConfig()
    n = cfg.n if n is None else n
    filters = filters or filters_from_config(cfg)
    started = time.perf_counter()
    rec = resolve_model(store, model, cfg, engine)
    data = interactions if interactions is not None else _build_for(store, cfg)
    t_data = time.perf_counter()
    if getattr(rec, "interactions_", None) is not data:
        rec.fit(data)
    t_fit = time.perf_counter()
    ids = _users_to_recommend(store, data, user_ids)
    denied = store.query(no_personalization_sql(personalization))["user_id"]
    impersonal = denied.astype(str).to_numpy(dtype=object)
    run = _batch_record(rec, data, filters, n, ids)
    run.metrics.update(
        {
            "interactions_seconds": round(t_data - started, 3),
            "fit_seconds": round(t_fit - t_data, 3),
            "n_interactions": data.nnz,
            "n_without_personalization": int(np.isin(ids, impersonal).sum()),
        }
    )
    counts = {"rows": 0}

    def batches() -> Iterator[pa.Table]:
        t0 = time.perf_counter()
        for table in rec.recommend_batches(
            ids, n, filters=filters, n_jobs=n_jobs or n_cpus(), popular_only=impersonal
        ):
            counts["rows"] += table.num_rows
            yield table
        run.metrics["recommend_seconds"] = round(time.perf_counter() - t0, 3)
        run.metrics["n_rows"] = counts["rows"]

    if save:
        save_run(store, run, batches())
    else:
        for _ in batches():
            pass
    run.metrics["total_seconds"] = round(time.perf_counter() - started, 3)
    log.info(
        "recommendations %s: %s for %d users, %d rows in %.1fs",
        run.run_id,
        rec.name,
        ids.size,
        counts["rows"],
        run.metrics["total_seconds"],
    )
    return run


def _build_for(store: Store, cfg: RecommendConfig) -> Interactions:
    """The interactions of the whole store, weighted as the project's settings say."""
    return build_interactions(
        store,
        weights=cfg.event_weights,
        quantity=cfg.quantity,
        half_life_days=cfg.half_life_days,
        binary=cfg.binary,
        segmentation=cfg.segmentation or default_segmentation(store),
    )


def _users_to_recommend(
    store: Store, data: Interactions, user_ids: Sequence[str] | None
) -> np.ndarray:
    """The sorted distinct users to give lists: ``user_ids``, or every user of the
    ``users`` table and of the interactions."""
    if user_ids is not None:
        return np.unique(np.asarray(user_ids, dtype=object))
    users = store.query("SELECT user_id FROM users ORDER BY user_id")["user_id"]
    return np.union1d(users.astype(str).to_numpy(dtype=object), data.user_ids)


def _batch_record(
    rec: Recommender, data: Interactions, filters: Filters, n: int, ids: np.ndarray
) -> RecommendationRun:
    """The record of a new batch run of ``rec`` (its metrics are filled in as it runs)."""
    created = datetime.now(UTC)
    return RecommendationRun(
        run_id=new_run_id(rec.name, created),
        kind="batch",
        created_at=created,
        as_of=data.as_of,
        model=rec.name,
        n=n,
        n_users=int(ids.size),
        params={
            "model": rec.name,
            "model_params": rec.get_params(),
            "interactions": data.params,
            "filters": filters.as_dict(),
        },
        metrics={},
    )


def recommend_for_user(
    store: Store,
    user_id: str,
    n: int = 10,
    *,
    run_id: str | None = None,
    personalization: str = "opt_out",
) -> pd.DataFrame:
    """One user's recommendations from the latest stored batch run (a fast lookup).

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    user_id : str
        The user.
    n : int, default 10
        At most this many items.
    run_id : str, optional
        A specific batch run; the latest by default.
    personalization : {'opt_out', 'opt_in'}, default 'opt_out'
        ``privacy.personalization``: a user without ``personalization`` consent gets the
        "popular now" list, whatever the run holds for them.

    Returns
    -------
    pandas.DataFrame
        ``rank, item_id, title, score, reason, model``. A user added after the run, or
        without personalization consent, gets the items most bought in the 30 days before
        the newest order ("popular now").

    Raises
    ------
    segmint.errors.NotFoundError
        When there is no batch run, or the user is not in the store.
    """
    uid = _lit(str(user_id))
    run = _lit(run_id) if run_id else f"({latest_run_sql('recommendation', kind='batch')})"
    # one round trip on the fast path; the latest run is found inside the query, and the
    # consent too (no row when the user may not get personalized lists)
    frame = store.query(
        'SELECT r."rank" AS "rank", r.item_id AS item_id, i.title AS title, r.score AS score, '
        "r.reason AS reason, r.model AS model FROM recommendations r "
        "LEFT JOIN items i ON i.item_id = r.item_id "
        f'WHERE r.run_id = {run} AND r.user_id = {uid} AND r."rank" <= {int(n)} '
        f"AND r.user_id NOT IN ({no_personalization_sql(personalization, uid)}) "
        'ORDER BY r."rank"'
    )
    if frame.empty:
        load_run_record(store, run_id, kind="batch")  # no run at all: say what to do
        if not store.scalar(f"SELECT count(*) FROM users WHERE user_id = {uid}"):
            raise NotFoundError(f"user {user_id!r} is not in the store {store.location}")
        end = default_as_of(store)
        start = end - timedelta(days=30)
        frame = store.query(
            "SELECT CAST(row_number() OVER (ORDER BY p.n_users DESC, p.item_id) AS INTEGER) "
            'AS "rank", p.item_id AS item_id, i.title AS title, '
            "CAST(p.n_users AS DOUBLE) AS score, 'popular now' AS reason, "
            "'popularity' AS model FROM (SELECT oi.item_id AS item_id, "
            "count(DISTINCT o.user_id) AS n_users FROM order_items oi JOIN orders o "
            f"ON o.order_id = oi.order_id WHERE {completed('o')} "
            f"AND o.ts >= {ts_lit(start.replace(microsecond=0))} "
            "GROUP BY oi.item_id) p LEFT JOIN items i ON i.item_id = p.item_id "
            f"ORDER BY p.n_users DESC, p.item_id LIMIT {int(n)}"
        )
    return pd.DataFrame(
        {
            "rank": pd.to_numeric(frame["rank"]).astype("int64"),
            "item_id": frame["item_id"].astype(str),
            "title": frame["title"].astype(object),
            "score": pd.to_numeric(frame["score"]).astype("float64"),
            "reason": frame["reason"].astype(str),
            "model": frame["model"].astype(str),
        }
    )
