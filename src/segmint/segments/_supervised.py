"""Supervised (target-driven) segmentation: a decision tree whose leaves are segments, and
propensity groups (deciles of a forest's or boosting model's predicted probability).

Both split the users on a *target*: a feature column (a yes/no column, or a number with
``above: X``), a campaign's response (converted within ``window_days`` after exposure,
among the campaign's treated users) or conversion within N days after the as-of date.

The model is fitted on a training share of the users with a known target and checked on
the rest (holdout AUC); every user in the feature table is then assigned, including
users without a target (a campaign's control arm, users never assigned).

    segmentations:
      buyers_tree:
        type: tree
        target: {converted_within_days: 30}
        max_depth: 3
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from segmint._labels import feature_label
from segmint.config import PropensitySegmentation, SupervisedTarget, TreeSegmentation
from segmint.errors import ConfigError
from segmint.segments._explain import _format_number, round_threshold
from segmint.store import Store, completed, completed_orders
from segmint.store import lit as _quote

log = logging.getLogger(__name__)

#: Fewest users in the rarer class of a yes/no target (each side of a split needs some).
MIN_CLASS = 10
MISSING_LEVEL = "(missing)"
OTHER_LEVEL = "(other)"
#: Holdout rows used for permutation importances (the ranking settles well before this).
IMPORTANCE_ROWS = 5000
#: Below this many training users a model is fitted on one thread.
SMALL_FIT = 50_000


# --------------------------------------------------------------------------- target


@dataclass
class Target:
    """The target of every user in the feature table (NaN: unknown, not used to fit)."""

    y: pd.Series
    binary: bool
    description: str
    notes: list[str] = field(default_factory=list)


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _column_target(name: str, t: SupervisedTarget, features: pd.DataFrame) -> Target:
    col = str(t.column)
    if col not in features.columns or col == "user_id":
        known = [c for c in features.columns if c != "user_id"]
        raise ConfigError(
            f"segmentation {name!r}: unknown target column {col!r}{_did_you_mean(col, known)} "
            f"(features: {', '.join(known)})"
        )
    raw = features[col]
    if pd.api.types.is_bool_dtype(raw) or raw.dtype == object and _all_bool(raw):
        y = raw.map({True: 1.0, False: 0.0}).astype("float64")
        return Target(y, True, col)
    if not pd.api.types.is_numeric_dtype(raw):
        raise ConfigError(
            f"segmentation {name!r}: target column {col!r} holds text; a target is a yes/no "
            "column or a number (add `above: X` to make a number yes/no)"
        )
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    if t.above is not None:
        y = (values > t.above).astype("float64").where(values.notna())
        return Target(y, True, f"{col} > {_format_number(t.above)}")
    seen = set(values.dropna().unique())
    return Target(values, seen <= {0.0, 1.0}, col)


def _all_bool(s: pd.Series) -> bool:
    return bool(s.dropna().map(lambda v: isinstance(v, bool | np.bool_)).all())


def _as_datetime(as_of: datetime | date | None) -> datetime:
    if as_of is None:
        raise ConfigError(
            "converted_within_days needs the as-of date of the features; run the "
            "segmentation through `segmint segment --as-of YYYY-MM-DD`"
        )
    if isinstance(as_of, datetime):
        return as_of
    return datetime(as_of.year, as_of.month, as_of.day)


def _window_target(
    store: Store, t: SupervisedTarget, features: pd.DataFrame, as_of: datetime | date | None
) -> Target:
    days = int(t.converted_within_days or 0)
    start = _as_datetime(as_of)
    end = start + timedelta(days=days)
    buyers = store.query(completed_orders(since=start, before=end, columns="DISTINCT user_id"))
    bought = set(buyers["user_id"].astype(str))
    y = features["user_id"].astype(str).isin(bought).astype("float64")
    y.index = features.index
    newest = store.scalar(completed_orders(columns="max(ts)"))
    notes = []
    newest_ts = pd.Timestamp(newest) if newest is not None else None
    if newest_ts is not None and newest_ts.tzinfo is None:
        newest_ts = newest_ts.tz_localize("UTC")
    end_ts = pd.Timestamp(end).tz_localize("UTC") if end.tzinfo is None else pd.Timestamp(end)
    if newest_ts is None or newest_ts < end_ts:
        seen = "no orders" if newest_ts is None else f"orders up to {newest_ts:%Y-%m-%d}"
        notes.append(
            f"the {days}-day window after {start:%Y-%m-%d} is not complete (the store has "
            f"{seen}); set the as-of date at least {days} days before the newest order"
        )
    return Target(y, True, f"converted within {days} days after {start:%Y-%m-%d}", notes)


#: The control arm's label when a campaign run's params name none (as in experiments).
DEFAULT_CONTROL = "control"


def _normalize_arm(label: Any) -> str:
    """An arm label trimmed, inner whitespace collapsed (as experiments compare them)."""
    return " ".join(str(label).split())


def _campaign_control(store: Store, campaign: str) -> str:
    """The control arm of a campaign: the label its runs' params name (``control`` unless
    they say otherwise). The same rule as the experiments layer, read here from the store's
    ``campaign_runs`` so segments need not import a layer above them."""
    runs = store.query(
        "SELECT params FROM campaign_runs WHERE campaign = ? ORDER BY created_at, run_id",
        [campaign],
    )
    controls: list[str] = []
    for params in runs["params"]:
        parsed = json.loads(params or "{}") if isinstance(params, str) or params is None else params
        controls.append(_normalize_arm(parsed.get("control") or DEFAULT_CONTROL))
    if not controls:
        return DEFAULT_CONTROL
    if len(set(controls)) > 1:
        raise ConfigError(
            f"campaign {campaign!r}: runs name different control arms ({', '.join(set(controls))})"
        )
    return controls[-1]


def _campaign_outcomes(store: Store, campaign: str, window_days: int) -> pd.DataFrame:
    """Every user assigned in ``campaign``: arm, run, exposure time ``t0`` and whether
    they bought within ``window_days`` after it (the campaign evaluation's outcome)."""
    window = f"INTERVAL '{int(window_days)} days'"
    out = store.query(
        "WITH u AS (SELECT a.user_id, a.arm, a.run_id, "
        "CASE WHEN r.status = 'imported' THEN a.assigned_at "
        "ELSE coalesce(d.first_sent, r.created_at) END AS t0 "
        "FROM campaign_assignments a JOIN campaign_runs r ON r.run_id = a.run_id "
        "LEFT JOIN (SELECT run_id, min(sent_at) AS first_sent FROM deliveries "
        "WHERE campaign = ? AND sent_at IS NOT NULL GROUP BY run_id) d "
        "ON d.run_id = a.run_id WHERE a.campaign = ?) "
        "SELECT u.user_id, u.arm, u.run_id, u.t0, count(o.order_id) AS orders "
        f"FROM u LEFT JOIN orders o ON o.user_id = u.user_id AND {completed('o')} "
        f"AND o.ts >= u.t0 AND o.ts < u.t0 + {window} "
        "GROUP BY u.user_id, u.arm, u.run_id, u.t0",
        [campaign, campaign],
    )
    out["orders"] = pd.to_numeric(out["orders"]).fillna(0).astype("int64")
    out["t0"] = pd.to_datetime(out["t0"], utc=True)
    out["user_id"] = out["user_id"].astype(str)
    out["converted"] = out["orders"] > 0
    return out.sort_values("user_id", kind="stable").reset_index(drop=True)


def _campaign_target(
    store: Store, t: SupervisedTarget, features: pd.DataFrame, as_of: datetime | date | None
) -> Target:
    campaign = str(t.campaign)
    outcomes = _campaign_outcomes(store, campaign, t.window_days)
    if outcomes.empty:
        known = store.query("SELECT DISTINCT campaign FROM campaign_assignments ORDER BY 1")
        names = [str(c) for c in known["campaign"]]
        raise ConfigError(
            f"campaign {campaign!r} has no assignments{_did_you_mean(campaign, names)}: import "
            "a past campaign with `segmint campaign import` or run one first "
            f"(campaigns with assignments: {', '.join(names) or 'none'})"
        )
    control = _campaign_control(store, campaign)
    treated = outcomes[outcomes["arm"].astype(str) != control]
    if treated.empty:
        raise ConfigError(
            f"campaign {campaign!r}: all {len(outcomes)} assigned users are in the control arm "
            f"{control!r}; a response target needs treated users (is the control label right?)"
        )
    converted = treated.set_index("user_id")["converted"].astype("float64")
    y = features["user_id"].astype(str).map(converted).astype("float64")
    y.index = features.index
    notes = []
    first_exposure = pd.to_datetime(treated["t0"], utc=True).min()
    if as_of is not None:
        cut = pd.Timestamp(as_of)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut
        if cut > first_exposure:
            notes.append(
                f"features are as of {cut:%Y-%m-%d}, after the first exposure "
                f"({first_exposure:%Y-%m-%d}): they may already reflect the response; run "
                f"with --as-of {first_exposure:%Y-%m-%d} for an honest split"
            )
    arms = ", ".join(sorted(set(treated["arm"].astype(str))))
    return Target(
        y,
        True,
        f"converted within {t.window_days} days of {campaign!r} (treated arms: {arms})",
        notes,
    )


def build_target(
    store: Store,
    name: str,
    t: SupervisedTarget,
    features: pd.DataFrame,
    as_of: datetime | date | None,
) -> Target:
    """The target of every user in ``features`` (one row per user, a ``user_id`` column)."""
    if t.column is not None:
        return _column_target(name, t, features)
    if t.campaign is not None:
        return _campaign_target(store, t, features, as_of)
    return _window_target(store, t, features, as_of)


def check_target(name: str, target: Target, *, need_binary: bool = False) -> None:
    """Refuse a target nothing can be learned from, with what to do instead."""
    y = target.y.dropna()
    what = target.description
    if y.empty:
        raise ConfigError(f"segmentation {name!r}: no user has a value for the target {what}")
    if y.nunique() == 1:
        value = _format_number(float(y.iloc[0]))
        raise ConfigError(
            f"segmentation {name!r}: target {what} is the same for every user (all {value}): "
            "nothing to split on" + (f" ({target.notes[0]})" if target.notes else "")
        )
    if need_binary and not target.binary:
        raise ConfigError(
            f"segmentation {name!r}: a propensity model needs a yes/no target; {what} is a "
            "number: add `above: X` to the target"
        )
    if target.binary:
        positives = int(y.sum())
        rare = min(positives, len(y) - positives)
        if rare < MIN_CLASS:
            side = "positives" if positives <= len(y) - positives else "negatives"
            raise ConfigError(
                f"segmentation {name!r}: target {what} has only {rare} {side} among "
                f"{len(y):,} users: too few to learn from (need at least {MIN_CLASS})"
            )


# --------------------------------------------------------------------------- design matrix


@dataclass
class Design:
    """Encoded features: ``X`` (float, NaN allowed) and where each column came from."""

    X: pd.DataFrame
    source: dict[str, str]  # encoded column -> feature
    level: dict[str, str]  # one-hot column -> level
    levels: dict[str, list[str]]  # categorical feature -> its one-hot levels (no other)
    integer: set[str]  # numeric columns holding whole numbers only
    dropped: dict[str, str]  # feature -> why it was left out


def _is_categorical(s: pd.Series) -> bool:
    return bool(
        pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or isinstance(s.dtype, pd.CategoricalDtype)
    )


def default_features(features: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Every numeric, yes/no and text column except ``user_id`` and ``exclude``."""
    out = []
    for c in features.columns:
        if c == "user_id" or c in exclude:
            continue
        s = features[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) or _is_categorical(s):
            out.append(str(c))
    return out


def design_matrix(
    name: str,
    features: pd.DataFrame,
    wanted: list[str] | None,
    *,
    exclude: set[str],
    max_levels: int,
) -> Design:
    """Numbers as they are, yes/no as 0/1, text one-hot (top ``max_levels`` + other);
    all-missing and constant columns dropped."""
    if wanted is None:
        wanted = default_features(features, exclude)
    else:
        known = [c for c in features.columns if c != "user_id"]
        for c in wanted:
            if c not in features.columns or c == "user_id":
                raise ConfigError(
                    f"segmentation {name!r}: unknown feature {c!r}{_did_you_mean(c, known)} "
                    f"(features: {', '.join(known)})"
                )
            if c in exclude:
                raise ConfigError(
                    f"segmentation {name!r}: {c!r} is the target; remove it from features"
                )
    columns: dict[str, pd.Series] = {}
    source: dict[str, str] = {}
    level: dict[str, str] = {}
    levels: dict[str, list[str]] = {}
    integer: set[str] = set()
    dropped: dict[str, str] = {}
    for c in wanted:
        s = features[c]
        if s.isna().all():
            dropped[c] = "missing for every user"
            continue
        if s.nunique(dropna=False) <= 1:
            dropped[c] = "the same for every user"
            continue
        if pd.api.types.is_bool_dtype(s) or (s.dtype == object and _all_bool(s)):
            s = s.map({True: 1.0, False: 0.0})
        if pd.api.types.is_numeric_dtype(s):
            v = pd.to_numeric(s, errors="coerce").astype("float64")
            columns[c], source[c] = v, c
            finite = v.dropna()
            if bool(np.all(np.mod(finite.to_numpy(), 1.0) == 0)):
                integer.add(c)
            continue
        if not _is_categorical(s):
            dropped[c] = f"neither a number nor text ({s.dtype})"
            continue
        text = s.astype("object").where(s.notna(), MISSING_LEVEL).astype(str)
        counts = text.value_counts()
        top = [str(v) for v in counts.index[:max_levels]]
        if len(counts) > max_levels:
            text = text.where(text.isin(top), OTHER_LEVEL)
            top.append(OTHER_LEVEL)
        levels[c] = [lv for lv in top if lv != OTHER_LEVEL]
        for lv in top:
            col = f"{c}={lv}"
            columns[col] = (text == lv).astype("float64")
            source[col], level[col] = c, lv
    if not columns:
        reasons = "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "none given"
        raise ConfigError(f"segmentation {name!r}: no usable feature to split on ({reasons})")
    X = pd.DataFrame(columns, index=features.index)
    return Design(X, source, level, levels, integer, dropped)


# --------------------------------------------------------------------------- rules


@dataclass
class _Bounds:
    lower: float | None = None  # x > lower
    upper: float | None = None  # x <= upper
    missing: bool = True  # missing values end up here on every condition


@dataclass
class Rule:
    """One leaf's conditions, in words and as a SQL condition over the feature columns."""

    words: str
    sql: str


def _num(v: float) -> str:
    return _format_number(v)


def leaf_rules(
    tree: Any, design: Design, train_X: np.ndarray, all_X: np.ndarray
) -> dict[int, Rule]:
    """Each leaf node of a fitted sklearn tree -> its rule (thresholds rounded to the
    roundest number that selects the same training users). A condition says ``or
    missing`` only when some user in the leaf has that feature missing."""
    st = tree.tree_
    names = list(design.X.columns)
    left, right = st.children_left, st.children_right
    missing_left = getattr(st, "missing_go_to_left", np.zeros(len(left), dtype=bool))
    uniques = [np.unique(col[~np.isnan(col)]) for col in train_X.T]
    leaf_of = tree.apply(all_X)
    out: dict[int, Rule] = {}

    def walk(node: int, path: list[tuple[int, bool, float, bool]]) -> None:
        if left[node] == -1:
            has_missing = np.isnan(all_X[leaf_of == node]).any(axis=0)
            out[node] = _rule(path, names, design, uniques, has_missing)
            return
        f, thr = int(st.feature[node]), float(st.threshold[node])
        goes_left = bool(missing_left[node])
        walk(int(left[node]), [*path, (f, True, thr, goes_left)])
        walk(int(right[node]), [*path, (f, False, thr, not goes_left)])

    walk(0, [])
    return out


def _rule(
    path: list[tuple[int, bool, float, bool]],
    names: list[str],
    design: Design,
    uniques: list[np.ndarray],
    has_missing: np.ndarray,
) -> Rule:
    bounds: dict[int, _Bounds] = {}
    for f, is_upper, thr, missing_here in path:
        b = bounds.setdefault(f, _Bounds())
        if is_upper:
            b.upper = thr if b.upper is None else min(b.upper, thr)
        else:
            b.lower = thr if b.lower is None else max(b.lower, thr)
        b.missing = b.missing and missing_here

    def nice(f: int, thr: float) -> float:
        values = uniques[f]
        below, above = values[values <= thr], values[values > thr]
        if below.size and above.size:
            return round_threshold(float(below[-1]), float(above[0]))
        return thr

    words: list[str] = []
    sql: list[str] = []
    categorical: dict[str, tuple[list[str], list[str]]] = {}  # feature -> (is, is not)
    for f, b in bounds.items():
        col = names[f]
        feat = design.source[col]
        if col in design.level:
            eq, ne = categorical.setdefault(feat, ([], []))
            (eq if b.lower is not None else ne).append(design.level[col])
            continue
        lo = None if b.lower is None else nice(f, b.lower)
        hi = None if b.upper is None else nice(f, b.upper)
        w, q = _numeric_condition(feat, lo, hi, col in design.integer, uniques[f])
        if has_missing[f] and b.missing:
            w, q = f"({w} or missing)", f"({q} OR {feat} IS NULL)"
        words.append(w)
        sql.append(q)
    for feat, (eq, ne) in categorical.items():
        label = feature_label(feat)
        if eq:
            words.append(f"{label} = {eq[0]}")
            sql.append(_level_sql(feat, eq[0], design.levels[feat], equal=True))
        else:
            shown = ", ".join(ne)
            words.append(f"{label} ≠ {shown}" if len(ne) == 1 else f"{label} not in {shown}")
            sql.append(
                " AND ".join(_level_sql(feat, v, design.levels[feat], equal=False) for v in ne)
            )
    if not words:
        return Rule("all users", "TRUE")
    return Rule(" and ".join(words), " AND ".join(sql))


def _level_sql(feat: str, value: str, levels: list[str], *, equal: bool) -> str:
    if value == MISSING_LEVEL:
        return f"{feat} IS {'' if equal else 'NOT '}NULL"
    if value == OTHER_LEVEL:
        listed = ", ".join(_quote(v) for v in levels if v != MISSING_LEVEL)
        return f"{feat} {'NOT IN' if equal else 'IN'} ({listed})"
    if equal:
        return f"{feat} = {_quote(value)}"
    return f"({feat} IS NULL OR {feat} <> {_quote(value)})"


def _numeric_condition(
    feat: str, lo: float | None, hi: float | None, integer: bool, values: np.ndarray
) -> tuple[str, str]:
    """Words and SQL for ``lo < x <= hi`` (either end open); whole-number columns say
    ``x ≥ 3`` rather than ``x > 2.5``."""
    label = feature_label(feat)
    vmin, vmax = float(values.min()), float(values.max())
    if integer:
        a = None if lo is None else math.floor(lo) + 1  # x >= a
        b = None if hi is None else math.floor(hi)  # x <= b
        if a is not None and b is not None:
            if a == b:
                return f"{label} = {a}", f"{feat} = {a}"
            return f"{label} {a}–{b}", f"{feat} BETWEEN {a} AND {b}"
        if a is not None:
            if a >= vmax:
                return f"{label} = {_num(vmax)}", f"{feat} = {_num(vmax)}"
            return f"{label} ≥ {a}", f"{feat} >= {a}"
        if b is not None:
            if b <= vmin:
                return f"{label} = {_num(vmin)}", f"{feat} = {_num(vmin)}"
            return f"{label} ≤ {b}", f"{feat} <= {b}"
    if lo is not None and hi is not None:
        return (
            f"{label} > {_num(lo)} and ≤ {_num(hi)}",
            f"{feat} > {_num(lo)} AND {feat} <= {_num(hi)}",
        )
    if lo is not None:
        return f"{label} > {_num(lo)}", f"{feat} > {_num(lo)}"
    assert hi is not None
    return f"{label} ≤ {_num(hi)}", f"{feat} <= {_num(hi)}"


def column_words(col: str, design: Design) -> str:
    """An encoded column in words: ``country = DE`` or ``orders in the last 90 days``."""
    feat = design.source.get(col, col)
    if col in design.level:
        return f"{feature_label(feat)} = {design.level[col]}"
    return feature_label(feat)


# --------------------------------------------------------------------------- shared steps


def _split(
    labeled: np.ndarray, y: np.ndarray, binary: bool, holdout: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        labeled, test_size=holdout, random_state=seed, stratify=y if binary else None
    )
    return np.sort(train), np.sort(test)


def _wilson(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% Wilson score interval of each proportion ``successes / n`` (NaN where n is 0),
    computed as the experiments layer does (equal to statsmodels' ``proportion_confint(...,
    method="wilson")``)."""
    from scipy.stats import norm

    z = float(norm.isf(0.025))
    x, m = np.broadcast_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / m
        z2 = z * z
        denom = 1.0 + z2 / m
        center = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def _interval(stats: pd.DataFrame, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    if binary:
        lo, hi = _wilson(stats["positives"].to_numpy(), stats["n_target"].to_numpy())
        return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    from scipy.stats import t as student_t

    n = stats["n_target"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = student_t.ppf(0.975, np.where(n > 1, n - 1, np.nan)) * stats["sd"] / np.sqrt(n)
    return (stats["rate"] - half).to_numpy(float), (stats["rate"] + half).to_numpy(float)


def group_stats(
    groups: pd.Series, y: pd.Series, holdout_mask: pd.Series, binary: bool
) -> pd.DataFrame:
    """Per group: users, users with a target, rate (or mean), interval, holdout rate."""
    frame = pd.DataFrame({"g": groups, "y": y, "h": holdout_mask})
    g = frame.groupby("g", sort=False)
    stats = pd.DataFrame(
        {
            "n_users": g.size(),
            "n_target": g["y"].count(),
            "positives": g["y"].sum(),
            "rate": g["y"].mean(),
            "sd": g["y"].std(ddof=1),
            "holdout_rate": frame[frame["h"]].groupby("g", sort=False)["y"].mean(),
            "n_holdout": frame[frame["h"]].groupby("g", sort=False)["y"].count(),
        }
    )
    stats["n_holdout"] = stats["n_holdout"].fillna(0).astype("int64")
    stats["rate_lo"], stats["rate_hi"] = _interval(stats, binary)
    return stats.drop(columns="sd")


def _clean(v: Any) -> Any:
    """JSON-ready: NaN/inf as None, numpy scalars as Python ones, rounded floats."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 6)
    return v


def _table(stats: pd.DataFrame, base: float, total: int) -> list[dict[str, Any]]:
    rows = []
    for seg, r in stats.iterrows():
        rows.append(
            {
                "segment": str(seg),
                "n_users": int(r["n_users"]),
                "share": float(r["n_users"]) / total if total else None,
                "n_target": int(r["n_target"]),
                "rate": float(r["rate"]),
                "rate_lo": float(r["rate_lo"]),
                "rate_hi": float(r["rate_hi"]),
                "lift": float(r["rate"]) / base if base else None,
                "holdout_rate": float(r["holdout_rate"]),
                "n_holdout": int(r["n_holdout"]),
            }
        )
    return rows


#: Users' attributes that are not features but describe them (not personal data).
USER_CATEGORICALS = ("income_band", "acquisition_channel")


def with_user_columns(store: Store, features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with the users' categorical columns (income band, acquisition
    channel) it does not have yet, so a tree can split on them."""
    extra = [c for c in USER_CATEGORICALS if c not in features.columns]
    if not extra:
        return features
    users = store.query(f"SELECT user_id, {', '.join(extra)} FROM users")
    users["user_id"] = users["user_id"].astype(str)
    users = users.drop_duplicates("user_id").set_index("user_id")
    keys = features["user_id"].astype(str)
    out = features.copy()
    for c in extra:
        out[c] = keys.map(users[c]).astype("object").to_numpy()
    return out


def _prepare(
    store: Store,
    name: str,
    spec: TreeSegmentation | PropensitySegmentation,
    features: pd.DataFrame,
    as_of: datetime | date | None,
    *,
    need_binary: bool,
) -> tuple[Target, Design, np.ndarray, np.ndarray]:
    target = build_target(store, name, spec.target, features, as_of)
    check_target(name, target, need_binary=need_binary)
    exclude = {spec.target.column} if spec.target.column else set()
    design = design_matrix(
        name, features, spec.features, exclude=exclude, max_levels=spec.max_levels
    )
    y = target.y.to_numpy(float)
    labeled = np.flatnonzero(~np.isnan(y))
    train, test = _split(labeled, y[labeled], target.binary, spec.holdout, spec.seed)
    if target.binary and len(np.unique(y[test])) < 2:
        raise ConfigError(
            f"segmentation {name!r}: the holdout ({len(test):,} users) has no "
            f"{'positive' if y[test].sum() == 0 else 'negative'}, so its AUC is undefined; "
            f"raise `holdout` (now {spec.holdout})"
        )
    return target, design, train, test


def _base_details(target: Target, design: Design, spec: Any) -> dict[str, Any]:
    return {
        "target": target.description,
        "target_kind": "yes/no" if target.binary else "number",
        "features_used": sorted(set(design.source.values())),
        "features_dropped": design.dropped,
        "warnings": target.notes,
    }


# --------------------------------------------------------------------------- tree


def _fit_tree(
    spec: TreeSegmentation, binary: bool, X: np.ndarray, y: np.ndarray, train: np.ndarray
) -> tuple[Any, int]:
    """The fitted decision tree (classifier for a yes/no target) and its minimum leaf size
    in users."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    min_leaf = (
        max(1, math.ceil(spec.min_leaf * len(train))) if spec.min_leaf < 1 else int(spec.min_leaf)
    )
    model_cls = DecisionTreeClassifier if binary else DecisionTreeRegressor
    tree = model_cls(max_depth=spec.max_depth, min_samples_leaf=min_leaf, random_state=spec.seed)
    tree.fit(X[train], y[train])
    return tree, min_leaf


def _tree_quality(
    binary: bool, y: np.ndarray, predicted: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, Any]:
    """Holdout (and training) AUC for a yes/no target, holdout R² for a number."""
    from sklearn.metrics import r2_score, roc_auc_score

    quality: dict[str, Any] = {}
    if binary:
        quality["auc_holdout"] = float(roc_auc_score(y[test], predicted[test]))
        quality["auc_train"] = float(roc_auc_score(y[train], predicted[train]))
    else:
        quality["r2_holdout"] = float(r2_score(y[test], predicted[test]))
    return quality


def _holdout_mask(index: pd.Index, test: np.ndarray) -> pd.Series:
    """True for the holdout users."""
    mask = pd.Series(False, index=index)
    mask.iloc[test] = True
    return mask


def _leaf_stats(
    features: pd.DataFrame,
    leaf_of: np.ndarray,
    target: Target,
    train: np.ndarray,
    test: np.ndarray,
) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Per leaf statistics, renamed ``leaf 1 (top)`` … by training rate, and the names by
    node id."""
    y = target.y.to_numpy(float)
    stats = group_stats(
        pd.Series(leaf_of, index=features.index),
        target.y,
        _holdout_mask(features.index, test),
        target.binary,
    )
    # order leaves by the target rate among the training users (what the tree saw), so the
    # names do not move with the holdout; ties by node id
    train_rate = pd.Series(y[train]).groupby(leaf_of[train]).mean()
    stats["train_rate"] = train_rate.reindex(stats.index)
    stats = stats.assign(node=stats.index).sort_values(
        ["train_rate", "node"], ascending=[False, True], kind="stable"
    )
    n = len(stats)
    names = {}
    for i, node in enumerate(stats.index, start=1):
        suffix = " (top)" if i == 1 and n > 1 else " (bottom)" if i == n and n > 1 else ""
        names[node] = f"leaf {i}{suffix}" if n > 1 else "all users"
    return stats.rename(index=names), names


def _leaves_with_rules(
    leaves: list[dict[str, Any]], names: dict[Any, str], rules_by_node: dict[int, Rule]
) -> dict[str, str]:
    """Add each leaf's rule (words and SQL) to its row; return segment -> rule in words."""
    rules: dict[str, str] = {}
    for leaf_row, node in zip(leaves, names, strict=True):
        rule = rules_by_node[int(node)]
        leaf_row["rule"], leaf_row["sql"] = rule.words, rule.sql
        rules[leaf_row["segment"]] = rule.words
    return rules


def run_tree(
    store: Store,
    name: str,
    spec: TreeSegmentation,
    features: pd.DataFrame,
    *,
    as_of: datetime | date | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str], dict[str, Any]]:
    """Fit a decision tree on the target; each leaf becomes a segment.

    Returns assignments (user_id, segment, probability), quality metrics (holdout AUC or
    R², base rate), rules (segment -> rule in words) and details (the leaves table, SQL
    conditions, dropped features).
    """
    features = with_user_columns(store, features.reset_index(drop=True))
    target, design, train, test = _prepare(store, name, spec, features, as_of, need_binary=False)
    X = design.X.to_numpy(float)
    y = target.y.to_numpy(float)
    tree, min_leaf = _fit_tree(spec, target.binary, X, y, train)
    if target.binary:
        predicted = np.asarray(tree.predict_proba(X)[:, 1], dtype=float)
    else:
        predicted = np.asarray(tree.predict(X), dtype=float)
    quality = _tree_quality(target.binary, y, predicted, train, test)

    leaf_of = tree.apply(X)
    rules_by_node = leaf_rules(tree, design, X[train], X)
    stats, names = _leaf_stats(features, leaf_of, target, train, test)
    n = len(stats)
    base = float(np.nanmean(y))
    leaves = _table(stats, base, len(features))
    rules = _leaves_with_rules(leaves, names, rules_by_node)
    assignments = pd.DataFrame(
        {
            "user_id": features["user_id"].astype(str),
            "segment": pd.Series(leaf_of).map(names).to_numpy(),
            "probability": predicted if target.binary else np.nan,
        }
    )
    metrics = {
        **quality,
        "base_rate": base,
        "n_target": int(len(train) + len(test)),
        "n_train": int(len(train)),
        "n_holdout": int(len(test)),
        "n_leaves": int(n),
    }
    details = {**_base_details(target, design, spec), "leaves": leaves, "min_leaf_users": min_leaf}
    log.info(
        "tree %s: %d leaves on %s, holdout %s",
        name,
        n,
        target.description,
        quality,
    )
    return assignments, _clean(metrics), rules, _clean(details)


