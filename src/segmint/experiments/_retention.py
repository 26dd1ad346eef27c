"""Customers over time: cohort retention, repeat purchases, retention by segment, and
before/after comparisons with an optional difference-in-differences.

Everything is aggregated in the store by SQL written once in DuckDB's dialect (transpiled
for PostgreSQL by the store); intervals are then computed vectorised on the aggregated
rows. No Python loop touches a user.

Conventions
-----------
* A **purchase** is a completed order (:data:`segmint.store.COMPLETED`, as in the feature
  catalog); refunded and cancelled orders never count.
* **Months are UTC calendar months.** Timestamps are ``TIMESTAMPTZ`` and both stores run
  their sessions in UTC, so an order at ``2024-01-31 23:30-05:00`` (= 04:30 UTC on
  1 February) belongs to February.
* **as_of** is an instant; only activity strictly before it is used. The default is
  :func:`segmint.features.default_as_of`: midnight UTC after the newest order or event.
* **Incomplete months are flagged, never filled with zeros.** The retention matrix holds a
  cell for every (cohort, month) that has *started* before ``as_of``; the cell's
  ``complete`` is False when the calendar month had not ended by ``as_of`` (its count is
  only a lower bound). Months that had not started are absent. :meth:`RetentionResult.wide`
  shows complete cells only unless asked otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from segmint._time import to_utc
from segmint.errors import ConfigError, NotFoundError
from segmint.experiments._evaluate import MESSAGE_EVENTS
from segmint.experiments._stats import welch_batch, wilson_interval
from segmint.features import default_as_of
from segmint.segments import resolve_run
from segmint.store import COMPLETED, Store, lit, ts_lit

__all__ = [
    "BeforeAfterResult",
    "RetentionResult",
    "before_after",
    "repeat_purchase_rate",
    "retention_by_segment",
    "retention_matrix",
]

log = logging.getLogger(__name__)

ALL = "(all)"
"""The segment label of the rows that cover every user."""

CohortBy = Literal["first_purchase", "signup"]
Activity = Literal["order", "event"]
Metric = Literal["revenue", "orders", "conversion", "events"]

BEFORE_AFTER_WARNING = (
    "This is a before/after comparison, NOT a causal effect: the change between the two "
    "windows also contains seasonality, trends, other campaigns and price changes, and "
    "regression to the mean (a group picked for being unusually high or low before tends "
    "to move back on its own). To measure what a change caused, compare with a randomized "
    "holdout (segmint evaluate)."
)
DID_NOTE = (
    "Difference-in-differences (treated change minus comparison change) removes what both "
    "groups share (season, trend) only under the parallel-trends assumption: without the "
    "change, both groups would have moved by the same amount. It is not a randomized "
    "comparison. Check the 'before' row (the groups' pre-period difference) and the "
    "'pre-trend (placebo)' row (the same difference-in-differences one window earlier, "
    "where no effect is expected): a placebo interval that excludes 0 means the trends "
    "were not parallel."
)


# --------------------------------------------------------------------------- helpers


def _month_index(col: str) -> str:
    """SQL for the UTC calendar month of a timestamp as ``year * 12 + month - 1``."""
    return (
        f"(CAST(extract(year FROM {col}) AS INTEGER) * 12 "
        f"+ CAST(extract(month FROM {col}) AS INTEGER) - 1)"
    )


def _py_month_index(value: dt.datetime) -> int:
    return value.year * 12 + value.month - 1


def _month_start(index: np.ndarray | pd.Series) -> pd.Series:
    """Month indexes as the dates of the months' first days (vectorised)."""
    idx = np.asarray(index, dtype="int64")
    parts = pd.DataFrame({"year": idx // 12, "month": idx % 12 + 1, "day": 1})
    return pd.to_datetime(parts).dt.date if len(idx) else pd.Series([], dtype=object)


def _as_of(store: Store, as_of: dt.datetime | dt.date | None) -> dt.datetime:
    """The given as-of instant in UTC, or the store's default (now, for an empty store)."""
    if as_of is not None:
        return to_utc(as_of)
    try:
        return default_as_of(store)
    except NotFoundError:
        return dt.datetime.now(dt.UTC)


def _utc(value: Any) -> dt.datetime | None:
    """A timestamp from either store as an aware UTC datetime (None when missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _completed_orders(as_of: dt.datetime) -> str:
    return (
        f"SELECT user_id, ts FROM orders WHERE {COMPLETED} AND user_id IS NOT NULL "
        f"AND ts < {ts_lit(as_of)}"
    )


def _numeric(frame: pd.DataFrame, columns: list[str], dtype: Any = "float64") -> pd.DataFrame:
    """Columns as numbers (PostgreSQL returns Decimals and objects)."""
    for col in columns:
        frame[col] = pd.to_numeric(frame[col]).astype(dtype)
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return out


def _segments_first(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    """Rows ordered with ``(all)`` first, then segments by name."""
    key = frame["segment"].ne(ALL).astype(int).astype(str) + "\x00" + frame["segment"]
    order = frame.assign(_key=key).sort_values(["_key", *extra], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _wilson(frame: pd.DataFrame, successes: str, n: str, alpha: float = 0.05) -> pd.DataFrame:
    """Add ``rate``, ``ci_lo`` and ``ci_hi`` (Wilson score interval) from two count columns."""
    x = frame[successes].to_numpy(dtype="float64")
    m = frame[n].to_numpy(dtype="float64")
    ok = np.isfinite(x) & np.isfinite(m)
    lo, hi = wilson_interval(np.where(ok, x, 0.0), np.where(ok, m, 0.0), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(ok & (m > 0), x / np.where(m > 0, m, 1.0), np.nan)
    frame["rate"] = rate
    frame["ci_lo"] = np.where(ok, lo, np.nan)
    frame["ci_hi"] = np.where(ok, hi, np.nan)
    return frame


# --------------------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class RetentionResult:
    """Monthly cohort retention.

    Attributes
    ----------
    matrix : DataFrame
        Tidy, one row per (cohort, month since the cohort): ``cohort`` (date of the
        cohort month's first day, UTC), ``months_since`` (0, 1, ...), ``cohort_size``,
        ``active_users``, ``retention`` (= active_users / cohort_size) and ``complete``
        (False for the calendar month that had not ended at ``as_of``: its retention is
        only a lower bound). Months not started by ``as_of`` have no row.
    cohort_by : str
        ``"first_purchase"`` (month of the first completed order) or ``"signup"``
        (month of ``users.created_at``).
    activity : str
        ``"order"`` (a completed order in the month) or ``"event"`` (any event).
    as_of : datetime
        Only activity strictly before this instant was used.
    max_months : int
        Highest ``months_since`` reported.
    """

    matrix: pd.DataFrame
    cohort_by: str
    activity: str
    as_of: dt.datetime
    max_months: int

    def wide(self, *, complete_only: bool = True) -> pd.DataFrame:
        """Cohorts (rows, oldest first) x months since the cohort (columns), as shares.

        Parameters
        ----------
        complete_only : bool, default=True
            Leave out the cells of the calendar month still running at ``as_of`` (and the
            cohort of that month). With False they are shown, understated.

        Returns
        -------
        DataFrame
            Indexed by ``cohort``; a ``cohort_size`` column, then one column per
            ``months_since`` (0, 1, ...). Months not observed yet are NaN.
        """
        m = self.matrix
        if complete_only:
            m = m[m["complete"]]
        if m.empty:
            return pd.DataFrame(
                {"cohort_size": pd.Series(dtype="int64")}, index=pd.Index([], name="cohort")
            )
        wide = m.pivot(index="cohort", columns="months_since", values="retention")
        wide.columns = [int(c) for c in wide.columns]
        wide.insert(0, "cohort_size", m.groupby("cohort")["cohort_size"].first())
        return wide.sort_index()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the tidy matrix as records plus the parameters."""
        return {
            "cohort_by": self.cohort_by,
            "activity": self.activity,
            "as_of": self.as_of.isoformat(),
            "max_months": self.max_months,
            "matrix": _records(self.matrix.assign(cohort=self.matrix["cohort"].astype(str))),
        }


def retention_sql(
    *, cohort_by: CohortBy, activity: Activity, as_of: dt.datetime, max_months: int
) -> str:
    """The SQL behind :func:`retention_matrix` (DuckDB dialect): per cohort month its
    size and, per month since, the number of its users active in that month."""
    a = ts_lit(as_of)
    if activity == "order":
        act_src = _completed_orders(as_of)
    else:
        act_src = f"SELECT user_id, ts FROM events WHERE user_id IS NOT NULL AND ts < {a}"
    if cohort_by == "first_purchase":
        coh = (
            f"SELECT user_id, min({_month_index('ts')}) AS cohort "
            f"FROM ({_completed_orders(as_of)}) AS o GROUP BY user_id"
        )
    else:
        coh = (
            f"SELECT user_id, {_month_index('created_at')} AS cohort FROM users "
            f"WHERE created_at IS NOT NULL AND created_at < {a}"
        )
    return f"""
    WITH act AS (SELECT DISTINCT user_id, {_month_index("ts")} AS m FROM ({act_src}) AS a),
    coh AS ({coh}),
    sizes AS (SELECT cohort, count(*) AS cohort_size FROM coh GROUP BY cohort),
    hits AS (
        SELECT coh.cohort, act.m - coh.cohort AS months_since, count(*) AS active_users
        FROM coh JOIN act ON act.user_id = coh.user_id
        WHERE act.m >= coh.cohort AND act.m <= coh.cohort + {int(max_months)}
        GROUP BY coh.cohort, act.m - coh.cohort
    )
    SELECT s.cohort, s.cohort_size, h.months_since, h.active_users
    FROM sizes AS s LEFT JOIN hits AS h ON h.cohort = s.cohort"""


def _cohort_grid(raw: pd.DataFrame, end: dt.datetime, max_months: int) -> pd.DataFrame:
    """The rows of :func:`retention_sql` on the full grid of every cohort x month since
    that has started by ``end`` (0 active users where none), with ``retention`` and
    ``complete`` (the month ended before ``end``)."""
    raw = _numeric(raw, ["cohort", "cohort_size"], "int64")
    raw = _numeric(raw, ["months_since", "active_users"])
    last_started = _py_month_index(end - dt.timedelta(microseconds=1))
    first_running = _py_month_index(end)  # months before it have ended by as_of
    # the grid of every cohort x month since that has started by as_of (vectorised)
    sizes = raw.drop_duplicates("cohort")[["cohort", "cohort_size"]].sort_values("cohort")
    k = np.arange(max_months + 1, dtype="int64")
    grid = pd.DataFrame(
        {
            "cohort": np.repeat(sizes["cohort"].to_numpy(), k.size),
            "cohort_size": np.repeat(sizes["cohort_size"].to_numpy(), k.size),
            "months_since": np.tile(k, len(sizes)),
        }
    )
    grid = grid[grid["cohort"] + grid["months_since"] <= last_started]
    hits = raw.dropna(subset=["months_since"]).astype({"months_since": "int64"})
    out = grid.merge(
        hits[["cohort", "months_since", "active_users"]],
        on=["cohort", "months_since"],
        how="left",
    )
    out["active_users"] = out["active_users"].fillna(0).astype("int64")
    out["retention"] = out["active_users"] / out["cohort_size"]
    out["complete"] = (out["cohort"] + out["months_since"]) < first_running
    out["cohort"] = _month_start(out["cohort"]).to_numpy()
    return out[
        ["cohort", "months_since", "cohort_size", "active_users", "retention", "complete"]
    ].reset_index(drop=True)


def retention_matrix(
    store: Store,
    *,
    cohort_by: CohortBy = "first_purchase",
    activity: Activity = "order",
    as_of: dt.datetime | dt.date | None = None,
    max_months: int = 24,
) -> RetentionResult:
    """Monthly cohort retention: of the users whose cohort is month c, the share active in
    month c + m.

    A user's cohort is the UTC calendar month of their first completed order
    (``cohort_by="first_purchase"``; buyers only) or of ``users.created_at``
    (``"signup"``; users without a sign-up date are left out). A user is active in a month
    with at least one completed order (``activity="order"``) or any event
    (``activity="event"``) in it. With first-purchase cohorts and order activity, month 0
    is 1 by construction.

    Parameters
    ----------
    store : segmint.store.Store
    cohort_by : {"first_purchase", "signup"}, default="first_purchase"
    activity : {"order", "event"}, default="order"
    as_of : datetime or date, optional
        Use only activity strictly before this instant (a date means its midnight UTC).
        Default: :func:`segmint.features.default_as_of` (midnight after the newest order
        or event). Months starting at or after it are not reported; the month running at
        it is flagged ``complete=False``.
    max_months : int, default=24
        Report months since the cohort 0 to ``max_months``.

    Returns
    -------
    RetentionResult
    """
    if cohort_by not in ("first_purchase", "signup"):
        raise ConfigError(f"cohort_by is 'first_purchase' or 'signup', got {cohort_by!r}")
    if activity not in ("order", "event"):
        raise ConfigError(f"activity is 'order' or 'event', got {activity!r}")
    if max_months < 0:
        raise ConfigError(f"max_months must be 0 or more, got {max_months}")
    started = time.perf_counter()
    end = _as_of(store, as_of)
    raw = store.query(
        retention_sql(cohort_by=cohort_by, activity=activity, as_of=end, max_months=max_months)
    )
    matrix = _cohort_grid(raw, end, max_months)
    log.debug(
        "retention matrix: %d cohorts, %d cells in %.2fs",
        matrix["cohort"].nunique(),
        len(matrix),
        time.perf_counter() - started,
    )
    return RetentionResult(
        matrix=matrix, cohort_by=cohort_by, activity=activity, as_of=end, max_months=max_months
    )


# --------------------------------------------------------------------------- repeat purchases


def repeat_purchase_rate(
    store: Store,
    *,
    as_of: dt.datetime | dt.date | None = None,
    within_days: int | None = None,
    segment_run_id: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Share of buyers with at least two completed orders, with a Wilson interval.

    Parameters
    ----------
    store : segmint.store.Store
    as_of : datetime or date, optional
        Orders strictly before this instant (default: :func:`segmint.features.default_as_of`).
    within_days : int, optional
        Count a buyer as a repeat buyer only when the second completed order came at most
        this many days after the first. Only buyers whose first order is at least
        ``within_days`` before ``as_of`` are counted (the others had no full chance).
    segment_run_id : str, optional
        A segment run (id, or a segmentation name for its latest run): adds one row per
        segment of the run (its members who are buyers; segments without buyers have
        ``buyers = 0`` and NaN rates).
    alpha : float, default=0.05

    Returns
    -------
    DataFrame
        ``segment`` (``"(all)"`` first: every buyer in the store), ``buyers``,
        ``repeat_buyers``, ``rate``, ``ci_lo``, ``ci_hi``.
    """
    if within_days is not None and within_days < 0:
        raise ConfigError(f"within_days must be 0 or more, got {within_days}")
    end = _as_of(store, as_of)
    cutoff = end if within_days is None else end - dt.timedelta(days=within_days)
    gap = (
        "TRUE"
        if within_days is None
        else f"epoch(second_ts) - epoch(first_ts) <= {within_days * 86400}"
    )
    parts = [f"SELECT {lit(ALL)} AS segment, count(*) AS buyers, sum(rep) AS repeat_buyers FROM e"]
    if segment_run_id is not None:
        run_id = resolve_run(store, segment_run_id)
        parts.append(
            "SELECT a.segment, count(e.user_id) AS buyers, coalesce(sum(e.rep), 0) AS repeat_buyers "
            "FROM segment_assignments AS a LEFT JOIN e ON e.user_id = a.user_id "
            f"WHERE a.run_id = {lit(run_id)} GROUP BY a.segment"
        )
    sql = f"""
    WITH o AS (
        SELECT user_id, ts, row_number() OVER (PARTITION BY user_id ORDER BY ts) AS rn
        FROM orders
        WHERE {COMPLETED} AND user_id IS NOT NULL AND ts < {ts_lit(end)}
    ),
    b AS (
        SELECT user_id, min(ts) AS first_ts, max(ts) FILTER (WHERE rn = 2) AS second_ts
        FROM o WHERE rn <= 2 GROUP BY user_id
    ),
    e AS (
        SELECT user_id,
               CASE WHEN second_ts IS NOT NULL AND {gap} THEN 1 ELSE 0 END AS rep
        FROM b WHERE first_ts < {ts_lit(cutoff)}
    )
    {" UNION ALL ".join(parts)}"""
    out = store.query(sql)
    out["segment"] = out["segment"].astype(str)
    out = _numeric(out.fillna({"repeat_buyers": 0}), ["buyers", "repeat_buyers"], "int64")
    out = _wilson(out, "repeat_buyers", "buyers", alpha)
    return _segments_first(out)[["segment", "buyers", "repeat_buyers", "rate", "ci_lo", "ci_hi"]]


def retention_by_segment(
    store: Store,
    segment_run_id: str,
    *,
    months: tuple[int, ...] = (1, 3, 6),
    as_of: dt.datetime | dt.date | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per segment of a run: the share of its users with a completed order within 1, 3, 6
    (calendar) months after the run's as-of instant, with Wilson intervals.

    The window of ``m`` months is ``[t0, t0 + m months)`` with ``t0`` the run's ``as_of``
    (its creation time when the run has none). A window that had not ended by ``as_of``
    is not reported as a rate (``complete = False``, NaN): a partial window would read as
    churn.

    Parameters
    ----------
    store : segmint.store.Store
    segment_run_id : str
        A run id, or a segmentation name for its latest run.
    months : tuple of int, default=(1, 3, 6)
    as_of : datetime or date, optional
        The end of the data (default: :func:`segmint.features.default_as_of`).
    alpha : float, default=0.05

    Returns
    -------
    DataFrame
        One row per (segment, months): ``segment`` (``"(all)"`` first: every user of the
        run), ``months``, ``users``, ``ordered`` (users with a completed order in the
        window), ``rate``, ``ci_lo``, ``ci_hi``, ``complete``.
    """
    if not months or any(int(m) < 1 for m in months):
        raise ConfigError(f"months must be whole numbers of 1 or more, got {months!r}")
    run_id = resolve_run(store, segment_run_id)
    run = store.query(
        f"SELECT as_of, created_at FROM segment_runs WHERE run_id = {lit(run_id)}"
    ).iloc[0]
    t0 = _utc(run["as_of"]) or _utc(run["created_at"])
    assert t0 is not None  # created_at is NOT NULL
    end = _as_of(store, as_of)
    ms = sorted({int(m) for m in months})
    ends = {m: (pd.Timestamp(t0) + pd.DateOffset(months=m)).to_pydatetime() for m in ms}
    counts = ", ".join(
        f"count(f.user_id) FILTER (WHERE f.first_ts < {ts_lit(ends[m])}) AS ordered_{m}" for m in ms
    )
    sql = f"""
    WITH f AS (
        SELECT user_id, min(ts) AS first_ts FROM orders
        WHERE {COMPLETED} AND user_id IS NOT NULL
          AND ts >= {ts_lit(t0)} AND ts < {ts_lit(end)}
        GROUP BY user_id
    )
    SELECT a.segment, count(*) AS users, {counts}
    FROM segment_assignments AS a LEFT JOIN f ON f.user_id = a.user_id
    WHERE a.run_id = {lit(run_id)}
    GROUP BY a.segment"""
    wide = store.query(sql)
    wide["segment"] = wide["segment"].astype(str)
    cols = ["users", *[f"ordered_{m}" for m in ms]]
    wide = _numeric(wide, cols, "int64")
    total = pd.DataFrame([{"segment": ALL, **wide[cols].sum().to_dict()}])
    wide = pd.concat([total, wide], ignore_index=True)
    long = wide.melt(
        id_vars=["segment", "users"],
        value_vars=[f"ordered_{m}" for m in ms],
        var_name="months",
        value_name="ordered",
    )
    long["months"] = long["months"].str.removeprefix("ordered_").astype("int64")
    complete_by_m = {m: ends[m] <= end for m in ms}
    long["complete"] = long["months"].map(complete_by_m).astype(bool)
    long["ordered"] = long["ordered"].astype("float64").where(long["complete"])
    long = _wilson(long, "ordered", "users", alpha)
    long = _segments_first(long, "months")
    return long[["segment", "months", "users", "ordered", "rate", "ci_lo", "ci_hi", "complete"]]


# --------------------------------------------------------------------------- before / after


@dataclass(frozen=True)
class BeforeAfterResult:
    """A user-level metric in the window before a date against the window after it.

    Attributes
    ----------
    table : DataFrame
        One row per (group, period): ``group`` (``treated``, and ``comparison`` when
        given), ``period`` (``before`` / ``after``), ``users``, ``mean`` (per user, zeros
        included), ``ci_lo``, ``ci_hi`` (t interval of the mean).
    difference : float
        Mean over the treated users of their own change (after - before): a paired
        comparison.
    ci : tuple of float
        t interval of ``difference`` (n - 1 degrees of freedom).
    p_value : float
        Two-sided one-sample t test of the mean change against 0
        (``scipy.stats.ttest_1samp`` on the per-user changes).
    warning : str
        Why this is not a causal effect (and, with a comparison group, the parallel-trends
        assumption of the difference-in-differences); also notes on incomplete windows
        and users in both groups.
    did : DataFrame or None
        With a comparison group: rows ``before`` (level difference treated - comparison in
        the pre-period), ``after``, ``difference-in-differences`` (mean change treated -
        mean change comparison) and ``pre-trend (placebo)`` (the same one window earlier);
        columns ``quantity``, ``treated``, ``comparison``, ``difference``, ``ci_lo``,
        ``ci_hi``, ``p_value`` (Welch, ``scipy.stats.ttest_ind(equal_var=False)`` on the
        per-user values).
    """

    table: pd.DataFrame
    difference: float
    ci: tuple[float, float]
    p_value: float
    warning: str
    did: pd.DataFrame | None
    metric: str = "revenue"
    date: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    window_days: int = 30
    alpha: float = 0.05

    @property
    def did_estimate(self) -> float:
        """The difference-in-differences (NaN without a comparison group)."""
        if self.did is None:
            return math.nan
        row = self.did[self.did["quantity"] == "difference-in-differences"]
        return float(row["difference"].iloc[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tables as records, NaN as None."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "metric": self.metric,
            "date": self.date.isoformat(),
            "window_days": self.window_days,
            "alpha": self.alpha,
            "table": _records(self.table),
            "difference": num(self.difference),
            "ci": [num(self.ci[0]), num(self.ci[1])],
            "p_value": num(self.p_value),
            "warning": self.warning,
            "did": None if self.did is None else _records(self.did),
        }


def _metric_source(metric: str) -> tuple[str, str, bool]:
    """(source relation, per-row value, is an indicator) for a before/after metric."""
    orders = f"(SELECT user_id, ts, amount FROM orders WHERE {COMPLETED} AND user_id IS NOT NULL)"
    if metric == "revenue":
        return orders, "s.amount", False
    if metric == "orders":
        return orders, "1", False
    if metric == "conversion":
        return orders, "1", True
    if metric == "events":
        quiet = ", ".join(lit(e) for e in MESSAGE_EVENTS)
        return (
            f"(SELECT user_id, ts FROM events WHERE user_id IS NOT NULL AND event NOT IN ({quiet}))",
            "1",
            False,
        )
    raise ConfigError(f"metric is one of revenue, orders, conversion, events; got {metric!r}")


def before_after_sql(
    *,
    date: dt.datetime,
    metric: str,
    window_days: int,
    users: str | None,
    comparison: str | None,
) -> str:
    """The SQL behind :func:`before_after` (DuckDB dialect): per group, the number of
    users and the mean and sample variance of the per-user values ``pre`` (one window
    before ``before``), ``before``, ``after``, ``delta`` (after - before) and
    ``pre_delta`` (before - pre)."""
    src, value, indicator = _metric_source(metric)
    w = dt.timedelta(days=window_days)
    p0, b0, t, a1 = (ts_lit(x) for x in (date - 2 * w, date - w, date, date + w))
    windows = {"pre": (p0, b0), "before": (b0, t), "after": (t, a1)}

    def agg(lo: str, hi: str) -> str:
        cond = f"x.ts >= {lo} AND x.ts < {hi}"
        if indicator:
            return f"CASE WHEN count(x.ts) FILTER (WHERE {cond}) > 0 THEN 1.0 ELSE 0.0 END"
        return f"CAST(coalesce(sum(x.v) FILTER (WHERE {cond}), 0) AS DOUBLE)"

    in_t = "TRUE" if users is None else "t.user_id IS NOT NULL"
    in_c = "FALSE" if comparison is None else "c.user_id IS NOT NULL"
    if users is None and comparison is not None:
        in_t = f"NOT ({in_c})"
    joins = ""
    ctes = ""
    if users is not None:
        ctes += f"t AS (SELECT DISTINCT user_id FROM ({users}) AS q), "
        joins += " LEFT JOIN t ON t.user_id = e.user_id"
    if comparison is not None:
        ctes += f"c AS (SELECT DISTINCT user_id FROM ({comparison}) AS q), "
        joins += " LEFT JOIN c ON c.user_id = e.user_id"
    stats_cols = ", ".join(
        f"CAST(avg({v}) AS DOUBLE) AS mean_{v}, CAST(var_samp({v}) AS DOUBLE) AS var_{v}"
        for v in ("pre", "before", "after", "delta", "pre_delta")
    )
    per_user = ", ".join(f"{agg(lo, hi)} AS {name}" for name, (lo, hi) in windows.items())
    return f"""
    WITH {ctes}
    e AS (SELECT user_id FROM users WHERE created_at IS NULL OR created_at < {b0}),
    g AS (
        SELECT e.user_id,
               CASE WHEN ({in_t}) AND ({in_c}) THEN 'both'
                    WHEN {in_t} THEN 'treated' ELSE 'comparison' END AS grp
        FROM e{joins}
        WHERE ({in_t}) OR ({in_c})
    ),
    x AS (
        SELECT s.user_id, s.ts, {value} AS v
        FROM {src} AS s
        WHERE s.ts >= {p0} AND s.ts < {a1}
    ),
    pu AS (
        SELECT g.user_id, g.grp, {per_user}
        FROM g LEFT JOIN x ON x.user_id = g.user_id
        GROUP BY g.user_id, g.grp
    ),
    d AS (SELECT grp, pre, before, after, after - before AS delta, before - pre AS pre_delta FROM pu)
    SELECT grp, count(*) AS n, {stats_cols}
    FROM d GROUP BY grp"""


def _t_interval(
    mean: np.ndarray, var: np.ndarray, n: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Student t interval of means and the two-sided p-value of mean == 0 (vectorised;
    NaN for fewer than 2 values or zero variance)."""
    ok = (n >= 2) & (var > 0)
    df = np.where(ok, n - 1.0, 1.0)
    se = np.sqrt(np.where(ok, var, 1.0) / np.where(ok, n, 1.0))
    half = stats.t.ppf(1.0 - alpha / 2.0, df) * se
    p = 2.0 * stats.t.sf(np.abs(mean / se), df)
    nan = np.full(np.shape(mean), np.nan)
    return (
        np.where(ok, mean - half, nan),
        np.where(ok, mean + half, nan),
        np.where(ok, p, nan),
    )


def before_after(
    store: Store,
    *,
    date: dt.date | dt.datetime,
    metric: Metric = "revenue",
    window_days: int = 30,
    users: str | None = None,
    comparison: str | None = None,
    alpha: float = 0.05,
) -> BeforeAfterResult:
    """A per-user metric in ``[date - window, date)`` against ``[date, date + window)``.

    Each user is compared with themselves (the change after - before), so the mean change
    gets a paired t interval. This is **not causal** (see :attr:`BeforeAfterResult.warning`).
    With a ``comparison`` group the difference-in-differences (mean change of the treated
    minus mean change of the comparison) gets a Welch interval; it relies on parallel
    trends, checked by a placebo one window earlier.

    Users count from the start of the before window: users created at or after
    ``date - window`` are left out (their "before" would be empty by construction). Users
    in both groups are left out of both.

    Parameters
    ----------
    store : segmint.store.Store
    date : date or datetime
        The day of the change (a date means its midnight UTC).
    metric : {"revenue", "orders", "conversion", "events"}, default="revenue"
        Per user and window: completed-order revenue, completed orders, 1 when at least
        one completed order else 0, or events (without e-mail reactions and surveys).
    window_days : int, default=30
    users : str, optional
        SQL (DuckDB dialect) returning a ``user_id`` column: the treated group.
        Default: every user (every user not in ``comparison`` when that is given).
    comparison : str, optional
        SQL returning ``user_id`` of a comparison group: adds the difference-in-differences.
    alpha : float, default=0.05

    Returns
    -------
    BeforeAfterResult
    """
    _check_before_after(metric, window_days, alpha)
    t = to_utc(date)
    raw = store.query(
        before_after_sql(
            date=t, metric=metric, window_days=window_days, users=users, comparison=comparison
        )
    )
    raw["grp"] = raw["grp"].astype(str)
    raw = _numeric(raw, [c for c in raw.columns if c != "grp"]).set_index("grp")
    groups = ["treated"] + (["comparison"] if comparison is not None else [])
    g = _group_rows(raw, groups)
    table = _period_table(g, groups, alpha)
    tr: dict[Any, float] = g.loc["treated"].to_dict()
    d_lo, d_hi, d_p = _t_interval(
        np.array([tr["mean_delta"]]), np.array([tr["var_delta"]]), np.array([tr["n"]]), alpha
    )
    notes = [BEFORE_AFTER_WARNING]
    did = None
    if comparison is not None:
        did = _did_table(tr, g.loc["comparison"].to_dict(), alpha)
        notes.append(DID_NOTE)
    n_both = int(raw["n"].to_dict().get("both", 0))
    if n_both:
        notes.append(f"{n_both:,} users are in both groups and were left out of both.")
    notes.extend(_incomplete_after(store, t, window_days))
    log.debug("before/after %s on %s: %d treated users", metric, t.date(), int(tr["n"]))
    return BeforeAfterResult(
        table=table,
        difference=float(tr["mean_delta"]),
        ci=(float(d_lo[0]), float(d_hi[0])),
        p_value=float(d_p[0]),
        warning=" ".join(notes),
        did=did,
        metric=metric,
        date=t,
        window_days=window_days,
        alpha=alpha,
    )


def _check_before_after(metric: str, window_days: int, alpha: float) -> None:
    """Refuse a window under a day, an alpha outside (0, 1) or an unknown metric."""
    if window_days < 1:
        raise ConfigError(f"window_days must be 1 or more, got {window_days}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}")
    _metric_source(metric)  # validates the metric


def _group_rows(raw: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """One float row per group of ``raw`` (indexed by group); a group without users has
    ``n`` 0 and NaN statistics."""
    empty = pd.Series(np.nan, index=raw.columns).fillna({"n": 0.0})
    g = pd.DataFrame({k: raw.loc[k] if k in raw.index else empty for k in groups}).T
    return g.astype("float64")


def _period_table(g: pd.DataFrame, groups: list[str], alpha: float) -> pd.DataFrame:
    """Per group and period (before, after): users and the mean with its t interval
    (vectorised over the rows)."""
    table = pd.DataFrame(
        {
            "group": np.repeat(groups, 2),
            "period": ["before", "after"] * len(groups),
            "users": np.repeat(g["n"].to_numpy(), 2).astype("int64"),
            "mean": g[["mean_before", "mean_after"]].to_numpy().ravel(),
            "var": g[["var_before", "var_after"]].to_numpy().ravel(),
        }
    )
    lo, hi, _ = _t_interval(
        table["mean"].to_numpy(), table["var"].to_numpy(), table["users"].to_numpy(), alpha
    )
    table["ci_lo"], table["ci_hi"] = lo, hi
    return table.drop(columns="var")


def _did_table(tr: dict[Any, float], c: dict[Any, float], alpha: float) -> pd.DataFrame:
    """Treated against comparison (Welch): before, after, the difference-in-differences
    and the placebo pre-trend."""
    names = ["before", "after", "delta", "pre_delta"]
    w = welch_batch(
        [tr[f"mean_{v}"] for v in names],
        [tr[f"var_{v}"] for v in names],
        tr["n"],
        [c[f"mean_{v}"] for v in names],
        [c[f"var_{v}"] for v in names],
        c["n"],
        alpha,
    )
    return pd.DataFrame(
        {
            "quantity": ["before", "after", "difference-in-differences", "pre-trend (placebo)"],
            "treated": w["mean1"],
            "comparison": w["mean0"],
            "difference": w["diff"],
            "ci_lo": w["lo"],
            "ci_hi": w["hi"],
            "p_value": w["p"],
        }
    )


def _incomplete_after(store: Store, t: dt.datetime, window_days: int) -> list[str]:
    """A note when the data ends before the after window does (else none)."""
    data_end = _as_of(store, None)
    window_end = t + dt.timedelta(days=window_days)
    if data_end >= window_end:
        return []
    observed = max((data_end - t).total_seconds() / 86400.0, 0.0)
    return [
        f"The after window is not complete: the data ends {observed:.1f} days after "
        f"the date, not {window_days}; 'after' is understated."
    ]
