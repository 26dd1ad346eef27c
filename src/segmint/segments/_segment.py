"""Run named segmentations over a feature run and store each as a versioned run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.config import (
    ClusterSegmentation,
    Config,
    LifecycleSegmentation,
    PredictSettings,
    PropensitySegmentation,
    RfmSegmentation,
    RulesSegmentation,
    Segmentation,
    TreeSegmentation,
    ValueTiersSegmentation,
)
from segmint.errors import ConfigError, NotFoundError
from segmint.segments._identity import link_clusters
from segmint.segments._predictions import with_predictions
from segmint.segments._rules import (
    lifecycle_sql,
    rfm_sql,
    run_rules,
    run_sql,
    value_tiers_sql,
)
from segmint.segments._runs import SegmentResult, new_run_id, save_run
from segmint.store import Store, latest_run_sql

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

log = logging.getLogger(__name__)


def segment_metrics(assignments: pd.DataFrame, features: pd.DataFrame) -> dict[str, Any]:
    """Sizes, shares and revenue shares per segment (every segmentation gets these)."""
    merged = assignments[["user_id", "segment"]].merge(
        features[["user_id", "monetary"]], on="user_id", how="left"
    )
    sizes = merged.groupby("segment").size().sort_values(ascending=False)
    revenue = merged.groupby("segment")["monetary"].sum()
    total = float(revenue.sum()) or 1.0
    n = int(sizes.sum())
    return {
        "n_users": n,
        "n_segments": int(len(sizes)),
        "sizes": {str(k): int(v) for k, v in sizes.items()},
        "shares": {str(k): round(float(v) / n, 6) for k, v in sizes.items()},
        "revenue_share": {str(k): round(float(revenue[k]) / total, 6) for k in sizes.index},
        "size_balance": round(float(sizes.min() / sizes.max()), 6) if len(sizes) else None,
    }


def _rules_based(
    name: str, spec: Segmentation, features: pd.DataFrame, *, engine: SparkEngine | None = None
) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any]]:
    rules: dict[str, str] = {}
    details: dict[str, Any] = {}
    context = f"segmentation {name!r}"
    if isinstance(spec, RfmSegmentation):
        out = run_sql(rfm_sql(), features, engine=engine, context=context)
        code = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
        out["detail"] = code.where(out["r_score"] > 0)
        details["score_means"] = (
            out[out["r_score"] > 0]
            .groupby("segment")[["r_score", "f_score", "m_score"]]
            .mean()
            .round(2)
            .to_dict(orient="index")
        )
        return out[["user_id", "segment", "detail"]], rules, details
    if isinstance(spec, LifecycleSegmentation):
        return (
            run_sql(lifecycle_sql(spec), features, engine=engine, context=context),
            rules,
            details,
        )
    if isinstance(spec, ValueTiersSegmentation):
        if spec.feature not in features.columns:
            raise ConfigError(
                f"segmentation {name!r}: unknown feature {spec.feature!r} for `feature`"
            )
        out = run_sql(value_tiers_sql(spec), features, engine=engine, context=context)
        return out, rules, details
    if isinstance(spec, RulesSegmentation):
        out = run_rules(spec, features, name=name, engine=engine)
        rules = {r.segment: r.when for r in spec.rules}
        rules[spec.default] = "otherwise"
        return out, rules, details
    raise AssertionError(f"not a rule segmentation: {spec!r}")  # pragma: no cover


def _previous_details(store: Store, name: str) -> tuple[str | None, dict[str, Any] | None]:
    """The latest stored run of segmentation ``name``: its id and details (or Nones)."""
    found = store.query(latest_run_sql("segment", columns="run_id, details", segmentation=name))
    if found.empty:
        return None, None
    raw: Any = found.iat[0, 1]
    details = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    return str(found.iat[0, 0]), details


def run_segmentation(
    store: Store,
    name: str,
    spec: Segmentation,
    features: pd.DataFrame,
    *,
    feature_run_id: str | None = None,
    as_of: datetime | None = None,
    save: bool = True,
    predict: PredictSettings | None = None,
    custom_features: Sequence[Any] | None = None,
    engine: SparkEngine | None = None,
) -> SegmentResult:
    """Run one segmentation on a features frame (one row per user) and store the run.

    A segmentation that names a prediction column (``clv``, ``churn_risk``, ... in a rule,
    as a value tier's feature, in a features list) gets the scores of the prediction run at
    the features' as-of date (computed with ``predict`` settings when there is none, saved
    when ``save``); the run ids used are in ``details["predictions"]``. One that does not
    name any gets the features unchanged. ``custom_features`` (the project's
    custom features) are passed to the churn model when it has to be computed, and a
    stored churn run is reused only if made with them (None: any stored churn run).
    With a Spark ``engine`` rule segmentations run their SQL on Spark and k-means is
    fitted with MLlib (the other methods run here, on the driver).
    """
    if "user_id" not in features.columns:
        features = features.reset_index()
    params = spec.model_dump(mode="json")
    features, used = with_predictions(
        store,
        name,
        spec,
        features,
        as_of=as_of,
        feature_run_id=feature_run_id,
        settings=predict,
        custom=custom_features,
        save=save,
    )
    if isinstance(spec, ClusterSegmentation):
        from segmint.segments._clustering import run_clustering

        assignments, metrics, rules, details = run_clustering(name, spec, features, engine=engine)
        metrics = {**segment_metrics(assignments, features), **metrics}
        previous_run, previous = _previous_details(store, name)
        link_clusters(details, previous, previous_run=previous_run)
    elif isinstance(spec, TreeSegmentation | PropensitySegmentation):
        from segmint.segments._supervised import run_propensity, run_tree

        if isinstance(spec, TreeSegmentation):
            out = run_tree(store, name, spec, features, as_of=as_of)
        else:
            out = run_propensity(store, name, spec, features, as_of=as_of)
        assignments, metrics, rules, details = out
        metrics = {**segment_metrics(assignments, features), **metrics}
    else:
        assignments, rules, details = _rules_based(name, spec, features, engine=engine)
        metrics = segment_metrics(assignments, features)
    if used:
        details = {**details, "predictions": used}
    result = SegmentResult(
        run_id=new_run_id(name),
        segmentation=name,
        method=spec.type,
        created_at=datetime.now(UTC),
        feature_run_id=feature_run_id,
        as_of=as_of,
        assignments=assignments.reset_index(drop=True),
        params=params,
        metrics=metrics,
        rules=rules,
        details=details,
    )
    if save:
        save_run(store, result)
    log.info(
        "segmentation %s: %d users in %d segments", name, len(assignments), metrics["n_segments"]
    )
    return result


def run_segmentations(
    store: Store,
    config: Config,
    features: pd.DataFrame,
    names: Iterable[str] | None = None,
    *,
    feature_run_id: str | None = None,
    as_of: datetime | None = None,
    callback: Callable[[str], None] | None = None,
    engine: SparkEngine | None = None,
) -> list[SegmentResult]:
    """Run the named segmentations of ``config`` (default: all), each as a stored run
    (on Spark where it can, when an ``engine`` is given: see :func:`run_segmentation`)."""
    wanted = list(names) if names else list(config.segmentations)
    if not wanted:
        raise ConfigError("no segmentations configured: add some under `segmentations:`")
    for n in wanted:
        if n not in config.segmentations:
            known = ", ".join(config.segmentations) or "(none)"
            raise NotFoundError(f"no segmentation named {n!r} in segmint.yaml; known: {known}")
    from segmint.features import CustomFeature

    custom = [CustomFeature(c, f.expr, f.table) for c, f in config.features.custom.items()]
    results = []
    for n in wanted:
        if callback:
            callback(n)
        results.append(
            run_segmentation(
                store,
                n,
                config.segmentations[n],
                features,
                feature_run_id=feature_run_id,
                as_of=as_of,
                predict=config.predict,
                custom_features=custom,
                engine=engine,
            )
        )
    return results
