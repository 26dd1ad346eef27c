"""Breakdowns of an experiment by any user attribute, with family-wise adjustment.

A breakdown variable is one of:

* a column of ``users`` (``country``, ``gender``, ``age``, ``city``, ``income_band``,
  ``acquisition_channel``; ``channel`` is read as ``acquisition_channel``);
* a trait, ``traits.<key>`` (text; personal keys are refused, see
  :func:`segmint._expressions.is_personal_key`);
* a feature of the feature table as of the exposure (built-in or custom);
* a segmentation of the configuration (each user's segment as of the exposure).

Levels: text is taken as it is; ``age`` is cut in bands (``<18``, ``18-24``, ``25-34``, ...,
``65+``); other numbers with more than ``MAX_EXACT_NUMBERS`` distinct values are cut at
their quartiles (``Q1 [lo, hi]``). A missing value is the level ``(missing)``. A variable
with more than ``max_levels`` levels keeps its ``max_levels - 1`` largest (``(missing)``
aside) and folds the rest into ``(other)``, with a note.

Every non-control arm is compared with the control within every level: conversion lift
(Newcombe CI, two-proportion z-test) and revenue-per-user difference (Welch). p-values are
adjusted twice, with Holm and Benjamini-Hochberg: within each variable's family of tests
(``*_within``) and across all variables' tests together (``*_family``). A level where an
arm or the control has no user gets NaN statistics and is left out of both adjustments.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint.errors import ConfigError
from segmint.experiments._stats import (
    benjamini_hochberg,
    holm,
    newcombe_interval,
    two_proportion_ztest,
    welch_batch,
)
from segmint.store import Store

if TYPE_CHECKING:
    from segmint.config import Config

MISSING = "(missing)"
OTHER = "(other)"
MAX_EXACT_NUMBERS = 10
"""Numbers with more distinct values than this are cut at their quartiles."""

AGE_EDGES = (-np.inf, 18, 25, 35, 45, 55, 65, np.inf)
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")

USER_COLUMNS = ("gender", "age", "country", "city", "income_band", "acquisition_channel")
"""Columns of ``users`` a breakdown may use (the personal ones never)."""
_ALIASES = {"channel": "acquisition_channel"}

COLUMNS = [
    "variable", "level", "arm", "control", "n_arm", "n_control", "conversion_arm",
    "conversion_control", "lift", "lift_lo", "lift_hi", "p_value", "p_holm_within",
    "p_bh_within", "p_holm_family", "p_bh_family", "revenue_arm", "revenue_control",
    "revenue_diff", "revenue_diff_lo", "revenue_diff_hi", "revenue_p_value",
    "revenue_p_holm_within", "revenue_p_bh_within", "revenue_p_holm_family",
    "revenue_p_bh_family",
]  # fmt: skip
"""The columns of :func:`breakdown_table`, in order."""


# -- attributes ----------------------------------------------------------------------------
def _trait(store: Store, variable: str) -> pd.DataFrame:
    from segmint._expressions import check_expression
    from segmint.features import PERSONAL_COLUMNS, TRAIT_COLUMNS
    from segmint.store import is_sealed

    expr = check_expression(
        variable,
        (),
        aggregates=False,
        context=f"breakdown variable {variable!r}",
        denied_columns=PERSONAL_COLUMNS,
        json_columns=TRAIT_COLUMNS,
    )
    frame = store.query(f"SELECT user_id, {expr.sql(dialect='duckdb')} AS v FROM users")
    if frame["v"].map(is_sealed).any():  # declared personal in segmint.yaml: sealed at rest
        raise ConfigError(
            f"breakdown variable {variable!r}: the trait is personal data "
            "(privacy.personal_traits), sealed in the store and never read by a breakdown; "
            "use a non-personal trait"
        )
    return frame


def _unknown(variable: str, available: dict[str, list[str]]) -> ConfigError:
    names = [n for group in available.values() for n in group]
    close = difflib.get_close_matches(variable, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = "; ".join(
        f"{kind}: {', '.join(group[:40])}{', ...' if len(group) > 40 else ''}"
        for kind, group in available.items()
        if group
    )
    return ConfigError(
        f"unknown breakdown variable {variable!r}; {hint}use a user column, a trait "
        f"(traits.<key>), a feature or a segmentation ({listed})"
    )


def _levels(values: pd.Series, variable: str, max_levels: int) -> tuple[pd.Series, str | None]:
    """Text levels of one variable (binned, missing, folded) as an ordered categorical, and
    the note on folding (or None)."""
    categories: list[str] = []
    if pd.api.types.is_bool_dtype(values):
        text = values.map({True: "true", False: "false"})
    elif pd.api.types.is_numeric_dtype(values) and variable == "age":
        text = pd.cut(values.astype(float), AGE_EDGES, right=False, labels=list(AGE_BANDS))
    elif pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_EXACT_NUMBERS:
        x = values.astype(float)
        _, edges = pd.qcut(x, 4, retbins=True, duplicates="drop")
        labels = [f"Q{i + 1} [{edges[i]:.4g}, {edges[i + 1]:.4g}]" for i in range(len(edges) - 1)]
        text = pd.cut(x, [float(e) for e in edges], include_lowest=True, labels=labels)
    elif pd.api.types.is_numeric_dtype(values):
        categories = [format(v, "g") for v in np.sort(values.dropna().unique().astype(float))]
        text = values.map(lambda v: format(float(v), "g"), na_action="ignore")
    else:
        text = values.astype(object).where(values.notna()).map(str, na_action="ignore")
    if isinstance(text.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in text.cat.categories]
        text = text.astype(object)
    ordered = bool(categories)
    text = text.where(text.notna(), MISSING).astype(str)
    counts = text[text != MISSING].value_counts(sort=False)
    counts = counts.sort_values(ascending=False, kind="stable")
    note = None
    if len(counts) > max_levels:
        kept = counts.index[: max_levels - 1]
        folded = ~text.isin(kept) & (text != MISSING)
        note = (
            f"breakdown by {variable}: {len(counts):,} levels, more than {max_levels}; the "
            f"{max_levels - 1} largest are shown and the other {len(counts) - len(kept):,} "
            f"({int(folded.sum()):,} users) are folded into {OTHER!r} (raise --max-levels to "
            "see more)"
        )
        text = text.where(~folded, OTHER)
        counts = text[text != MISSING].value_counts().sort_values(ascending=False, kind="stable")
    order = [c for c in categories if c in counts.index] if ordered else list(counts.index)
    order = [c for c in order if c != OTHER] + [c for c in (OTHER,) if c in counts.index]
    order += [c for c in counts.index if c not in order]
    if (text == MISSING).any():
        order.append(MISSING)
    return pd.Series(pd.Categorical(text, categories=order), index=values.index), note


def breakdown_attributes(
    store: Store,
    config: Config | None,
    variables: Sequence[str],
    as_of: datetime,
    *,
    max_levels: int = 20,
    user_ids: Sequence[str] | None = None,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each user's level of each breakdown variable, as of ``as_of``.

    Parameters
    ----------
    store : Store
        Holds the users (their columns and traits) and the data features come from.
    config : Config or None
        The project's configuration: its custom features and segmentations.
    variables : sequence of str
        User columns (``country``, ``age``...), traits (``traits.zip_code``), feature
        names, or segmentation names, in the order wanted.
    as_of : datetime
        Features and segments are computed on data before this instant (pre-treatment
        when it is the exposure).
    max_levels : int, default 20
        A variable with more levels keeps the ``max_levels - 1`` largest and folds the rest
        into ``(other)``.
    user_ids : sequence of str, optional
        Only these users (the experiment's); levels, quartiles and folding are computed on
        them.
    features : DataFrame, optional
        The features as of ``as_of`` when already computed.

    Returns
    -------
    DataFrame
        ``user_id`` then one ordered categorical column per variable (text levels,
        ``(missing)`` and ``(other)`` included). ``frame.attrs["notes"]`` lists what was
        folded.

    Raises
    ------
    segmint.errors.ConfigError
        For an unknown variable (with the available ones), a personal trait, a variable
        given twice, or ``max_levels`` below 2.
    """
    variables = list(variables)
    if max_levels < 2:
        raise ConfigError(f"max_levels must be at least 2 (got {max_levels})")
    twice = sorted({v for v in variables if variables.count(v) > 1})
    if twice:
        raise ConfigError(f"breakdown variable(s) given twice: {', '.join(twice)}")
    segmentations = dict(config.segmentations) if config is not None else {}

    def needs_features(v: str) -> bool:
        return _ALIASES.get(v, v) not in USER_COLUMNS and not v.lower().startswith("traits.")

    if features is None and any(needs_features(v) for v in variables):
        features = _features(store, config, as_of)
    if features is not None and "user_id" not in features.columns:
        features = features.reset_index()
    if user_ids is None:
        base = store.query("SELECT user_id FROM users").astype({"user_id": str})
    else:
        base = pd.DataFrame({"user_id": pd.unique(pd.Series(user_ids, dtype=str))})
    out = base.copy()
    notes: list[str] = []
    for variable in variables:
        raw = _raw(store, variable, features, segmentations, as_of, config)
        raw["user_id"] = raw["user_id"].astype(str)
        values = base.merge(raw.drop_duplicates("user_id"), on="user_id", how="left")["v"]
        levels, note = _levels(values, variable, max_levels)
        out[variable] = levels.array
        if note:
            notes.append(note)
    out.attrs["notes"] = notes
    return out