# --------------------------------------------------------------------------- propensity


def grouped_importances(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    design: Design,
    *,
    seed: int,
    n_repeats: int = 3,
    top: int = 10,
) -> list[dict[str, Any]]:
    """Permutation importance per feature on the holdout: the drop in AUC when a
    feature's columns (all one-hot levels of a category together) are shuffled."""
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    rows = test
    if len(rows) > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(test, IMPORTANCE_ROWS, replace=False))
    Xh, yh = X[rows], y[rows]
    if len(np.unique(yh)) < 2:
        return []
    cols: dict[str, list[int]] = {}
    for i, c in enumerate(design.X.columns):
        cols.setdefault(design.source[str(c)], []).append(i)
    out: list[dict[str, Any]] = []
    # one thread: many small predictions, where OpenMP start-up costs more than it saves
    with threadpool_limits(1):
        base = float(roc_auc_score(yh, model.predict_proba(Xh)[:, 1]))
        for feat, idx in cols.items():
            drops = []
            for _ in range(n_repeats):
                shuffled = Xh.copy()
                shuffled[:, idx] = Xh[rng.permutation(len(Xh))][:, idx]
                drops.append(base - float(roc_auc_score(yh, model.predict_proba(shuffled)[:, 1])))
            out.append(
                {"feature": feat, "label": feature_label(feat), "auc_drop": float(np.mean(drops))}
            )
    out.sort(key=lambda r: -float(r["auc_drop"]))
    return out[:top]


