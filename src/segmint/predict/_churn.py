"""Churn propensity: gradient boosting on as-of features with time-based labels, checked on
a later cut-off against BG/NBD's P(alive).

The label at a cut-off ``T``: a customer (a completed order before ``T``) churns when they
make no completed order in ``[T, T + N)``, ``N = churn_days``. Three cut-offs::

    ──────────┬──────── N ────────┬──────── N ────────┬──────►
              T1 = as_of − 2N     T2 = as_of − N      as_of
              train: features     holdout: features   score: features
              before T1, labels   before T2, labels   before as_of,
              in [T1, T2)         in [T2, as_of)      label unknown

The model trained at T1 is evaluated at T2 (AUC with a DeLong interval, Brier score,
calibration) beside the baseline 1 − P(alive); then it is refitted on the T2 set and
scores every customer at ``as_of``.

No leakage by construction: every column of a cut-off's frame (the feature catalog and
custom features, the customer summary and the BG/NBD fit) uses only data strictly before
the cut-off, and :func:`churn_frame` refuses features computed as of a later instant. The
users' static columns are read as they are today (the store keeps no history of them), so
one of them (or a custom feature on ``users``) that alone predicts a cut-off's label almost
perfectly stops the fit as a leak. A customer is one at a cut-off when their user was
created before it; the as-of date is never after the data's end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from segmint.config import PredictSettings
from segmint.errors import ConfigError
from segmint.features import CATALOG, CustomFeature, FeatureRun, default_as_of, features_as_of
from segmint.predict._clv import _default_as_of
from segmint.predict._models import PURCHASE_MODELS
from segmint.predict._runs import PredictionRun, new_run_id, save_run
from segmint.predict._summary import as_utc, customer_summary, holdout_purchases
from segmint.store import TABLES, Store, completed_orders, ts_lit

log = logging.getLogger(__name__)

LABEL = "churned"
#: one column alone predicting the training label this well (AUC, either way) is a leak
LEAK_AUC = 0.98
#: text columns: the most frequent levels one-hot, the rest pooled as "other"
MAX_LEVELS = 20
N_BINS = 10
#: fewest churners (and stayers) a cut-off needs to learn from or to be judged on
MIN_CLASS = 20
IMPORTANCE_ROWS = 2_000
#: rows a model learns from at most (a seeded random sample beyond): past a few tens of
#: thousands of customers the holdout AUC barely moves, the fit time keeps growing
TRAIN_ROWS = 30_000
SMALL_FIT = 50_000
MODEL_NAME = "gradient boosting"
MISSING_LEVEL = "(missing)"
OTHER_LEVEL = "(other)"
#: the customer summary's columns as features, under names that explain themselves
SUMMARY_FEATURES = {
    "x": "repeat_purchase_days",
    "t_x": "first_to_last_purchase_days",
    "T": "first_purchase_to_cutoff_days",
    "m": "repeat_purchase_day_value",
}
_PURCHASE_MODEL_NAMES = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD"}
#: the purchase model's columns, from the orders before the cut-off
MODEL_COLUMNS = ("p_alive", "expected_purchases", "p_no_purchase")
#: catalog features read from the users table as it is today (no history of it is kept)
USERS_CATALOG = tuple(c for c in CATALOG if c in {col.name for col in TABLES["users"].columns})
#: the columns computed from dated rows before the cut-off only (orders, events, sign-up):
#: they cannot know the future, whatever their AUC
HISTORY_COLUMNS = frozenset(
    [*(c for c in CATALOG if c not in USERS_CATALOG), *SUMMARY_FEATURES.values(), *MODEL_COLUMNS]
)


# --------------------------------------------------------------------------- the frame


def _user_columns(store: Store, taken: set[str]) -> pd.DataFrame:
    """The users' static, non-personal columns the feature catalog does not hold already
    (income band, acquisition channel): user_id and those columns, as they are today."""
    cols = [
        c.name
        for c in TABLES["users"].columns
        if not c.pii and c.name not in ("user_id", "created_at") and c.name not in taken
    ]
    if not cols:
        return pd.DataFrame({"user_id": pd.Series(dtype=str)})
    frame = store.query(f"SELECT user_id, {', '.join(cols)} FROM users")
    frame["user_id"] = frame["user_id"].astype(str)
    return frame


def p_no_purchase(model: Any, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
    """The probability of no purchase in the next ``t`` time units, per customer.

    Dead, or alive and silent: alive, λ | x, T ~ Gamma(r + x, α + T), and no one drops out
    without a purchase, so P = 1 − P(alive) + P(alive) · ((α + T) / (α + T + t))^(r + x).

    Parameters
    ----------
    model : BetaGeo or ModifiedBetaGeo
        A fitted purchase model.
    t : float
        The window, in the unit of the summary (days in segmint).
    x, t_x, T : array-like
        Repeat purchases, time of the last purchase and age, per customer.

    Returns
    -------
    ndarray
        One probability per customer.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha = model.params["r"], model.params["alpha"]
    alive = model.p_alive(x, t_x, T)
    return (1.0 - alive) + alive * ((alpha + T) / (alpha + T + float(t))) ** (r + x)