def _custom(config: Config | None) -> list[Any]:
    """The project's custom features (none without a configuration)."""
    from segmint.features import CustomFeature

    if config is None:
        return []
    return [CustomFeature(n, c.expr, c.table) for n, c in config.features.custom.items()]


def _features(store: Store, config: Config | None, as_of: datetime) -> pd.DataFrame:
    from segmint.features import features_as_of

    return features_as_of(store, as_of, _custom(config))


def _raw(
    store: Store,
    variable: str,
    features: pd.DataFrame | None,
    segmentations: dict[str, Any],
    as_of: datetime,
    config: Config | None = None,
) -> pd.DataFrame:
    """``user_id, v``: the raw values of one variable."""
    column = _ALIASES.get(variable, variable)
    if column in USER_COLUMNS:
        return store.query(f"SELECT user_id, {column} AS v FROM users")
    if variable.lower().startswith("traits."):
        return _trait(store, variable)
    if features is not None and variable in features.columns and variable != "user_id":
        return features[["user_id", variable]].rename(columns={variable: "v"})
    if variable in segmentations:
        from segmint.segments import run_segmentation

        assert features is not None
        result = run_segmentation(
            store,
            variable,
            segmentations[variable],
            features,
            as_of=as_of,
            save=False,
            predict=config.predict if config is not None else None,
            custom_features=_custom(config),
        )
        return result.assignments[["user_id", "segment"]].rename(columns={"segment": "v"})
    feature_names = [
        c for c in (features.columns if features is not None else []) if c != "user_id"
    ]
    raise _unknown(
        variable,
        {
            "user columns": [*USER_COLUMNS, *_ALIASES],
            "features": feature_names,
            "segmentations": sorted(segmentations),
        },
    )


