"""Customer lifetime value: BG/NBD (or MBG/NBD) for purchases, Gamma-Gamma for spend,
fitted on the store's completed orders before an as-of date and stored as a run."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from segmint.config import PredictSettings
from segmint.errors import ConfigError
from segmint.predict._models import PURCHASE_MODELS, GammaGamma
from segmint.predict._runs import PredictionRun, new_run_id, save_run
from segmint.predict._summary import as_utc, customer_summary, holdout_purchases
from segmint.store import Store

log = logging.getLogger(__name__)

#: calibration purchases shown one by one in the holdout table; more are pooled ("7+")
HOLDOUT_GROUPS = 7


def _default_as_of(store: Store, as_of: date | datetime | None) -> datetime:
    if as_of is not None:
        return as_utc(as_of)
    from segmint.features import default_as_of

    return default_as_of(store)


def fit_models(summary: pd.DataFrame, settings: PredictSettings) -> tuple[Any, GammaGamma | None]:
    """The fitted purchase model and spend model (None when too few repeat buyers)."""
    model = PURCHASE_MODELS[settings.model]().fit(summary["x"], summary["t_x"], summary["T"])
    try:
        spend: GammaGamma | None = GammaGamma().fit(summary["x"], summary["m"])
    except ConfigError as exc:
        log.warning("CLV: %s; order values fall back to each customer's mean", exc)
        spend = None
    return model, spend


def order_values(
    summary: pd.DataFrame, spend: GammaGamma | None, settings: PredictSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's expected order value and the ends of its ``settings.interval``
    credible interval (the Gamma-Gamma posterior; each customer's own mean without a
    spend model)."""
    x, m = summary["x"].to_numpy(float), summary["m"].to_numpy(float)
    if spend is None:
        value = np.nan_to_num(m, nan=float(np.nanmean(m)) if np.isfinite(m).any() else 0.0)
        return value, value, value
    # Gamma-Gamma is fitted on repeat purchases only; a one-time buyer's posterior would
    # be the population mean p·v/(q−1) - heavy when q is near 1 - whatever they spent.
    # By default their first purchase stands in as one observation of their spend.
    sx, sm = x, m
    if settings.one_time_buyers == "first_purchase" and "first_value" in summary:
        first = summary["first_value"].to_numpy(float)
        once = (x == 0) & (first > 0)
        sx, sm = np.where(once, 1.0, x), np.where(once, first, m)
    low, high = spend.order_value_interval(sx, sm, settings.interval)
    return spend.order_value(sx, sm), low, high


def score(
    summary: pd.DataFrame, model: Any, spend: GammaGamma | None, settings: PredictSettings
) -> pd.DataFrame:
    """Per customer: P(alive), expected purchases over the horizon, expected order value,
    CLV and its interval (from the spend posterior; purchases at their expectation)."""
    x, t_x, T = (summary[c].to_numpy(float) for c in ("x", "t_x", "T"))
    value, low, high = order_values(summary, spend, settings)
    kw = {
        "horizon": float(settings.horizon_days),
        "discount_rate": settings.discount_rate,
        "margin": settings.margin,
    }
    clv, purchases = model.clv(x, t_x, T, value, **kw)
    # CLV is linear in the order value: the interval's ends scale with it
    ratio = np.divide(clv, value, out=np.zeros_like(clv), where=value > 0)
    return pd.DataFrame(
        {
            "user_id": summary["user_id"].astype(str).to_numpy(),
            "p_alive": model.p_alive(x, t_x, T),
            "expected_purchases": purchases,
            "expected_order_value": value,
            "clv": clv,
            "clv_low": ratio * low,
            "clv_high": ratio * high,
        }
    )