def _summary_columns(
    store: Store, cutoff: datetime, settings: PredictSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The customers at ``cutoff`` (a completed order before it): their summary, P(alive),
    expected purchases and P(no purchase) in the next ``churn_days``, from a purchase
    model fitted on the orders before ``cutoff``; and the model's parameters."""
    summary = customer_summary(store, cutoff)
    if summary.empty:
        raise ConfigError(
            f"no completed order before {cutoff:%Y-%m-%d}: churn needs customers at every "
            "cut-off (pick a later --as-of or a smaller predict.churn_days)"
        )
    last_day = (cutoff - timedelta(microseconds=1)).date()
    if (pd.to_datetime(summary["last_purchase"]).dt.date > last_day).any():
        raise ConfigError(f"the customer summary at {cutoff:%Y-%m-%d} counts later purchases")
    x, t_x, T = (summary[c].to_numpy(float) for c in ("x", "t_x", "T"))
    model = PURCHASE_MODELS[settings.model]().fit(x, t_x, T)
    p_alive = model.p_alive(x, t_x, T)
    days = float(settings.churn_days)
    frame = summary[["user_id", *SUMMARY_FEATURES]].rename(columns=SUMMARY_FEATURES)
    frame["p_alive"] = p_alive
    frame["expected_purchases"] = model.expected_purchases(days, x, t_x, T)
    frame["p_no_purchase"] = p_no_purchase(model, days, x, t_x, T)
    return frame, dict(model.params)


def _created_later(store: Store, customers: pd.Series, cutoff: datetime) -> set[str]:
    """The customers whose user was created (``users.created_at``) at or after ``cutoff``:
    unknown at the cut-off (the features hold no row for them), so not customers then."""
    later = store.query(f"SELECT user_id FROM users WHERE created_at >= {ts_lit(cutoff)}")
    return set(later["user_id"].astype(str)) & set(customers)


def _guarded(columns: Sequence[str], custom: Sequence[CustomFeature]) -> list[str]:
    """The columns the leak guard judges: every one not computed from the dated rows before
    the cut-off (the users' columns as they are today, custom features on ``users``, and
    any column of unknown origin)."""
    dated = HISTORY_COLUMNS | {f.name for f in custom if f.table != "users"}
    return [c for c in columns if c not in ("user_id", LABEL) and c not in dated]


def _labels(store: Store, users: pd.Series, cutoff: datetime, days: int) -> np.ndarray:
    """1 for each user with no completed order in ``[cutoff, cutoff + days)``, else 0."""
    bought = holdout_purchases(store, cutoff, cutoff + timedelta(days=days))
    return (~users.isin(set(bought.loc[bought["purchases"] > 0, "user_id"]))).to_numpy(float)


def churn_frame(
    store: Store,
    cutoff: date | datetime,
    settings: PredictSettings | None = None,
    *,
    custom: Sequence[CustomFeature] = (),
    features: FeatureRun | None = None,
    label: bool = True,
) -> pd.DataFrame:
    """What the churn model sees at one cut-off: one row per customer (a completed order
    before ``cutoff``, and a user created before it or without ``created_at``).

    Parameters
    ----------
    store : Store
        The store.
    cutoff : date or datetime
        Only data strictly before it is used for the columns (a date is its midnight UTC).
    settings : PredictSettings, optional
        ``churn_days`` (the label window) and ``model`` (BG/NBD or MBG/NBD).
    custom : sequence of CustomFeature
        User-defined features computed with the built-ins.
    features : FeatureRun, optional
        Features computed already (e.g. a stored run); refused when computed as of an
        instant after ``cutoff``. Computed as of ``cutoff`` (not stored) by default.
    label : bool
        Add ``churned``: 1 when the customer has no completed order in
        ``[cutoff, cutoff + churn_days)``.

    Returns
    -------
    DataFrame
        ``user_id``, the features (catalog, custom), the users' static non-personal
        columns, the customer summary (``repeat_purchase_days``, ...), ``p_alive``,
        ``expected_purchases`` and ``p_no_purchase`` over the next ``churn_days``, then
        ``churned`` if ``label``. ``attrs["purchase_model"]``: the purchase model fitted
        at the cut-off and its parameters; ``attrs["created_later"]``: how many buyers
        before the cut-off were left out as created at or after it;
        ``attrs["guarded"]``: the columns the leak guard judges (read as they are today).

    Raises
    ------
    ConfigError
        Features as of a later instant (they know the future), or no customer.
    """
    settings = settings or PredictSettings()
    cut = as_utc(cutoff)
    if features is None:
        feats = features_as_of(store, cut, custom)
    else:
        if as_utc(features.as_of) > cut:
            raise ConfigError(
                f"features as of {as_utc(features.as_of):%Y-%m-%d %H:%M} cannot describe "
                f"customers at the cut-off {cut:%Y-%m-%d %H:%M}: they know the future (a "
                "leak). Compute them as of the cut-off (features_as_of) or leave features out"
            )
        feats = features.frame()
    frame, params = _summary_columns(store, cut, settings)
    # a customer whose user was created at or after the cut-off (a guest who signs up
    # later, when coming back) is unknown then: kept, every feature would be missing and
    # say that they come back
    later = _created_later(store, frame["user_id"], cut)
    if later:
        if len(later) == len(frame):
            raise ConfigError(
                f"all {len(frame):,} customers with a completed order before {cut:%Y-%m-%d} "
                "were created (users.created_at) at or after it: no customer is known at "
                "that cut-off (check how users.created_at is mapped, or pick a later --as-of)"
            )
        frame = frame[~frame["user_id"].isin(later)]
    frame = frame.merge(feats, on="user_id", how="left")
    frame = frame.merge(_user_columns(store, set(frame.columns)), on="user_id", how="left")
    if label:
        frame[LABEL] = _labels(store, frame["user_id"], cut, settings.churn_days)
    # one order whichever store (PostgreSQL collates user ids its own way)
    frame = frame.sort_values("user_id", kind="stable").reset_index(drop=True)
    frame.attrs["purchase_model"] = {"model": settings.model, "params": params}
    frame.attrs["created_later"] = len(later)
    frame.attrs["guarded"] = _guarded(list(frame.columns), custom)
    return frame


# --------------------------------------------------------------------------- encoding


def _is_text(s: pd.Series) -> bool:
    return bool(
        pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or isinstance(s.dtype, pd.CategoricalDtype)
    )


def _as_text(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), MISSING_LEVEL).astype(str)