# -- the table -----------------------------------------------------------------------------
def breakdown_table(
    users: pd.DataFrame, attributes: pd.DataFrame, *, control: str, alpha: float = 0.05
) -> pd.DataFrame:
    """Every non-control arm against the control, within every level of every variable.

    Parameters
    ----------
    users : DataFrame
        One row per user: ``user_id``, ``arm`` (any labels), ``converted`` (bool),
        ``revenue`` (float).
    attributes : DataFrame
        ``user_id`` and one column per variable (see :func:`breakdown_attributes`); a user
        absent from it is ``(missing)`` everywhere.
    control : str
        The control arm's label.
    alpha : float, default 0.05
        1 - confidence level of the intervals.

    Returns
    -------
    DataFrame
        One row per variable, level and non-control arm, columns ``COLUMNS``: sizes,
        conversion in the arm and the control, ``lift`` (difference) with its Newcombe CI and
        two-proportion z-test p-value, revenue per user in both and their difference with
        its Welch CI and p-value, and the Holm / BH adjusted p-values within the variable
        (``*_within``) and across every test of the table (``*_family``). Levels where the
        arm or the control has no user have NaN statistics, left out of the adjustments.

    Raises
    ------
    segmint.errors.ConfigError
        When ``control`` is not one of the arms, or a column is missing.
    """
    treatments = _treatments(users, control)
    variables = [c for c in attributes.columns if c != "user_id"]
    if not variables or not treatments:
        return pd.DataFrame(columns=COLUMNS)
    order = {
        v: (
            list(attributes[v].cat.categories)
            if isinstance(attributes[v].dtype, pd.CategoricalDtype)
            else []
        )
        for v in variables
    }
    agg = _cell_counts(users, attributes, variables)
    out = _sorted(_cell_tests(agg, treatments, control, alpha), variables, order, treatments)
    return _adjusted(out)[COLUMNS]