_GROUP_WORDS = {10: "decile", 5: "quintile", 4: "quartile", 20: "ventile"}


def group_names(n_groups: int) -> list[str]:
    """``decile 1 (top)`` … ``decile 10 (bottom)`` (quintile/quartile/group for others)."""
    word = _GROUP_WORDS.get(n_groups, "group")
    out = [f"{word} {i}" for i in range(1, n_groups + 1)]
    out[0] += " (top)"
    out[-1] += " (bottom)"
    return out


def _fit_propensity(
    spec: PropensitySegmentation, X: np.ndarray, y: np.ndarray, train: np.ndarray
) -> Any:
    """The fitted random forest or gradient boosting classifier."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from threadpoolctl import threadpool_limits

    model: Any
    if spec.model == "forest":
        model = RandomForestClassifier(
            n_estimators=200, min_samples_leaf=5, random_state=spec.seed, n_jobs=1
        )
    else:
        model = HistGradientBoostingClassifier(random_state=spec.seed)
    # small fits: one thread (OpenMP start-up and contention cost more than they save)
    with threadpool_limits(1 if len(train) < SMALL_FIT else None):
        model.fit(X[train], y[train].astype(int))
    return model


def _rank_groups(p: np.ndarray, n_groups: int, index: pd.Index) -> tuple[pd.Series, list[str]]:
    """Each user's group name by predicted probability, highest first, and the names."""
    # equal-size groups by rank (ties broken by position, so sizes differ by at most one)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(len(p), dtype=np.int64)
    rank[order] = np.arange(len(p))
    labels = group_names(n_groups)
    group_idx = rank * n_groups // len(p)
    return pd.Series(np.asarray(labels, dtype=object)[group_idx], index=index), labels