@dataclass
class _Design:
    """How a frame becomes a matrix, learned on a training frame: numbers as they are
    (yes/no as 0/1, NaN kept), text one-hot (top levels + other), the rest dropped."""

    numeric: list[str] = field(default_factory=list)
    levels: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def learn(cls, frame: pd.DataFrame) -> _Design:
        design = cls()
        for c in frame.columns:
            if c in ("user_id", LABEL):
                continue
            s = frame[c]
            if s.isna().all():
                design.dropped[c] = "missing for every customer"
            elif s.nunique(dropna=False) <= 1:
                design.dropped[c] = "the same for every customer"
            elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                design.numeric.append(str(c))
            elif _is_text(s):
                counts = _as_text(s).value_counts()
                design.levels[str(c)] = [str(v) for v in counts.index[:MAX_LEVELS]]
            else:
                design.dropped[c] = f"neither a number nor text ({s.dtype})"
        if not design.numeric and not design.levels:
            raise ConfigError("no usable column to learn churn from: " + str(design.dropped))
        return design

    def sources(self) -> list[str]:
        """The source column of each matrix column, in order."""
        out = list(self.numeric)
        for c, levels in self.levels.items():
            out.extend([c] * (len(levels) + 1))
        return out

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        parts = [
            pd.to_numeric(frame[c].astype("float64"), errors="coerce").to_numpy(float)[:, None]
            for c in self.numeric
        ]
        for c, levels in self.levels.items():
            text = _as_text(frame[c]).to_numpy()
            parts.append(np.column_stack([text == lv for lv in levels]).astype(float))
            parts.append((~np.isin(text, levels)).astype(float)[:, None])
        return np.hstack(parts) if parts else np.empty((len(frame), 0))