def _treatments(users: pd.DataFrame, control: str) -> list[str]:
    """The non-control arms of ``users``, sorted; raises when a column or the control is
    missing."""
    missing = [c for c in ("user_id", "arm", "converted", "revenue") if c not in users.columns]
    if missing:
        raise ConfigError(f"users needs the columns {', '.join(missing)}")
    arms = [str(a) for a in pd.unique(users["arm"].astype(str))]
    if control not in arms:
        raise ConfigError(
            f"the control arm {control!r} is not among the arms ({', '.join(arms) or 'none'})"
        )
    return sorted(a for a in arms if a != control)


def _cell_counts(
    users: pd.DataFrame, attributes: pd.DataFrame, variables: list[str]
) -> pd.DataFrame:
    """Per (variable, level, arm): users ``n``, converters ``x``, revenue ``mean`` and
    ``var`` (a user without attributes is ``(missing)``)."""
    frame = users[["user_id", "arm", "converted", "revenue"]].assign(
        user_id=lambda f: f["user_id"].astype(str), arm=lambda f: f["arm"].astype(str)
    )
    attrs = attributes.assign(user_id=attributes["user_id"].astype(str))
    merged = frame.merge(attrs.drop_duplicates("user_id"), on="user_id", how="left")
    merged["converted"] = merged["converted"].astype(bool)
    merged["revenue"] = merged["revenue"].astype(float)
    parts = []
    for v in variables:  # a few variables: each grouped set-wise over all users
        level = merged[v].astype(object).where(merged[v].notna(), MISSING).astype(str)
        agg_v = merged.groupby([level.rename("level"), "arm"], sort=False).agg(
            n=("converted", "size"),
            x=("converted", "sum"),
            mean=("revenue", "mean"),
            var=("revenue", "var"),
        )
        parts.append(pd.concat({v: agg_v}, names=["variable"]))
    return pd.concat(parts)


