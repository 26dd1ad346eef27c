"""Offline evaluation with a time split, model comparison and the choice of a model."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from segmint.config import RecommendConfig
from segmint.errors import ConfigError, NotFoundError
from segmint.features import default_as_of
from segmint.recommend._base import Filters, Recommender
from segmint.recommend._interactions import (
    Interactions,
    _as_utc,
    build_interactions,
    purchases_between,
)
from segmint.recommend._metrics import catalogue_coverage, novelty, ranking_metrics
from segmint.recommend._registry import (
    default_segmentation,
    filters_from_config,
    make_model,
)
from segmint.recommend._runs import RecommendationRun, new_run_id, save_run
from segmint.store import Store

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

__all__ = ["EvaluationResult", "evaluate_models", "evaluate_on_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """A model comparison on a time split.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model (index ``model``): ``precision@k``, ``recall@k``, ``ndcg@k``,
        ``map@k``, ``hit_rate@k``, ``coverage``, ``novelty``, ``fit_s``, ``recommend_s``.
    best : str
        The model with the highest NDCG@k.
    k : int
        List length evaluated.
    cut : datetime
        Training data strictly before, test purchases from it on.
    test_end : datetime or None
        End of the test window (exclusive).
    n_users : int
        Users evaluated: known before the cut, with at least one relevant test purchase.
    n_cold_users : int
        Buyers in the test window without any interaction before the cut (not evaluated).
    gain_over_popularity : float or None
        Relative NDCG@k gain of the best personalised model over global popularity.
    run_id : str or None
        The stored evaluation run.
    """

    table: pd.DataFrame
    best: str
    k: int
    cut: datetime
    test_end: datetime | None
    n_users: int
    n_cold_users: int
    gain_over_popularity: float | None
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def best_metrics(self) -> dict[str, float]:
        """The chosen model's row of the table."""
        row = self.table.loc[self.best].astype("float64")
        return {str(k): float(v) for k, v in row.to_dict().items()}


def _relevant(
    train: Interactions, test: pd.DataFrame, filters: Filters
) -> tuple[np.ndarray, Any, int]:
    """Rows of evaluated users and their relevant items (CSR over those rows)."""
    u = train.user_index(test["user_id"].to_numpy(dtype=object))
    i = train.item_index(test["item_id"].to_numpy(dtype=object))
    n_cold = int(np.unique(test["user_id"].to_numpy(dtype=object)[u < 0]).size)
    ok = (u >= 0) & (i >= 0)
    u, i = u[ok], i[ok]
    if filters.exclude_purchased and u.size:
        from segmint.recommend._select import PairLookup

        before = PairLookup(train.purchases)(u, i) > 0
        repeat = np.isin(
            train.items["category"].to_numpy(dtype=object)[i],
            np.asarray(filters.repeat_purchase_categories, dtype=object),
        )
        keep = ~before | repeat
        u, i = u[keep], i[keep]
    rows = np.unique(u)
    r = np.searchsorted(rows, u)
    rel = sp.csr_matrix(
        (np.ones(u.size, dtype=np.float32), (r, i)), shape=(rows.size, train.n_items)
    )
    rel.sum_duplicates()
    rel.data[:] = 1.0
    return rows, rel, n_cold