# --------------------------------------------------------------------------- statistics


def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def delong(y: np.ndarray, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several scores on the same cases and their DeLong covariance matrix
    (DeLong, DeLong & Clarke-Pearson 1988; the midrank algorithm of Sun & Xu 2014)."""
    y = np.asarray(y, dtype=bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.apply_along_axis(stats.rankdata, 1, pos)
    ty = np.apply_along_axis(stats.rankdata, 1, neg)
    tz = np.apply_along_axis(stats.rankdata, 1, np.hstack([pos, neg]))
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n  # per positive: share of negatives scored below it
    v10 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives scored above it
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, cov


Z95 = 1.959963984540054


def _interval(value: float, var: float) -> tuple[float, float]:
    half = Z95 * float(np.sqrt(max(var, 0.0)))
    return max(0.0, value - half), min(1.0, value + half)


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Customers in ``n_bins`` equal-size groups by predicted risk (ties split by
    position): n, mean predicted, observed churn rate, and the predicted range."""
    order = np.argsort(p, kind="stable")
    rows = []
    for i, idx in enumerate(np.array_split(order, min(n_bins, len(p)))):
        if len(idx) == 0:
            continue
        rows.append(
            {
                "bin": i + 1,
                "n": int(len(idx)),
                "predicted": float(p[idx].mean()),
                "observed": float(y[idx].mean()),
                "low": float(p[idx].min()),
                "high": float(p[idx].max()),
            }
        )
    return rows


def _calibration_error(rows: list[dict[str, Any]]) -> float:
    """The customers-weighted mean gap between predicted and observed over the bins."""
    n = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows) / n)


# --------------------------------------------------------------------------- leak guard


