"""Segment personas: each segment described against the whole population.

Everything is computed for all segments at once: feature statistics from per-segment
sums (no loop over users), category and item figures with one aggregate query in the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmint._i18n import Language, language
from segmint._labels import feature_label, segment_label
from segmint._time import to_utc
from segmint.config import LifecycleSegmentation
from segmint.features import CATALOG, UNKNOWN_CATEGORY, load_features
from segmint.profiles._value import segment_values, value_sentence
from segmint.segments import SegmentResult, lifecycle_sql, run_sql
from segmint.store import Store, completed, latest_run_sql, ts_lit

AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 25, "<25"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 55, "45-54"),
    (55, 65, "55-64"),
    (65, 200, "65+"),
)
UNKNOWN = "unknown"
TOP_N = 5
FAVOUR_INDEX = 1.2  # a category is "favoured" at 1.2x the population's share or more ...
FAVOUR_SHARE = 0.05  # ... and at least 5% of the segment's item spend
MIN_OBSERVED_SHARE = 0.5  # a feature most members lack (e.g. no second order) says nothing

# Plain words for the features a marketer reads first: (when higher, when lower).
_WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("last bought long ago", "bought recently"),
    "frequency": ("order often", "rarely order"),
    "monetary": ("spend a lot", "spend little"),
    "avg_order_value": ("fill big baskets", "fill small baskets"),
    "tenure_days": ("have been customers for long", "are recent sign-ups"),
    "mean_days_between_orders": ("leave long gaps between orders", "reorder quickly"),
    "orders_30d": ("ordered in the last month", "did not order last month"),
    "orders_90d": ("ordered in the last quarter", "ordered little last quarter"),
    "orders_365d": ("ordered a lot this year", "ordered little this year"),
    "spend_30d": ("spent in the last month", "spent little last month"),
    "spend_90d": ("spent in the last quarter", "spent little last quarter"),
    "spend_365d": ("spent a lot this year", "spent little this year"),
    "refund_rate": ("return often", "rarely return"),
    "discount_share": ("buy on discount", "pay full price"),
    "last_active_days": ("have been away for long", "were active lately"),
    "events_7d": ("browsed this week", "did not browse this week"),
    "events_30d": ("browse a lot", "browse little"),
    "sessions_30d": ("visit often", "visit rarely"),
    "offline_share": ("buy in store", "buy online"),
    "app_share": ("use the app", "use the website"),
    "favourite_category_share": ("stick to one category", "shop across categories"),
    "shares_likes_90d": ("share and like", "rarely share or like"),
    "store_visits_90d": ("visit stores", "rarely visit stores"),
    "age": ("are older", "are younger"),
}


@dataclass(frozen=True)
class Persona:
    """One segment of one segmentation run, described against the population.

    Attributes
    ----------
    segmentation, run_id, segment : str
        Which run and which segment.
    n_users : int
        Users in the segment.
    user_share, revenue_share : float
        Share of the run's users, and of their total ``monetary`` (0..1).
    features : DataFrame
        Indexed by numeric feature; columns ``median``, ``mean``, ``population_median``,
        ``population_mean``, ``ratio`` (segment mean / population mean), ``std_diff``
        (segment mean minus the mean of everyone else, over their pooled standard deviation)
        and ``observed_share`` (members with a value; missing values are never filled in).
    distinguishing : DataFrame
        The ``TOP_N`` rows of ``features`` with the largest ``|std_diff|`` among features
        at least half the members have a value for, with a ``label`` in words.
    top_categories : DataFrame
        ``category``, ``revenue``, ``share`` (of the segment's item spend),
        ``population_share`` and ``index`` (share / population share).
    top_items : DataFrame
        ``item_id``, ``title``, ``category``, ``buyers`` and ``revenue``, by buyers.
    demographics : dict of DataFrame
        ``age_band``, ``gender`` and ``country``: ``value``, ``share``, ``population_share``.
    lifecycle : DataFrame
        Lifecycle stage mix: ``value``, ``share``, ``population_share``.
    summary : str
        Two sentences generated from the numbers above, in the project's language. A trait
        is named only when the segment's median lies on the same side of the population's
        median as its mean, and at least half the members have a value. When a prediction
        run exists, a third sentence on predicted value and churn risk (from ``value``).
    value : dict
        The members' predicted value and churn risk from the latest ``clv`` and ``churn``
        prediction runs (empty without one): ``n_scored``, ``scored_share``, ``clv_mean``,
        ``clv_median``, ``clv_total``, ``clv_share`` (of the total over all the run's
        members), ``p_alive_mean``, ``n_churn_scored``, ``churn_risk_mean``,
        ``churn_high_share`` (share of scored members with a churn risk of at least
        ``churn_threshold``, 0.5), the run ids, as-of dates and the CLV horizon.
    """

    segmentation: str
    run_id: str
    segment: str
    n_users: int
    user_share: float
    revenue_share: float
    features: pd.DataFrame
    distinguishing: pd.DataFrame
    top_categories: pd.DataFrame
    top_items: pd.DataFrame
    demographics: dict[str, pd.DataFrame] = field(default_factory=dict)
    lifecycle: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: str = ""
    value: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (floats rounded to 6 digits, NaN as None)."""

        def records(frame: pd.DataFrame, index: str | None = None) -> list[dict[str, Any]]:
            f = frame.reset_index(names=index) if index else frame
            out = json.loads(f.round(6).to_json(orient="records"))
            return list(out)

        return {
            "segmentation": self.segmentation,
            "run_id": self.run_id,
            "segment": self.segment,
            "n_users": self.n_users,
            "user_share": round(self.user_share, 6),
            "revenue_share": round(self.revenue_share, 6),
            "summary": self.summary,
            "distinguishing": records(self.distinguishing, "feature"),
            "features": records(self.features, "feature"),
            "top_categories": records(self.top_categories),
            "top_items": records(self.top_items),
            "demographics": {k: records(v) for k, v in self.demographics.items()},
            "lifecycle": records(self.lifecycle),
            "value": _plain(self.value),
        }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Figures JSON can hold: floats rounded to 6 digits (None for NaN), dates in ISO."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float):
            out[k] = round(v, 6) if np.isfinite(v) else None
        elif hasattr(v, "isoformat"):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


def _numeric(features: pd.DataFrame) -> list[str]:
    return [
        c
        for c in features.columns
        if c != "user_id"
        and pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
    ]


def _feature_stats(frame: pd.DataFrame, cols: list[str]) -> dict[str, pd.DataFrame]:
    """Per-segment feature table (one DataFrame per segment), all segments at once."""
    x = frame[cols].astype("float64")
    seg = frame["segment"]
    present = x.notna()
    g_n = present.groupby(seg).sum()
    g_sum = x.fillna(0.0).groupby(seg).sum()
    g_sq = (x.fillna(0.0) ** 2).groupby(seg).sum()
    g_median = x.groupby(seg).median()
    t_n, t_sum, t_sq = g_n.sum(), g_sum.sum(), g_sq.sum()
    pop_mean = t_sum / t_n.replace(0, np.nan)
    pop_median = x.median()

    seg_mean = g_sum / g_n.replace(0, np.nan)
    seg_var = (g_sq - g_n * seg_mean**2) / (g_n - 1).where(g_n > 1)
    r_n = t_n - g_n
    r_mean = (t_sum - g_sum) / r_n.where(r_n > 0)
    r_var = ((t_sq - g_sq) - r_n * r_mean**2) / (r_n - 1).where(r_n > 1)
    half = (seg_var.clip(lower=0) + r_var.clip(lower=0)) / 2
    pooled = half.where(half > 0) ** 0.5
    std_diff = (seg_mean - r_mean) / pooled
    ratio = seg_mean / pop_mean.where(pop_mean != 0)
    observed = g_n.div(seg.value_counts().reindex(g_n.index), axis=0)

    out: dict[str, pd.DataFrame] = {}
    for s in seg_mean.index:
        out[str(s)] = pd.DataFrame(
            {
                "median": g_median.loc[s],
                "mean": seg_mean.loc[s],
                "population_median": pop_median,
                "population_mean": pop_mean,
                "ratio": ratio.loc[s],
                "std_diff": std_diff.loc[s],
                "observed_share": observed.loc[s],
            }
        ).rename_axis("feature")
    return out


def _fmt(value: float, lang: Language) -> str:
    if not np.isfinite(value):
        return "n/a"
    if float(value).is_integer() or abs(value) >= 100:
        return lang.integer(value)
    if abs(value) >= 1:
        return lang.number(value, 2 if abs(value) < 10 else 3)
    return lang.number(value, 2)  # shares and rates: two significant digits (0.012 vs 0.019)


def _phrase(feature: str, std_diff: float, lang: Language | None = None) -> str:
    lang = lang or language("en")
    if feature in _WORDS:
        high, low = _WORDS[feature]
        return lang.t(high if std_diff > 0 else low)
    label = feature_label(feature, lang)
    return lang.t("higher {feature}" if std_diff > 0 else "lower {feature}", feature=label)


def _supported(row: pd.Series) -> bool:
    """The median agrees with the mean's direction, and most members have a value."""
    share = row.get("observed_share", 1.0)
    if not (np.isfinite(share) and share >= MIN_OBSERVED_SHARE):
        return False
    gap = float(row["median"]) - float(row["population_median"])
    return bool(np.isfinite(gap) and gap != 0 and np.sign(gap) == np.sign(row["std_diff"]))


def _money_features() -> frozenset[str]:
    return frozenset(spec.name for spec in CATALOG.values() if spec.unit == "currency")


def _distinguishing(
    stats: pd.DataFrame, lang: Language | None = None, currency: str | None = None
) -> pd.DataFrame:
    lang = lang or language("en")
    money = _money_features() if currency else frozenset()

    def value(feature: str, x: float) -> str:
        if feature in money and np.isfinite(x):
            return lang.money(x, currency)  # type: ignore[arg-type]
        return _fmt(x, lang)

    ranked = stats.dropna(subset=["std_diff"])
    if "observed_share" in ranked:
        ranked = ranked[ranked["observed_share"] >= MIN_OBSERVED_SHARE]
    ranked = ranked.reindex(ranked["std_diff"].abs().sort_values(ascending=False).index)
    top = ranked.head(TOP_N).copy()
    labels = []
    for name, row in top.iterrows():
        ratio = row["ratio"]
        times = ""
        if np.isfinite(ratio) and ratio >= 0.1:
            times = lang.t(", {ratio}x the average", ratio=lang.number(ratio, 2))
        elif np.isfinite(ratio) and ratio >= 0:
            times = lang.t(", far below the average")
        labels.append(
            lang.t(
                "{trait}: median {median} vs {overall} overall",
                trait=_phrase(str(name), row["std_diff"], lang),
                median=value(str(name), row["median"]),
                overall=value(str(name), row["population_median"]),
            )
            + times
        )
    top["label"] = labels
    return top


def _mix(values: pd.Series, seg: pd.Series) -> dict[str, pd.DataFrame]:
    """Share of each value per segment, next to the population's share."""
    counts = pd.crosstab(seg, values.fillna(UNKNOWN).astype(str))
    shares = counts.div(counts.sum(axis=1), axis=0)
    pop = counts.sum() / counts.values.sum()
    out = {}
    for s in shares.index:
        frame = pd.DataFrame({"share": shares.loc[s], "population_share": pop})
        frame = frame[frame["share"] > 0].sort_values("share", ascending=False)
        out[str(s)] = frame.rename_axis("value").reset_index()
    return out


def _age_band(age: pd.Series) -> pd.Series:
    a = pd.to_numeric(age, errors="coerce")
    band = pd.Series(UNKNOWN, index=age.index, dtype="object")
    for lo, hi, label in AGE_BANDS:
        band[(a >= lo) & (a < hi)] = label
    return band


def _lifecycle(store: Store, run: SegmentResult, features: pd.DataFrame) -> pd.Series:
    """Lifecycle stage per user: the stored lifecycle run on the same features, if any,
    else the default windows (new 30, active 90, churned 365 days)."""
    if run.method == "lifecycle":
        return run.assignments.set_index("user_id")["segment"]
    if run.feature_run_id is not None:
        found = store.query(
            latest_run_sql("segment", method="lifecycle", feature_run_id=run.feature_run_id)
        )
        if not found.empty:
            a = store.query(
                "SELECT user_id, segment FROM segment_assignments WHERE run_id = ?",
                [str(found.iat[0, 0])],
            )
            return a.set_index("user_id")["segment"]
    if not {"tenure_days", "last_active_days"} <= set(features.columns):
        return pd.Series(UNKNOWN, index=features["user_id"])
    spec = LifecycleSegmentation(type="lifecycle")
    out = run_sql(lifecycle_sql(spec), features[["user_id", "tenure_days", "last_active_days"]])
    return out.set_index("user_id")["segment"]


def _purchases(store: Store, run: SegmentResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Item revenue and buyers per segment (one query), and the items' titles/categories."""
    as_of = "" if run.as_of is None else f"AND o.ts < {ts_lit(to_utc(run.as_of))}"
    per_item = store.query(
        f"""
        WITH spend AS (
            SELECT o.user_id, oi.item_id,
                   sum(oi.quantity * coalesce(oi.unit_price, i.price)) AS revenue
            FROM order_items AS oi
            JOIN orders AS o ON o.order_id = oi.order_id
            LEFT JOIN items AS i ON i.item_id = oi.item_id
            WHERE {completed("o")} AND o.user_id IS NOT NULL {as_of}
            GROUP BY o.user_id, oi.item_id
        )
        SELECT a.segment, s.item_id, count(*) AS buyers, sum(s.revenue) AS revenue
        FROM spend AS s
        JOIN segment_assignments AS a ON a.user_id = s.user_id AND a.run_id = ?
        GROUP BY a.segment, s.item_id""",
        [run.run_id],
    )
    items = store.query("SELECT item_id, title, category FROM items")
    return per_item, items


def _categories_and_items(
    per_item: pd.DataFrame, items: pd.DataFrame
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    empty_c = pd.DataFrame(columns=["category", "revenue", "share", "population_share", "index"])
    empty_i = pd.DataFrame(columns=["item_id", "title", "category", "buyers", "revenue"])
    if per_item.empty:
        return {}, {}
    df = per_item.merge(items, on="item_id", how="left")
    df["category"] = df["category"].fillna(UNKNOWN_CATEGORY)
    df["revenue"] = pd.to_numeric(df["revenue"]).astype("float64")
    df["buyers"] = pd.to_numeric(df["buyers"]).astype("int64")
    cat = pd.DataFrame(df.groupby(["segment", "category"], as_index=False)["revenue"].sum())
    cat["share"] = cat["revenue"] / cat.groupby("segment")["revenue"].transform("sum")
    pop = cat.groupby("category")["revenue"].sum()
    cat["population_share"] = cat["category"].map(pop / pop.sum())
    cat["index"] = cat["share"] / cat["population_share"]
    cat = cat.sort_values(["segment", "revenue"], ascending=[True, False])
    top_items = df.sort_values(["segment", "buyers", "revenue"], ascending=[True, False, False])
    cats = {
        str(s): g.drop(columns="segment").head(TOP_N).reset_index(drop=True)
        for s, g in cat.groupby("segment")
    }
    its = {
        str(s): g[empty_i.columns].head(TOP_N).reset_index(drop=True)
        for s, g in top_items.groupby("segment")
    }
    return (
        {k: v if not v.empty else empty_c for k, v in cats.items()},
        {k: v if not v.empty else empty_i for k, v in its.items()},
    )


def _join(parts: list[str], lang: Language) -> str:
    """``a, b and c`` in this language."""
    if len(parts) <= 1:
        return "".join(parts)
    return lang.t("{first} and {last}", first=lang.t(", ").join(parts[:-1]), last=parts[-1])


def _summary(
    segment: str,
    n_users: int,
    user_share: float,
    revenue_share: float,
    distinguishing: pd.DataFrame,
    categories: pd.DataFrame | None,
    lifecycle: pd.DataFrame,
    age: pd.DataFrame | None,
    lang: Language | None = None,
) -> str:
    lang = lang or language("en")
    value = revenue_share / user_share if user_share > 0 else float("nan")
    first = lang.t(
        "{segment} is {users} ({share} of all) and brings {revenue} of revenue",
        segment=segment_label(segment, lang),
        users=lang.n("{n} user", "{n} users", n_users),
        share=lang.percent(user_share, 0),
        revenue=lang.percent(revenue_share, 0),
    )
    if np.isfinite(value):
        first += lang.t(", {ratio}x its share of users.", ratio=lang.number(value, 2))
    else:
        first += lang.t(".")
    traits = [
        _phrase(str(f), float(row["std_diff"]), lang)
        for f, row in distinguishing.iterrows()
        if abs(float(row["std_diff"])) >= 0.2 and _supported(row)
    ][:2]
    parts = []
    if traits:
        parts.append(
            lang.t("compared with everyone else they {traits}", traits=_join(traits, lang))
        )
    if categories is not None and not categories.empty:
        # over-represented, and a real part of what they buy (not a 1% niche)
        over = categories[
            (categories["index"] >= FAVOUR_INDEX) & (categories["share"] >= FAVOUR_SHARE)
        ]
        if not over.empty:
            parts.append(
                lang.t(
                    "favour {category} ({index}x)",
                    category=over.iloc[0]["category"],
                    index=lang.number(float(over.iloc[0]["index"]), 2),
                )
            )
    if age is not None and not age.empty and age.iloc[0]["value"] != UNKNOWN:
        parts.append(lang.t("are most often aged {age}", age=age.iloc[0]["value"]))
    if not lifecycle.empty and lifecycle.iloc[0]["value"] != segment:
        top = lifecycle.iloc[0]
        parts.append(
            lang.t(
                "are mostly {stage} ({share})",
                stage=segment_label(str(top["value"]), lang),
                share=lang.percent(float(top["share"]), 0),
            )
        )
    if not parts:
        return first + lang.t(" They look like the population as a whole.")
    if not traits:
        parts[0] = lang.t("they {what}", what=parts[0])
    second = _join(parts, lang)
    return lang.t("{first} {second}.", first=first, second=second[:1].upper() + second[1:])


def personas(
    store: Store,
    run: SegmentResult,
    features: pd.DataFrame | None = None,
    *,
    locale: str = "en",
    currency: str | None = None,
) -> list[Persona]:
    """Describe every segment of a segmentation run against the run's population.

    Parameters
    ----------
    store : segmint.store.Store
        The store holding the run, its feature run and the orders.
    run : SegmentResult
        The segmentation run (see :meth:`segmint.Project.segment_run`).
    features : DataFrame, optional
        The features the run used; loaded from the run's feature run by default. Missing
        values stay missing (statistics use the observed values only).
    locale : str, default="en"
        Language of the summaries and labels (``en`` or ``zh-CN``; ``locale:`` in
        segmint.yaml).
    currency : str, optional
        Money features (``monetary``, ``avg_order_value``, ``spend_*``) are shown in it
        in the labels (``€3,649``); plain numbers when None.

    Returns
    -------
    list of Persona
        One per segment, largest first.
    """
    lang = language(locale)
    if features is None:
        features = load_features(store, run.feature_run_id)
    frame, seg = _members(run, features)
    stats = _feature_stats(frame, _numeric(features))
    n_total = len(frame)
    revenue = _revenue(frame, seg)
    total_revenue = float(revenue.sum())
    demographics = _demographics(frame, seg)
    lifecycle = _mix(frame["user_id"].map(_lifecycle(store, run, features)), seg)
    cats, its = _categories_and_items(*_purchases(store, run))
    empty_c, empty_i, empty_mix = _empty_tables()
    values = segment_values(store, run.run_id, frame.set_index("user_id")["segment"])

    out = []
    for s, n in seg.value_counts().items():
        s = str(s)
        user_share = n / n_total
        revenue_share = float(revenue.get(s, 0.0)) / total_revenue if total_revenue else 0.0
        dist = _distinguishing(stats[s], lang, currency)
        demo = {k: v.get(s, empty_mix) for k, v in demographics.items()}
        life = lifecycle.get(s, empty_mix)
        summary = _summary(
            s, int(n), user_share, revenue_share, dist, cats.get(s), life,
            demo.get("age_band"), lang,
        )  # fmt: skip
        value = values.get(s, {})
        said = value_sentence(value, lang, currency) if value else ""
        if said:
            summary = lang.t("{summary} {value}", summary=summary, value=said)
        out.append(
            Persona(
                segmentation=run.segmentation,
                run_id=run.run_id,
                segment=s,
                n_users=int(n),
                user_share=float(user_share),
                revenue_share=revenue_share,
                features=stats[s],
                distinguishing=dist,
                top_categories=cats.get(s, empty_c),
                top_items=its.get(s, empty_i),
                demographics=demo,
                lifecycle=life,
                summary=summary,
                value=value,
            )
        )
    return out


def _members(run: SegmentResult, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The run's users with their segment (as text) and features, and the segment column."""
    frame = run.assignments[["user_id", "segment"]].merge(features, on="user_id", how="left")
    seg = frame["segment"].astype(str)
    frame["segment"] = seg
    return frame, seg


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Empty top-categories, top-items and mix tables (for a segment without any)."""
    return (
        pd.DataFrame(columns=["category", "revenue", "share", "population_share", "index"]),
        pd.DataFrame(columns=["item_id", "title", "category", "buyers", "revenue"]),
        pd.DataFrame(columns=["value", "share", "population_share"]),
    )


def _revenue(frame: pd.DataFrame, seg: pd.Series) -> pd.Series:
    """Revenue (the ``monetary`` feature, missing as 0) per segment."""
    money = (
        frame["monetary"].astype("float64").fillna(0.0)
        if "monetary" in frame
        else pd.Series(0.0, index=frame.index)
    )
    return money.groupby(seg).sum()


def _demographics(frame: pd.DataFrame, seg: pd.Series) -> dict[str, dict[str, pd.DataFrame]]:
    """Age band, gender and country mix per segment (those the features have)."""
    demographics: dict[str, dict[str, pd.DataFrame]] = {}
    if "age" in frame:
        demographics["age_band"] = _mix(_age_band(frame["age"]), seg)
    for col in ("gender", "country"):
        if col in frame:
            demographics[col] = _mix(frame[col], seg)
    return demographics