def evaluate_on_split(
    train: Interactions,
    test: pd.DataFrame,
    models: Mapping[str, Recommender],
    *,
    k: int = 10,
    filters: Filters | None = None,
) -> tuple[pd.DataFrame, int, int]:
    """Fit every model on ``train`` and score its top-k against ``test`` purchases.

    Parameters
    ----------
    train : Interactions
        Training interactions (before the cut).
    test : pandas.DataFrame
        ``user_id, item_id`` bought after the cut.
    models : mapping of str to Recommender
        Unfitted models by name.
    k : int, default 10
        List length.
    filters : Filters, optional
        Business filters applied to the lists; with ``exclude_purchased`` the items a
        user bought before the cut are not relevant either (they cannot be recommended).

    Returns
    -------
    table : pandas.DataFrame
        As :attr:`EvaluationResult.table`.
    n_users : int
        Users evaluated.
    n_cold_users : int
        Test buyers unknown before the cut.
    """
    filters = Filters() if filters is None else filters
    rows, rel, n_cold = _relevant(train, test, filters)
    if rows.size == 0:
        raise NotFoundError(
            "no user bought anything after the cut that they had not bought before; "
            "move the cut earlier or lengthen the test window"
        )
    users = train.user_ids[rows]
    popularity = np.asarray((train.matrix > 0).sum(axis=0)).ravel()
    records = []
    for name, model in models.items():  # loops over a handful of models
        t0 = time.perf_counter()
        model.fit(train)
        t1 = time.perf_counter()
        recs = model.recommend_items(users, k, filters=filters)
        t2 = time.perf_counter()
        m = ranking_metrics(recs, rel)
        records.append(
            {
                "model": name,
                f"precision@{k}": m["precision"],
                f"recall@{k}": m["recall"],
                f"ndcg@{k}": m["ndcg"],
                f"map@{k}": m["map"],
                f"hit_rate@{k}": m["hit_rate"],
                "coverage": catalogue_coverage(recs, train.n_items),
                "novelty": novelty(recs, popularity, train.n_users),
                "fit_s": t1 - t0,
                "recommend_s": t2 - t1,
            }
        )
        log.debug("evaluated %s: ndcg@%d %.4f", name, k, m["ndcg"])
    return pd.DataFrame.from_records(records).set_index("model"), int(rows.size), n_cold


def _resolve_models(
    models: Sequence[str | Recommender] | Mapping[str, Recommender] | None,
    config: RecommendConfig,
    engine: SparkEngine | None = None,
) -> dict[str, Recommender]:
    if models is None:
        return {name: make_model(name, config, engine=engine) for name in config.models}
    if isinstance(models, Mapping):
        return dict(models)
    out: dict[str, Recommender] = {}
    for m in models:
        if isinstance(m, str):
            out[m] = make_model(m, config, engine=engine)
        elif isinstance(m, Recommender):
            out[m.name] = m
        else:
            raise ConfigError(f"models must be names or Recommenders, got {type(m).__name__}")
    return out


# long on purpose: a 50-line docstring; the ~45-line body is a list of named steps
# (_split_window, _models_to_compare, evaluate_on_split, _save_evaluation).
def evaluate_models(
    store: Store,
    *,
    cut: datetime | date | str | None = None,
    k: int | None = None,
    models: Sequence[str | Recommender] | Mapping[str, Recommender] | None = None,
    test_days: int | None = None,
    config: RecommendConfig | None = None,
    filters: Filters | None = None,
    save: bool = True,
    engine: SparkEngine | None = None,
) -> EvaluationResult:
    """Compare models on a time split and record the best one.

    Training interactions are everything strictly before ``cut`` (a date means its
    midnight UTC); relevant items are what each user bought in completed orders in
    ``[cut, cut + test_days)`` — except, when already bought items are filtered out
    (``exclude_purchased``, the default), items they had bought before the cut. With
    ``exclude_purchased`` off, re-purchases count: items bought before the cut may be
    recommended, and are hits when bought again in the window. Users evaluated are those
    with interactions before the cut and at least one relevant item; buyers new after the
    cut are counted but not evaluated (every model gives them the same popularity
    fallback). Equal scores rank the smaller item id first, so the figures do not depend
    on how many users are scored at once.

    Parameters
    ----------
    store : segmint.store.Store
        The store with orders, order lines, events and items.
    cut : datetime, date or str, optional
        The split instant; ``config.cut``, else ``test_days`` before the day after the
        newest order or event.
    k : int, optional
        List length (``config.k``, 10 by default).
    models : sequence of names or Recommenders, or mapping of name to Recommender, optional
        What to compare; ``config.models`` by default (popularity, segment popularity,
        item-kNN, ALS, content and the hybrid).
    test_days : int, optional
        Length of the test window (``config.test_days``, 30 by default).
    config : RecommendConfig, optional
        The project's ``recommend:`` settings (weights, filters, model parameters).
    filters : Filters, optional
        Overrides the filters of ``config``.
    save : bool, default True
        Record the comparison as an ``evaluation`` run in ``recommendation_runs``.
    engine : SparkEngine, optional
        The project's engine: with Spark, models named ``als`` are fitted by MLlib.

    Returns
    -------
    EvaluationResult
        The comparison table, the chosen model (highest NDCG@k) and the run id.

    Raises
    ------
    segmint.errors.NotFoundError
        When no user is left to evaluate.
    segmint.errors.ConfigError
        For an unknown model name or bad settings.
    """
    cfg = config or RecommendConfig()
    k = cfg.k if k is None else k
    end, cut_ts, test_end = _split_window(store, cfg, cut, test_days)
    filters = filters or filters_from_config(cfg)
    chosen, segmentation = _models_to_compare(store, models, cfg, engine)
    started = time.perf_counter()
    train = build_interactions(
        store,
        before=cut_ts,
        weights=cfg.event_weights,
        quantity=cfg.quantity,
        half_life_days=cfg.half_life_days,
        binary=cfg.binary,
        segmentation=segmentation,
    )
    test = purchases_between(store, since=cut_ts, before=test_end)
    table, n_users, n_cold = evaluate_on_split(train, test, chosen, k=k, filters=filters)
    ndcg = table[f"ndcg@{k}"]
    result = EvaluationResult(
        table=table,
        best=str(ndcg.idxmax()),
        k=k,
        cut=cut_ts,
        test_end=test_end,
        n_users=n_users,
        n_cold_users=n_cold,
        gain_over_popularity=_gain_over_popularity(ndcg),
        params={
            "cut": cut_ts.isoformat(),
            "test_end": test_end.isoformat(),
            "k": k,
            "interactions": train.params,
            "filters": filters.as_dict(),
            "models": {name: m.get_params() for name, m in chosen.items()},
        },
    )
    if save:
        result = replace(result, run_id=_save_evaluation(store, result, datetime.now(end.tzinfo)))
    log.info(
        "evaluated %d models on %d users (cut %s): best %s, ndcg@%d %.4f in %.1fs",
        len(chosen),
        n_users,
        cut_ts.date(),
        result.best,
        k,
        float(ndcg[result.best]),
        time.perf_counter() - started,
    )
    return result