def holdout_check(
    store: Store,
    calibration_end: datetime,
    holdout_end: datetime,
    settings: PredictSettings,
) -> dict[str, Any]:
    """Fit on the orders before ``calibration_end``, predict each customer's purchases in
    ``[calibration_end, holdout_end)`` and compare with what they did, grouped by their
    number of repeat purchases in the calibration period (0, 1, ..., 7+), as in Fader,
    Hardie & Lee (2005), figure 4; and the revenue predicted with the spend model fitted
    on the same period against the revenue made (``value``, :func:`value_check`)."""
    summary = customer_summary(store, calibration_end)
    if summary.empty or summary["x"].sum() == 0:
        raise ConfigError(
            f"no repeat purchase before {calibration_end:%Y-%m-%d}: nothing to check against"
        )
    model, spend = fit_models(summary, settings)
    days = (holdout_end - calibration_end).total_seconds() / 86400.0
    predicted = model.expected_purchases(days, summary["x"], summary["t_x"], summary["T"])
    done = summary[["user_id"]].merge(
        holdout_purchases(store, calibration_end, holdout_end), on="user_id", how="left"
    )
    actual = done["purchases"].fillna(0.0).to_numpy()
    group = np.minimum(summary["x"].to_numpy(), HOLDOUT_GROUPS).astype(int)
    frame = pd.DataFrame({"group": group, "predicted": predicted, "actual": actual})
    by = frame.groupby("group").agg(
        n=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    rows = [
        {
            "purchases": f"{g}+" if g == HOLDOUT_GROUPS else str(g),
            "n": int(r["n"]),
            "actual": round(float(r["actual"]), 4),
            "predicted": round(float(r["predicted"]), 4),
        }
        for g, r in by.iterrows()
    ]
    total_actual, total_predicted = float(actual.sum()), float(predicted.sum())
    return {
        "calibration_end": calibration_end.isoformat(),
        "holdout_end": holdout_end.isoformat(),
        "holdout_days": days,
        "n_customers": int(len(summary)),
        "params": model.params,
        "by_calibration_purchases": rows,
        "total_actual": total_actual,
        "total_predicted": total_predicted,
        "total_error": (total_predicted - total_actual) / total_actual if total_actual else None,
        "customer_mae": float(np.mean(np.abs(predicted - actual))),
        "correlation": _correlation(predicted, actual),
        "value": value_check(
            predicted * order_values(summary, spend, settings)[0],
            done["revenue"].fillna(0.0).to_numpy(),
        ),
    }


#: groups of the value check: customers in equal groups by predicted revenue
VALUE_GROUPS = 10


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation, None where it has no value (fewer than three customers, or
    one side constant: nobody bought in the holdout)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def value_check(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Predicted revenue (expected purchases x expected order value, undiscounted, before
    any margin) against the revenue each customer made in the holdout, in ten equal groups
    by predicted revenue (10 = the highest): do the customers CLV ranks first bring the
    money, and is the total right?"""
    n = len(predicted)
    groups = max(1, min(VALUE_GROUPS, n))
    order = np.argsort(-predicted, kind="stable")  # highest first; ties keep the summary's order
    rank_group = np.empty(n, dtype=int)
    for g, idx in enumerate(np.array_split(order, groups)):
        rank_group[idx] = groups - g
    count = np.bincount(rank_group, minlength=groups + 1)[1:]
    per = np.maximum(count, 1)  # an empty group (no customer at all) is left out below
    mean_predicted = np.bincount(rank_group, predicted, minlength=groups + 1)[1:] / per
    mean_actual = np.bincount(rank_group, actual, minlength=groups + 1)[1:] / per
    total_actual, total_predicted = float(actual.sum()), float(predicted.sum())
    top = rank_group == groups
    return {
        "by_predicted_decile": [
            {
                "group": g + 1,
                "n": int(count[g]),
                "predicted": round(float(mean_predicted[g]), 4),
                "actual": round(float(mean_actual[g]), 4),
            }
            for g in range(groups)
            if count[g]
        ],
        "total_actual": total_actual,
        "total_predicted": total_predicted,
        "total_error": (total_predicted - total_actual) / total_actual if total_actual else None,
        "correlation": _correlation(predicted, actual),
        "top_group_share": float(actual[top].sum()) / total_actual if total_actual else None,
    }


def _holdout_window(store: Store, as_of: datetime, settings: PredictSettings) -> datetime | None:
    """Calibration end for the built-in holdout check: the horizon (at most half the
    history) before the as-of date, or None when the history is too short."""
    first = store.scalar("SELECT min(ts) FROM orders WHERE status = 'completed'")
    if first is None:
        return None
    first_ts = as_utc(pd.Timestamp(first).to_pydatetime())
    span = (as_of - first_ts).days
    days = min(settings.horizon_days, span // 2)
    if days < 14:
        return None
    return as_of - timedelta(days=days)


def _check_not_after_the_orders(store: Store, start: datetime | None, cut: datetime) -> None:
    """Refuse an as-of date with no completed order in the holdout window before it (from
    ``start``): the orders end long before it (an old export scored ``--as-of today``, a
    mistyped year), so the check has nothing to compare with and the models read the
    silence as customers leaving. Such a run would also stay the latest clv run (the
    newest as-of date) until one at a later date."""
    if start is None:
        return
    last = store.scalar("SELECT max(ts) FROM orders WHERE status = 'completed' AND ts < ?", [cut])
    if last is None or as_utc(pd.Timestamp(last).to_pydatetime()) >= start:
        return
    raise ConfigError(
        f"the orders end on {pd.Timestamp(last):%Y-%m-%d}, more than {(cut - start).days} days "
        f"before the as-of date {cut:%Y-%m-%d}: nobody bought in the period the holdout check "
        "compares with, and the models would read the silence as customers leaving; use "
        "--as-of latest (the day after the newest order or event), an earlier date, or load "
        "newer orders"
    )


def predict_clv(
    store: Store,
    settings: PredictSettings | None = None,
    *,
    as_of: date | datetime | None = None,
    save: bool = True,
    holdout: bool = True,
) -> PredictionRun:
    """Fit the CLV models on completed orders before ``as_of`` (default: the day after
    the newest activity) and score every customer; stored as a ``clv`` run.

    Metrics hold the fitted parameters with standard errors and 95 % intervals; details
    the holdout check (:func:`holdout_check`, on the last ``horizon_days`` - at most half
    the history - before the as-of date) unless ``holdout`` is False.
    """
    settings = settings or PredictSettings()
    cut = _default_as_of(store, as_of)
    summary = customer_summary(store, cut)
    if summary.empty:
        raise ConfigError(
            f"no completed order before {cut:%Y-%m-%d}: CLV needs purchases to learn from "
            "(load orders, or pick a later --as-of)"
        )
    if not (summary["x"] > 0).any():
        raise ConfigError(
            f"none of the {len(summary):,} customers bought on two different days before "
            f"{cut:%Y-%m-%d}: the purchase model learns from repeat purchases (load more "
            "order history, or pick a later --as-of)"
        )
    start = _holdout_window(store, cut, settings)
    _check_not_after_the_orders(store, start, cut)
    model, spend = fit_models(summary, settings)
    scores = score(summary, model, spend, settings)
    metrics: dict[str, Any] = {
        "n_customers": int(len(summary)),
        "n_repeat_buyers": int((summary["x"] > 0).sum()),
        "purchase_model": settings.model,
        "purchase_fit": model.fit_.to_dict(),
        "spend_fit": spend.fit_.to_dict() if spend is not None and spend.fit_ else None,
        "clv_total": float(scores["clv"].sum()),
        "clv_mean": float(scores["clv"].mean()),
        "clv_median": float(scores["clv"].median()),
        "p_alive_mean": float(scores["p_alive"].mean()),
    }
    details: dict[str, Any] = {}
    if holdout:
        if start is not None:
            try:
                details["holdout"] = holdout_check(store, start, cut, settings)
            except ConfigError as exc:
                details["holdout_skipped"] = str(exc)
        elif settings.horizon_days < 14:
            details["holdout_skipped"] = (
                f"a horizon of {settings.horizon_days} days is under the check's two weeks"
            )
        else:
            details["holdout_skipped"] = "less than four weeks of order history"
    run = PredictionRun(
        run_id=new_run_id("clv"),
        kind="clv",
        created_at=datetime.now(UTC),
        as_of=cut,
        scores=scores,
        params=settings.model_dump(mode="json"),
        metrics=metrics,
        details=details,
    )
    if save:
        save_run(store, run)
    log.info(
        "clv: %d customers, mean CLV %.2f, mean P(alive) %.3f",
        len(scores),
        metrics["clv_mean"],
        metrics["p_alive_mean"],
    )
    return run
