"""The per-customer summary the CLV models read, computed in the store with one query.

Purchases are counted per day (several orders on one day are one purchase, as in the
literature and ``lifetimes``); ``x`` is the number of purchase days after the first,
``t_x`` the days from the first to the last, ``T`` the days from the first to the last day
before the as-of instant, ``m`` the mean value of the repeat purchase days (the first
purchase is left out of the spend model, as in Fader, Hardie & Lee's Gamma-Gamma note).
Only completed orders strictly before the as-of instant count.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from segmint.store import Store, completed_orders

SUMMARY_COLUMNS = (
    "user_id", "x", "t_x", "T", "m", "first_value", "first_purchase", "last_purchase"
)  # fmt: skip


def as_utc(value: date | datetime) -> datetime:
    """An aware UTC datetime (a date is its midnight UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def summary_sql(
    as_of: date | datetime, *, since: date | datetime | None = None, unit_days: float = 1.0
) -> str:
    """The SELECT of the summary (DuckDB dialect; the store transpiles it).

    ``since`` keeps only customers whose first purchase is on or after it (a cohort, as
    CDNOW's customers of the first quarter of 1997). ``unit_days`` is the time unit
    (7 for weeks).
    """
    cut = as_utc(as_of)
    last_day = (cut - timedelta(microseconds=1)).date().isoformat()
    orders = completed_orders(before=cut, columns="user_id, ts, amount")
    cohort = ""
    if since is not None:
        cohort = f"WHERE first_day >= CAST('{as_utc(since).date().isoformat()}' AS DATE)"
    unit = float(unit_days)
    return f"""
    WITH daily AS (
        SELECT user_id, CAST(ts AS DATE) AS day, sum(coalesce(amount, 0)) AS value
        FROM ({orders}) AS o GROUP BY user_id, CAST(ts AS DATE)
    ), numbered AS (
        SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY day) AS n FROM daily
    ), per_user AS (
        SELECT user_id, count(*) - 1 AS x, min(day) AS first_day, max(day) AS last_day,
               sum(CASE WHEN n > 1 THEN value ELSE 0 END) AS repeat_value,
               sum(CASE WHEN n = 1 THEN value ELSE 0 END) AS first_value
        FROM numbered GROUP BY user_id
    )
    SELECT user_id, CAST(x AS DOUBLE) AS x,
           date_diff('day', first_day, last_day) / {unit} AS t_x,
           date_diff('day', first_day, CAST('{last_day}' AS DATE)) / {unit} AS "T",
           CASE WHEN x > 0 THEN repeat_value / x END AS m, first_value,
           first_day AS first_purchase, last_day AS last_purchase
    FROM per_user {cohort}
    ORDER BY user_id"""


def customer_summary(
    store: Store,
    as_of: date | datetime,
    *,
    since: date | datetime | None = None,
    unit_days: float = 1.0,
) -> pd.DataFrame:
    """One row per customer with a completed order before ``as_of``: user_id, x, t_x, T,
    m (mean repeat purchase-day value, NaN without a repeat), first_value (the first
    purchase day's value), first and last purchase day."""
    frame = store.query(summary_sql(as_of, since=since, unit_days=unit_days))
    frame["user_id"] = frame["user_id"].astype(str)
    for c in ("x", "t_x", "T", "m", "first_value"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


def holdout_purchases(store: Store, start: date | datetime, end: date | datetime) -> pd.DataFrame:
    """Purchase days and revenue per customer in ``[start, end)``: user_id, purchases,
    revenue (the sum of the completed orders' amounts)."""
    orders = completed_orders(
        since=as_utc(start), before=as_utc(end), columns="user_id, ts, amount"
    )
    frame = store.query(
        f"SELECT user_id, CAST(count(DISTINCT CAST(ts AS DATE)) AS DOUBLE) AS purchases, "
        f"CAST(sum(coalesce(amount, 0)) AS DOUBLE) AS revenue "
        f"FROM ({orders}) AS o GROUP BY user_id"
    )
    frame["user_id"] = frame["user_id"].astype(str)
    frame["revenue"] = pd.to_numeric(frame["revenue"], errors="coerce").astype("float64")
    return frame


__all__ = ["SUMMARY_COLUMNS", "as_utc", "customer_summary", "holdout_purchases", "summary_sql"]
