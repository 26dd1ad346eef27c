"""Predictions as features: CLV, P(alive) and churn risk in rules and value tiers.

A ``rules`` segmentation whose conditions name a prediction column
(:data:`segmint.predict.PREDICTION_FEATURES`: ``clv``, ``churn_risk``,
``churn_risk_change``, ...) or a ``value_tiers`` segmentation whose ``feature`` is one gets
the features frame joined (left, on ``user_id``) with the scores of the latest prediction
run of each kind needed whose as-of date is the feature run's; without one, the run is
computed (:func:`segmint.predict.predict_clv`, ``predict_churn``) at that date, and saved
when the segment run is. Users without a score get NULL: a condition on it is false, a
value tier puts them in ``general``. Clusterings and trees never get these columns: only a
segmentation that names one does, so nothing else changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlglot import exp

import segmint.predict as predict
from segmint.config import (
    ClusterSegmentation,
    PredictSettings,
    PropensitySegmentation,
    RulesSegmentation,
    Segmentation,
    TreeSegmentation,
    ValueTiersSegmentation,
)
from segmint.predict import PREDICTION_FEATURES, VALUE_COLUMNS, churn_change_sql
from segmint.store import Store, lit

log = logging.getLogger(__name__)

#: the settings a stored run must share with the current ones to be reused, by kind
RUN_SETTINGS = {
    "clv": ("model", "horizon_days", "discount_rate", "margin", "interval"),
    "churn": ("churn_days", "seed"),
}


def _kind_of(column: str) -> str:
    return "clv" if column in VALUE_COLUMNS["clv"] else "churn"


def referenced_predictions(spec: Segmentation, columns: Sequence[str], *, name: str) -> list[str]:
    """The prediction columns ``spec`` names that the features frame does not have (a
    feature of the same name wins), in :data:`PREDICTION_FEATURES` order.

    Named means: in a rule's condition, as a value tier's ``feature``, in a clustering's
    ``features`` list, or in a tree's or propensity model's explicit ``features`` list or
    target column; a supervised segmentation without a ``features`` list (every numeric
    feature) gets none, so its results do not change under it.
    """
    have = {c.lower() for c in columns}
    named: set[str] = set()
    if isinstance(spec, ValueTiersSegmentation):
        named = {spec.feature.lower()}
    elif isinstance(spec, ClusterSegmentation):
        named = {c.lower() for c in spec.features}
    elif isinstance(spec, TreeSegmentation | PropensitySegmentation):
        named = {c.lower() for c in spec.features or []}
        named |= {spec.target.column.lower()} if spec.target.column else set()
    elif isinstance(spec, RulesSegmentation):
        from segmint.features import PERSONAL_COLUMNS, check_expression

        allowed = have | set(PREDICTION_FEATURES)
        for i, rule in enumerate(spec.rules):
            tree = check_expression(
                rule.when,
                allowed,
                aggregates=False,
                context=f"rule {i + 1} ({rule.segment!r}) of segmentation {name!r}",
                denied_columns=PERSONAL_COLUMNS,
            )
            named |= {col.name.lower() for col in tree.find_all(exp.Column)}
    return [c for c in PREDICTION_FEATURES if c in named and c not in have]


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def resolve_as_of(store: Store, as_of: datetime | None, feature_run_id: str | None) -> datetime:
    """The as-of date of the predictions: given, else the feature run's, else the store's
    default (the day after the newest activity, as a feature run's default)."""
    from segmint.features import default_as_of

    if as_of is not None:
        return _utc(as_of)
    if feature_run_id is not None:
        found = store.scalar("SELECT as_of FROM feature_runs WHERE run_id = ?", [feature_run_id])
        if found is not None:
            return _utc(found)
    return default_as_of(store)


def _same_settings(
    raw: Any, kind: str, settings: PredictSettings, custom: Sequence[str] | None
) -> bool:
    params = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    wanted: dict[str, Any] = settings.model_dump(mode="json")
    keys = list(RUN_SETTINGS[kind])
    if kind == "churn" and custom is not None:
        wanted["custom"] = sorted(custom)
        params["custom"] = sorted(params["custom"]) if "custom" in params else None
        keys.append("custom")
    return all(params[k] == wanted[k] for k in keys if params.get(k) is not None)


def stored_run(
    store: Store,
    kind: str,
    as_of: datetime,
    settings: PredictSettings,
    *,
    custom: Sequence[str] | None = None,
) -> str | None:
    """The newest stored run of ``kind`` at exactly ``as_of`` made with the same settings
    (horizon, discount rate, ...; for churn, the same custom features when ``custom``
    names them), or None."""
    runs = store.query(
        "SELECT run_id, as_of, params FROM predict_runs WHERE kind = ? "
        "ORDER BY created_at DESC, run_id DESC",
        [kind],
    )
    target = _utc(as_of)
    for run_id, at, params in runs.itertuples(index=False):
        if _utc(at) == target and _same_settings(params, kind, settings, custom):
            return str(run_id)
    return None


def _compute(
    store: Store,
    kind: str,
    as_of: datetime,
    settings: PredictSettings,
    *,
    custom: Sequence[Any],
    save: bool,
    name: str,
) -> predict.PredictionRun:
    if kind == "clv":
        run = predict.predict_clv(store, settings, as_of=as_of, save=save)
    else:
        run = predict.predict_churn(store, settings, as_of=as_of, custom=custom, save=save)
    log.info(
        "segmentation %s: no %s prediction run as of %s, computed %s (%d users%s)",
        name,
        kind,
        f"{as_of:%Y-%m-%d %H:%M}",
        run.run_id,
        run.n_users,
        "" if save else ", not saved",
    )
    return run


def _scores(store: Store, kind: str, run: str | predict.PredictionRun) -> pd.DataFrame:
    """``user_id`` and the kind's columns (churn: with ``churn_risk_change``)."""
    if isinstance(run, str):
        if kind == "clv":
            cols = ", ".join(VALUE_COLUMNS["clv"])
            return store.query(f"SELECT user_id, {cols} FROM predictions WHERE run_id = ?", [run])
        return store.query(churn_change_sql(f"SELECT {lit(run)}"))
    scores = run.scores[["user_id", *VALUE_COLUMNS[kind]]].copy()
    if kind == "churn":  # not saved: the previous run's risks from the store
        previous = _previous_churn(store, run.as_of)
        before = (
            _scores(store, "churn", previous)[["user_id", "churn_risk"]]
            if previous is not None
            else pd.DataFrame({"user_id": pd.Series(dtype=str), "churn_risk": []})
        )
        merged = scores.merge(before, on="user_id", how="left", suffixes=("", "_before"))
        scores["churn_risk_change"] = (merged["churn_risk"] - merged["churn_risk_before"]).values
    return scores


def _previous_churn(store: Store, as_of: datetime) -> str | None:
    """The latest churn run with an earlier as-of date than ``as_of``."""
    found = store.scalar(
        "SELECT run_id FROM predict_runs WHERE kind = 'churn' AND as_of < ? "
        "ORDER BY as_of DESC, created_at DESC, run_id DESC LIMIT 1",
        [as_of],
    )
    return None if found is None else str(found)


def with_predictions(
    store: Store,
    name: str,
    spec: Segmentation,
    features: pd.DataFrame,
    *,
    as_of: datetime | None = None,
    feature_run_id: str | None = None,
    settings: PredictSettings | None = None,
    custom: Sequence[Any] | None = None,
    save: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``features`` with the prediction columns ``spec`` names (left join on user_id), and
    what was used: ``{"as_of", "clv": run id, "churn": run id, "churn_previous": run id,
    "columns": [...], "computed": [kinds computed here]}`` (empty when none is named).

    ``custom`` (the project's custom features) must match a stored churn run's to reuse
    it, and go into a churn run computed here; None: any stored run, none computed with.
    """
    wanted = referenced_predictions(spec, list(features.columns), name=name)
    if not wanted:
        return features, {}
    settings = settings or PredictSettings()
    at = resolve_as_of(store, as_of, feature_run_id)
    used: dict[str, Any] = {"as_of": at.isoformat(), "columns": wanted, "computed": []}
    frame = features
    for kind in ("clv", "churn"):
        columns = [c for c in wanted if _kind_of(c) == kind]
        if not columns:
            continue
        names = None if custom is None else [getattr(f, "name", str(f)) for f in custom]
        run_id = stored_run(store, kind, at, settings, custom=names)
        run: str | predict.PredictionRun
        if run_id is None:
            run = _compute(store, kind, at, settings, custom=custom or (), save=save, name=name)
            used["computed"].append(kind)
            run_id = run.run_id
            if save:
                run = run_id  # read back as stored (one path for stored and fresh runs)
        else:
            run = run_id
        used[kind] = run_id
        if kind == "churn":
            used["churn_previous"] = _previous_churn(store, at)
        scores = _scores(store, kind, run)[["user_id", *columns]]
        scores["user_id"] = scores["user_id"].astype(str)
        ids = frame["user_id"].astype(str)
        frame = frame.assign(**{c: ids.map(scores.set_index("user_id")[c]) for c in columns})
    log.info(
        "segmentation %s: prediction columns %s from %s",
        name,
        ", ".join(wanted),
        ", ".join(f"{k} {used[k]}" for k in ("clv", "churn") if k in used),
    )
    return frame, used


__all__ = ["referenced_predictions", "resolve_as_of", "stored_run", "with_predictions"]