def _calibration(
    table: list[dict[str, Any]],
    groups: pd.Series,
    labels: list[str],
    p: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
) -> list[dict[str, Any]]:
    """Add each group's mean predicted probability to its row; return the holdout
    calibration table (mean predicted vs observed per group)."""
    mean_p = pd.Series(p, index=groups.index).groupby(groups).mean()
    held = pd.DataFrame({"g": groups.iloc[test], "p": p[test], "y": y[test]})
    cal = held.groupby("g").agg(n=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))
    cal = cal.reindex(labels)
    calibration = []
    for row in table:
        seg = row["segment"]
        row["mean_probability"] = float(mean_p.get(seg, np.nan))
        calibration.append(
            {
                "segment": seg,
                "n_holdout": int(np.nan_to_num(cal.loc[seg, "n"])),
                "predicted": float(cal.loc[seg, "predicted"]),
                "observed": float(cal.loc[seg, "observed"]),
            }
        )
    return calibration


def _probability_rules(p: np.ndarray, groups: pd.Series, labels: list[str]) -> dict[str, str]:
    """Segment -> the span of predicted probabilities it holds, in words."""
    span = pd.Series(p, index=groups.index).groupby(groups).agg(["min", "max"]).reindex(labels)
    return {
        str(seg): f"predicted probability {float(lo):.3f}–{float(hi):.3f}"
        for seg, lo, hi in zip(span.index, span["min"], span["max"], strict=True)
    }