def single_column_auc(frame: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """How well each column alone separates the label: the AUC in its better direction
    (missing values tried at both ends; a text column scored by its levels' churn rate,
    top levels + other as the model sees them)."""
    out: dict[str, float] = {}
    for c in frame.columns:
        if c in ("user_id", LABEL):
            continue
        s = frame[c]
        if s.isna().all() or s.nunique(dropna=False) <= 1:
            continue
        if _is_text(s):
            text = _as_text(s)
            top = text.value_counts().index[:MAX_LEVELS]
            text = text.where(text.isin(top), OTHER_LEVEL)
            rate = pd.Series(y, index=text.index).groupby(text).transform("mean")
            out[str(c)] = auc_score(y, rate.to_numpy(float))
            continue
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            continue
        v = pd.to_numeric(s.astype("float64"), errors="coerce").to_numpy(float)
        best = 0.5
        if np.isfinite(v).any():
            lo, hi = np.nanmin(v) - 1.0, np.nanmax(v) + 1.0
            for fill in (lo, hi):
                a = auc_score(y, np.where(np.isnan(v), fill, v))
                best = max(best, a, 1.0 - a)
        out[str(c)] = best
    return out


def check_leaks(
    frame: pd.DataFrame,
    y: np.ndarray,
    cutoff: datetime,
    *,
    threshold: float,
    columns: Sequence[str] | None = None,
) -> dict[str, float]:
    """Stop when one of ``columns`` (every column by default) alone predicts the label at
    ``cutoff`` with an AUC of at least ``threshold``; return every column's AUC otherwise.

    The run judges only the columns read as they are today (``churn_frame``'s
    ``attrs["guarded"]``): those computed from the dated rows before the cut-off cannot
    know the future, and some are near perfect on honest data.
    """
    aucs = single_column_auc(frame, y)
    judged = set(aucs) if columns is None else set(columns)
    leaks = sorted(
        ((a, c) for c, a in aucs.items() if a >= threshold and c in judged), reverse=True
    )
    if leaks:
        auc, col = leaks[0]
        builtin = col in HISTORY_COLUMNS
        fix = (
            "if it truly is known before the cut-off, raise leak_auc"
            if builtin
            else "remove it (custom feature or users column) or keep in it only what was "
            "known before each cut-off"
        )
        raise ConfigError(
            f"column {col!r} alone predicts churn after {cutoff:%Y-%m-%d} with AUC "
            f"{auc:.3f} (at least {threshold}): it looks like a leak, it knows the future; "
            f"{fix}"
        )
    return aucs


# --------------------------------------------------------------------------- the model


#: small trees, slow learning, a leaf at least 40 customers: a few thousand customers
#: and a few dozen columns overfit scikit-learn's defaults (docs/churn.md, "the model")
MODEL_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 200,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def _fit(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(random_state=seed, **MODEL_PARAMS)
    # small fits: one thread (OpenMP start-up and contention cost more than they save)
    with threadpool_limits(1 if len(y) < SMALL_FIT else None):
        model.fit(X, y.astype(int))
    return model


def _predict(model: Any, X: np.ndarray) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if len(X) < SMALL_FIT else None):
        return np.asarray(model.predict_proba(X)[:, 1], dtype=float)


def _importances(
    model: Any, X: np.ndarray, y: np.ndarray, design: _Design, seed: int, top: int = 10
) -> list[dict[str, Any]]:
    """Permutation importance on the holdout, per source column (its one-hot levels
    shuffled together): the drop in AUC after one shuffle (on at most
    ``IMPORTANCE_ROWS`` holdout rows; a ranking, not a precise figure)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    if len(rows) > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(rows, IMPORTANCE_ROWS, replace=False))
    Xh, yh = X[rows], y[rows]
    base = auc_score(yh, _predict(model, Xh))
    groups: dict[str, list[int]] = {}
    for i, src in enumerate(design.sources()):
        groups.setdefault(src, []).append(i)
    out: list[dict[str, Any]] = []
    for col, idx in groups.items():
        shuffled = Xh.copy()
        shuffled[:, idx] = Xh[rng.permutation(len(Xh))][:, idx]
        out.append(
            {"feature": col, "auc_drop": float(base - auc_score(yh, _predict(model, shuffled)))}
        )
    out.sort(key=lambda r: -float(r["auc_drop"]))
    return out[:top]


# --------------------------------------------------------------------------- the run


@dataclass
class _Cutoffs:
    train: datetime
    holdout: datetime
    as_of: datetime

    def to_dict(self, days: int) -> dict[str, Any]:
        return {
            "train": self.train.isoformat(),
            "train_labels": [self.train.isoformat(), self.holdout.isoformat()],
            "holdout": self.holdout.isoformat(),
            "holdout_labels": [self.holdout.isoformat(), self.as_of.isoformat()],
            "scored": self.as_of.isoformat(),
            "churn_days": days,
        }


def _cutoffs(store: Store, as_of: datetime, days: int) -> _Cutoffs:
    """T1 = as_of − 2N and T2 = as_of − N; refused when the orders start after T1."""
    first = store.scalar(f"SELECT min(ts) FROM ({completed_orders(before=as_of)}) AS o")
    t1, t2 = as_of - timedelta(days=2 * days), as_of - timedelta(days=days)
    if first is None or as_utc(pd.Timestamp(first).to_pydatetime()) > t1:
        since = "no completed order" if first is None else f"orders start {first:%Y-%m-%d}"
        raise ConfigError(
            f"churn needs {2 * days} days of orders before the as-of date {as_of:%Y-%m-%d} "
            f"(train at {t1:%Y-%m-%d}, check at {t2:%Y-%m-%d}) but {since}: set a smaller "
            "predict.churn_days in segmint.yaml, a later --as-of, or load earlier orders"
        )
    return _Cutoffs(t1, t2, as_of)


def _check_observed(store: Store, cuts: _Cutoffs) -> None:
    """Refuse an as-of instant the data does not reach: the check cut-off's labels run to
    as_of, and days without data would count as days without a purchase (every churn rate
    and risk inflated). Two ways: no order at all in the check window (the orders end
    before it, however fresh the events), or an as-of after the data's end (midnight after
    the newest order or event)."""
    days = (cuts.as_of - cuts.holdout).days
    last = store.scalar(f"SELECT max(ts) FROM ({completed_orders(before=cuts.as_of)}) AS o")
    if as_utc(pd.Timestamp(last).to_pydatetime()) < cuts.holdout:
        raise ConfigError(
            f"the orders end on {pd.Timestamp(last):%Y-%m-%d}, more than {days} days before the "
            f"as-of date {cuts.as_of:%Y-%m-%d}: nobody can be seen buying in the {days} days "
            "before it, so churn cannot be learnt there; use --as-of latest (the day after the "
            "newest order or event), an earlier date, or load newer orders"
        )
    end = default_as_of(store)
    if cuts.as_of > end:
        raise ConfigError(
            f"churn as of {cuts.as_of:%Y-%m-%d}: the data ends {end - timedelta(days=1):%Y-%m-%d} "
            f"(the newest order or event), so the labels of the check cut-off "
            f"({cuts.holdout:%Y-%m-%d} to {cuts.as_of:%Y-%m-%d}) would count the days without "
            f"data as days without a purchase; pick an as-of date up to {end:%Y-%m-%d} "
            "(--as-of latest) or load the newer orders"
        )


def _check_classes(y: np.ndarray, where: str) -> None:
    churned = int(y.sum())
    rare = min(churned, len(y) - churned)
    if rare < MIN_CLASS:
        raise ConfigError(
            f"{where}: {churned:,} of {len(y):,} customers churned; at least {MIN_CLASS} churners "
            "and as many who stayed are needed (change predict.churn_days or the --as-of date)"
        )


def _evaluate(
    y: np.ndarray, scores: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, float], dict[str, list[dict[str, Any]]]]:
    """AUC with DeLong 95 % intervals (and of the model's lead over each baseline, paired),
    Brier scores and calibration tables of each score (the model first) on the holdout."""
    names = list(scores)
    aucs, cov = delong(y, [scores[k] for k in names])
    auc: dict[str, Any] = {"interval": "95 %, DeLong"}
    for i, k in enumerate(names):
        auc[k] = float(aucs[i])
        auc[f"{k}_low"], auc[f"{k}_high"] = _interval(float(aucs[i]), float(cov[i, i]))
    for i, k in enumerate(names[1:], start=1):
        lead = float(aucs[0] - aucs[i])
        se = float(np.sqrt(max(cov[0, 0] + cov[i, i] - 2 * cov[0, i], 0.0)))
        auc[f"model_minus_{k}"] = lead
        auc[f"model_minus_{k}_low"] = lead - Z95 * se
        auc[f"model_minus_{k}_high"] = lead + Z95 * se
    brier = {k: float(np.mean((scores[k] - y) ** 2)) for k in names}
    calibration = {k: calibration_table(y, scores[k]) for k in names}
    return auc, brier, calibration


def _auc_table(
    auc: dict[str, Any], brier: dict[str, float], data: str, settings: PredictSettings
) -> list[dict[str, Any]]:
    name = _PURCHASE_MODEL_NAMES.get(settings.model, settings.model)
    labels = {
        "model": MODEL_NAME,
        "baseline_p_alive": f"{name} 1 − P(alive)",
        "baseline_no_purchase": f"{name} P(no purchase in {settings.churn_days} days)",
    }
    return [
        {
            "data": data,
            "model": label,
            "auc": auc[k],
            "low": auc[f"{k}_low"],
            "high": auc[f"{k}_high"],
            "brier": brier[k],
        }
        for k, label in labels.items()
    ]


@dataclass
class _Fitted:
    design: _Design
    model: Any


def _guard(frame: pd.DataFrame, cutoff: datetime, leak_auc: float | None) -> dict[str, float]:
    """Enough churners and stayers at ``cutoff``, and no column read as it is today that
    looks like a leak; every column's AUC alone (empty with the guard off)."""
    y = frame[LABEL].to_numpy(float)
    _check_classes(y, f"cut-off {cutoff:%Y-%m-%d}")
    if not leak_auc:
        return {}
    return check_leaks(frame, y, cutoff, threshold=leak_auc, columns=frame.attrs["guarded"])


def _train(frame: pd.DataFrame, seed: int) -> _Fitted:
    """The design and the model learned on one cut-off's frame."""
    if len(frame) > TRAIN_ROWS:
        frame = frame.sample(TRAIN_ROWS, random_state=seed).sort_index()
    design = _Design.learn(frame)
    return _Fitted(design, _fit(design.matrix(frame), frame[LABEL].to_numpy(float), seed))


def _holdout_check(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    cuts: _Cutoffs,
    settings: PredictSettings,
    single_auc: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train at T1, judge at T2 beside the baselines: the run's metrics and details."""
    first = _train(train, settings.seed)
    y = holdout[LABEL].to_numpy(float)
    X = first.design.matrix(holdout)
    scores = {
        "model": _predict(first.model, X),
        "baseline_p_alive": 1.0 - holdout["p_alive"].to_numpy(float),
        "baseline_no_purchase": holdout["p_no_purchase"].to_numpy(float),
    }
    auc, brier, calibration = _evaluate(y, scores)
    days = settings.churn_days
    metrics = {
        "auc": auc,
        "brier": brier,
        "calibration_error": {k: _calibration_error(v) for k, v in calibration.items()},
        "base_rate": float(y.mean()),
        "base_rate_train": float(train[LABEL].mean()),
        "n_train": min(len(train), TRAIN_ROWS),
        "n_train_available": len(train),
        "n_holdout": len(holdout),
        "cutoffs": cuts.to_dict(days),
        "importances": _importances(first.model, X, y, first.design, settings.seed),
        "max_single_column_auc": _max_single(single_auc),
    }
    data = f"holdout {cuts.holdout:%Y-%m-%d} + {days} days, {len(y):,} customers"
    details = {
        "calibration": calibration["model"],
        "baseline_calibration": calibration["baseline_p_alive"],
        "baseline_no_purchase_calibration": calibration["baseline_no_purchase"],
        "baseline_note": (
            f"1 − P(alive) is not a probability of churning within {days} days (a customer "
            "alive may still not buy; BG/NBD holds every one-time buyer alive), so its "
            "calibration is shown for comparison only"
        ),
        "auc_table": _auc_table(auc, brier, data, settings),
        "baseline_fit": holdout.attrs.get("purchase_model"),
        "dropped": first.design.dropped,
    }
    return metrics, details


def _max_single(aucs: dict[str, float]) -> dict[str, Any] | None:
    if not aucs:
        return None
    col = max(aucs, key=lambda c: aucs[c])
    return {"column": col, "auc": aucs[col]}


def _params(
    settings: PredictSettings, custom: Sequence[CustomFeature], leak_auc: float | None
) -> dict[str, Any]:
    return {
        **settings.model_dump(mode="json"),
        "classifier": {"name": "HistGradientBoostingClassifier", **MODEL_PARAMS},
        "custom": [f.name for f in custom],
        "leak_auc": leak_auc,
    }


def _scoring_metrics(risk: np.ndarray, **frames: pd.DataFrame) -> dict[str, Any]:
    """What the scoring adds to the run's metrics: customers scored, the mean risk, and
    the buyers each cut-off left out as created (users.created_at) at or after it."""
    return {
        "n_scored": len(risk),
        "churn_risk_mean": float(risk.mean()),
        "created_later": {k: int(f.attrs["created_later"]) for k, f in frames.items()},
    }


def predict_churn(
    store: Store,
    settings: PredictSettings | None = None,
    *,
    as_of: date | datetime | None = None,
    custom: Sequence[CustomFeature] = (),
    save: bool = True,
    leak_auc: float | None = LEAK_AUC,
) -> PredictionRun:
    """Train a churn model on earlier cut-offs, check it on a later one, score every
    customer at ``as_of``; stored as a ``churn`` run (``churn_risk`` per customer).

    Parameters
    ----------
    store : Store
        The store.
    settings : PredictSettings, optional
        ``churn_days`` (N, the label window), ``model`` (the baseline's purchase model:
        BG/NBD or MBG/NBD) and ``seed``.
    as_of : date or datetime, optional
        The scoring instant; the day after the newest activity by default, and never
        after it (the labels of the check cut-off run to ``as_of``).
    custom : sequence of CustomFeature
        User-defined features added to the built-in ones.
    save : bool
        Store the run.
    leak_auc : float or None
        A column read as it is today (the users' columns, custom features on ``users``)
        alone predicting a cut-off's label with at least this AUC (either way) stops the
        fit as a leak; None turns the guard off.

    Returns
    -------
    PredictionRun
        Kind ``churn``; scores ``user_id``, ``churn_risk`` for every customer (a completed
        order before ``as_of``, created before it). ``metrics``: ``auc`` (the model and the
        baselines with 95 % DeLong intervals, the model's lead over each), ``brier``,
        ``calibration_error``, ``base_rate``, ``n_train``, ``n_holdout``, ``n_scored``,
        ``created_later``, ``cutoffs``, ``importances``. ``details``: ``calibration`` and
        ``baseline_calibration`` (10 bins), ``auc_table``.

    Raises
    ------
    ConfigError
        Less than ``2 * churn_days`` of order history before ``as_of``, an ``as_of``
        after the data's end, too few churners or stayers at a cut-off, or a column that
        looks like a leak.
    """
    settings = settings or PredictSettings()
    cuts = _cutoffs(store, _default_as_of(store, as_of), settings.churn_days)
    _check_observed(store, cuts)
    train = churn_frame(store, cuts.train, settings, custom=custom)
    holdout = churn_frame(store, cuts.holdout, settings, custom=custom)
    # the guard first: a leak stops the run before anything is fitted
    single = _guard(train, cuts.train, leak_auc)
    _guard(holdout, cuts.holdout, leak_auc)
    metrics, details = _holdout_check(train, holdout, cuts, settings, single)
    # refit on the holdout cut-off (labels known up to as_of) and score at as_of
    final = _train(holdout, settings.seed)
    now = churn_frame(store, cuts.as_of, settings, custom=custom, label=False)
    risk = _predict(final.model, final.design.matrix(now))
    metrics.update(_scoring_metrics(risk, train=train, holdout=holdout, scored=now))
    run = PredictionRun(
        run_id=new_run_id("churn"),
        kind="churn",
        created_at=datetime.now(UTC),
        as_of=cuts.as_of,
        scores=pd.DataFrame({"user_id": now["user_id"].astype(str), "churn_risk": risk}),
        params=_params(settings, custom, leak_auc),
        metrics=metrics,
        details=details,
    )
    if save:
        save_run(store, run)
    auc = metrics["auc"]
    log.info(
        "churn: %d customers scored; holdout AUC %.3f, 1 - P(alive) %.3f",
        *(len(now), auc["model"], auc["baseline_p_alive"]),
    )
    return run