def _split_window(
    store: Store, cfg: RecommendConfig, cut: datetime | date | str | None, test_days: int | None
) -> tuple[datetime, datetime, datetime]:
    """The store's as-of end, the cut and the end of the test window."""
    days = cfg.test_days if test_days is None else test_days
    if not isinstance(days, int) or days < 1:
        raise ConfigError(f"test_days must be a whole number of days >= 1, got {days!r}")
    end = default_as_of(store)
    cut_ts = _as_utc(cut if cut is not None else cfg.cut) or (end - timedelta(days=days))
    return end, cut_ts, cut_ts + timedelta(days=days)


def _models_to_compare(
    store: Store,
    models: Sequence[str | Recommender] | Mapping[str, Recommender] | None,
    cfg: RecommendConfig,
    engine: SparkEngine | None = None,
) -> tuple[dict[str, Recommender], str | None]:
    """The models by name and the segmentation they use (without one, segment
    popularity is left out)."""
    chosen = _resolve_models(models, cfg, engine)
    segmentation = cfg.segmentation or default_segmentation(store)
    if segmentation is None:
        chosen.pop("segment_popularity", None)
    return chosen, segmentation


def _gain_over_popularity(ndcg: pd.Series) -> float | None:
    """The best personal model's NDCG relative to popularity's, minus 1 (None without a
    popularity baseline, a personal model or a positive baseline)."""
    if "popularity" not in ndcg.index:
        return None
    personal = ndcg.drop([m for m in ("popularity", "segment_popularity") if m in ndcg.index])
    base = float(ndcg["popularity"])
    if len(personal) and base > 0:
        return float(personal.max()) / base - 1.0
    return None


def _save_evaluation(store: Store, result: EvaluationResult, created: datetime) -> str:
    """Record an evaluation as an ``evaluation`` run; returns its run id."""
    run_id = new_run_id("evaluation")
    save_run(
        store,
        RecommendationRun(
            run_id=run_id,
            kind="evaluation",
            created_at=created,
            as_of=result.cut,
            model=result.best,
            n=result.k,
            n_users=result.n_users,
            params=result.params,
            metrics={
                "table": result.table.reset_index().to_dict(orient="records"),
                "best": result.best,
                "gain_over_popularity": result.gain_over_popularity,
                "n_cold_users": result.n_cold_users,
            },
        ),
    )
    return run_id