def run_propensity(
    store: Store,
    name: str,
    spec: PropensitySegmentation,
    features: pd.DataFrame,
    *,
    as_of: datetime | date | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str], dict[str, Any]]:
    """Fit a random forest or gradient boosting on a yes/no target and cut every user's
    predicted probability into equal-size groups (deciles by default), highest first.

    Details hold the groups table, a holdout calibration table (mean predicted vs
    observed per group) and the top-10 permutation importances on the holdout.
    """
    from sklearn.metrics import roc_auc_score

    features = with_user_columns(store, features.reset_index(drop=True))
    target, design, train, test = _prepare(store, name, spec, features, as_of, need_binary=True)
    if len(features) < spec.n_groups:
        raise ConfigError(
            f"segmentation {name!r}: {len(features)} users cannot fill {spec.n_groups} groups"
        )
    X = design.X.to_numpy(float)
    y = target.y.to_numpy(float)
    model = _fit_propensity(spec, X, y, train)
    p = np.asarray(model.predict_proba(X)[:, 1], dtype=float)
    auc = float(roc_auc_score(y[test], p[test]))

    groups, labels = _rank_groups(p, spec.n_groups, features.index)
    holdout_mask = _holdout_mask(features.index, test)
    stats = group_stats(groups, target.y, holdout_mask, True).reindex(labels)
    base = float(np.nanmean(y))
    table = _table(stats, base, len(features))
    calibration = _calibration(table, groups, labels, p, y, test)
    importances = grouped_importances(model, X, y, test, design, seed=spec.seed)
    assignments = pd.DataFrame(
        {
            "user_id": features["user_id"].astype(str),
            "segment": groups.to_numpy(),
            "probability": p,
        }
    )
    metrics = {
        "auc_holdout": auc,
        "base_rate": base,
        "n_target": int(len(train) + len(test)),
        "n_train": int(len(train)),
        "n_holdout": int(len(test)),
    }
    details = {
        **_base_details(target, design, spec),
        "groups": table,
        "calibration": calibration,
        "importances": importances,
    }
    rules = _probability_rules(p, groups, labels)
    log.info("propensity %s (%s): holdout AUC %.3f", name, spec.model, auc)
    return assignments, _clean(metrics), rules, _clean(details)