def _cell_tests(
    agg: pd.DataFrame, treatments: list[str], control: str, alpha: float
) -> pd.DataFrame:
    """Every treatment arm against the control in every (variable, level) of ``agg``:
    conversion lift (Newcombe CI, z-test) and revenue difference (Welch), NaN where the
    arm or the control has no user."""
    cells = agg.reset_index()[["variable", "level"]].drop_duplicates()
    grid = cells.merge(pd.DataFrame({"arm": treatments}), how="cross")
    key = ["variable", "level"]
    ctl = agg.xs(control, level="arm").reset_index()
    t = grid.merge(agg.reset_index(), on=[*key, "arm"], how="left")
    c = grid[key].merge(ctl, on=key, how="left")
    n1 = t["n"].fillna(0).to_numpy(float)
    n0 = c["n"].fillna(0).to_numpy(float)
    x1 = t["x"].fillna(0).to_numpy(float)
    x0 = c["x"].fillna(0).to_numpy(float)
    empty = (n1 == 0) | (n0 == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p0 = x1 / n1, x0 / n0
        lo, hi = newcombe_interval(x1, n1, x0, n0, alpha)
        _, p = two_proportion_ztest(x1, n1, x0, n0)
        w = welch_batch(
            t["mean"].to_numpy(float),
            t["var"].to_numpy(float),
            n1,
            c["mean"].to_numpy(float),
            c["var"].to_numpy(float),
            n0,
            alpha,
        )
    na = np.where(empty, np.nan, 1.0)
    return pd.DataFrame(
        {
            "variable": grid["variable"].to_numpy(),
            "level": grid["level"].to_numpy(),
            "arm": grid["arm"].to_numpy(),
            "control": control,
            "n_arm": n1.astype("int64"),
            "n_control": n0.astype("int64"),
            "conversion_arm": p1,
            "conversion_control": p0,
            "lift": (p1 - p0) * na,
            "lift_lo": np.asarray(lo, float) * na,
            "lift_hi": np.asarray(hi, float) * na,
            "p_value": np.asarray(p, float) * na,
            "revenue_arm": t["mean"].to_numpy(float),
            "revenue_control": c["mean"].to_numpy(float),
            "revenue_diff": np.asarray(w["diff"], float) * na,
            "revenue_diff_lo": np.asarray(w["lo"], float) * na,
            "revenue_diff_hi": np.asarray(w["hi"], float) * na,
            "revenue_p_value": np.asarray(w["p"], float) * na,
        }
    )


def _adjusted(out: pd.DataFrame) -> pd.DataFrame:
    """``out`` with the Holm and BH adjusted p-values of both tests, across the table
    (``*_family``) and within each variable (``*_within``)."""
    for prefix in ("", "revenue_"):
        raw = out[f"{prefix}p_value"].to_numpy(float)
        out[f"{prefix}p_holm_family"] = holm(raw)
        out[f"{prefix}p_bh_family"] = benjamini_hochberg(raw)
        within_holm = np.full(len(out), np.nan)
        within_bh = np.full(len(out), np.nan)
        for idx in out.groupby("variable", sort=False).indices.values():
            within_holm[idx] = holm(raw[idx])
            within_bh[idx] = benjamini_hochberg(raw[idx])
        out[f"{prefix}p_holm_within"] = within_holm
        out[f"{prefix}p_bh_within"] = within_bh
    return out


def _sorted(
    out: pd.DataFrame, variables: list[str], order: dict[str, list[str]], treatments: list[str]
) -> pd.DataFrame:
    """Variables in the order asked, levels in their order (bins in order, else largest
    first, ``(other)`` and ``(missing)`` last), arms by name."""
    size = out.groupby(["variable", "level"], sort=False)["n_control"].transform("first")
    size = size + out.groupby(["variable", "level"], sort=False)["n_arm"].transform("sum")
    rank = np.zeros(len(out))
    for v in variables:
        rows = (out["variable"] == v).to_numpy()
        if order.get(v):
            position = {lvl: i for i, lvl in enumerate(order[v])}
            rank[rows] = out.loc[rows, "level"].map(position).fillna(len(position)).to_numpy()
        else:
            special = out.loc[rows, "level"].map({OTHER: 1, MISSING: 2}).fillna(0).to_numpy()
            rank[rows] = special * 1e15 - size[rows].to_numpy(float)
    return (
        out.assign(
            _v=out["variable"].map({v: i for i, v in enumerate(variables)}),
            _r=rank,
            _a=out["arm"].map({a: i for i, a in enumerate(treatments)}),
        )
        .sort_values(["_v", "_r", "level", "_a"], kind="stable")
        .drop(columns=["_v", "_r", "_a"])
        .reset_index(drop=True)
    )


# -- inside an evaluation ------------------------------------------------------------------
def evaluate_breakdowns(
    store: Store,
    config: Config | None,
    campaign: str,
    users: pd.DataFrame,
    by: Sequence[str],
    *,
    as_of: datetime,
    alpha: float,
    max_levels: int = 20,
    features: pd.DataFrame | None = None,
    warnings: list[str] | None = None,
) -> pd.DataFrame:
    """The breakdown table of a campaign's users (see :func:`breakdown_table`), the control
    taken from the campaign's design; notes on folded levels go to ``warnings``."""
    from segmint.campaigns import campaign_design

    if not by:
        return pd.DataFrame(columns=COLUMNS)
    control = campaign_design(store, campaign).control
    attributes = breakdown_attributes(
        store,
        config,
        by,
        as_of,
        max_levels=max_levels,
        user_ids=users["user_id"].astype(str).tolist(),
        features=features,
    )
    if warnings is not None:
        warnings.extend(attributes.attrs.get("notes", []))
    return breakdown_table(users, attributes, control=control, alpha=alpha)
