"""The workspace's Overview (``/``): the store's key figures for a period against the
period before, what arrives through the tracking API right now (a live region) and the
data-quality alerts, each linking to the page that explains it.

- KPIs: active users (an event or an order in the period), buyers, revenue and average
  order value (completed orders, as features and profiles count them: ``monetary`` is the
  sum of completed amounts), repeat rate (the period's buyers with at least two completed
  orders by the period's end, as :func:`segmint.experiments.repeat_purchase_rate` counts
  repeat buyers). One aggregate query gives both periods.
- A store whose last order is older than the period (the demo's history) is shown up to
  its last order, and the page says so ("as of").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from segmint.web._auth import Viewer
from segmint.web._charts import line
from segmint.web._core import N_, fragment, language_of, page, workspace

router = APIRouter()

PERIODS = (7, 30, 90)
FLAT = 0.005
"""A relative change smaller than this (half a percent) is shown as flat."""
FLAT_POINTS = 0.001
"""A rate that moved less than this (0.1 percentage points) is shown as flat."""
REJECTED_ALERT = 0.01
"""A load that rejected more than this share of the rows it read raises an alert."""
STALE_DAYS = 7
"""A segmentation whose latest run is older than this raises an alert."""
LIVE_MINUTES = 60
RECENT_MINUTES = 5
N_LAST_LOADS = 5


# -- the period --------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """The period shown ``[start, end)`` and the one before it ``[previous_start, start)``;
    ``as_of`` is the last order's day when the period ends there rather than now."""

    days: int
    start: datetime
    end: datetime
    previous_start: datetime
    as_of: date | None = None

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The period's last (UTC) day."""
        return (self.end - timedelta(microseconds=1)).date()


def choose_period(days: int, latest_order: datetime | None, now: datetime) -> Period:
    """The ``days`` up to now, or, when no completed order falls in them (historical data),
    the ``days`` up to the end of the day of the last completed order."""
    end, as_of = now, None
    if latest_order is not None and latest_order < now - timedelta(days=days):
        as_of = latest_order.astimezone(UTC).date()
        end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=days)
    return Period(days, start, end, start - timedelta(days=days), as_of)


# -- the KPIs ----------------------------------------------------------------------------
# Both periods in one pass: completed orders up to the end (a buyer's count to the end of
# each period tells a repeat buyer), events and orders for activity.
KPI_SQL = """
WITH p AS (
    SELECT CAST(? AS TIMESTAMPTZ) AS prev_start, CAST(? AS TIMESTAMPTZ) AS cur_start,
           CAST(? AS TIMESTAMPTZ) AS end_ts
),
o AS (
    SELECT o.user_id, o.ts, o.amount, p.prev_start, p.cur_start
    FROM orders AS o, p WHERE o.status = 'completed' AND o.ts < p.end_ts
),
money AS (
    SELECT sum(amount) FILTER (WHERE ts >= cur_start) AS revenue_cur,
           count(*) FILTER (WHERE ts >= cur_start) AS orders_cur,
           sum(amount) FILTER (WHERE ts < cur_start) AS revenue_prev,
           count(*) FILTER (WHERE ts < cur_start) AS orders_prev
    FROM o WHERE ts >= prev_start
),
b AS (
    SELECT user_id,
           count(*) FILTER (WHERE ts >= cur_start) AS n_cur,
           count(*) FILTER (WHERE ts >= prev_start AND ts < cur_start) AS n_prev,
           count(*) FILTER (WHERE ts < cur_start) AS n_to_prev_end,
           count(*) AS n_to_end
    FROM o WHERE user_id IS NOT NULL GROUP BY user_id
),
buyers AS (
    SELECT count(*) FILTER (WHERE n_cur > 0) AS buyers_cur,
           count(*) FILTER (WHERE n_cur > 0 AND n_to_end >= 2) AS repeat_cur,
           count(*) FILTER (WHERE n_prev > 0) AS buyers_prev,
           count(*) FILTER (WHERE n_prev > 0 AND n_to_prev_end >= 2) AS repeat_prev
    FROM b
),
seen AS (
    SELECT x.user_id, bool_or(x.ts >= p.cur_start) AS cur, bool_or(x.ts < p.cur_start) AS prev
    FROM (
        SELECT user_id, ts FROM events WHERE user_id IS NOT NULL
        UNION ALL
        SELECT user_id, ts FROM orders WHERE user_id IS NOT NULL
    ) AS x, p
    WHERE x.ts >= p.prev_start AND x.ts < p.end_ts
    GROUP BY x.user_id
),
active AS (
    SELECT count(*) FILTER (WHERE cur) AS users_cur, count(*) FILTER (WHERE prev) AS users_prev
    FROM seen
)
SELECT * FROM active, buyers, money
"""


@dataclass(frozen=True)
class Kpi:
    """One key figure: its value in the period and in the one before."""

    key: str
    label: str
    kind: str  # count, money, rate
    current: float | None
    previous: float | None

    @property
    def change(self) -> float | None:
        """Relative change (counts, money) or the difference (rates, a share of 1)."""
        cur, prev = self.current, self.previous
        if cur is None or prev is None:
            return None
        if self.kind == "rate":
            return cur - prev
        return None if prev == 0 else (cur - prev) / prev

    @property
    def direction(self) -> str:
        """``up``, ``down`` or ``flat`` (``none`` when there is nothing to compare)."""
        change = self.change
        if change is None:
            return "none"
        if abs(change) < (FLAT_POINTS if self.kind == "rate" else FLAT):
            return "flat"
        return "up" if change > 0 else "down"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return None if math.isnan(x) else x


def _ratio(a: Any, b: Any) -> float | None:
    a, b = _num(a), _num(b)
    return None if a is None or not b else a / b


def read_kpis(store: Any, period: Period) -> list[Kpi]:
    """The five KPIs of ``period`` and the period before (one query)."""
    params = [period.previous_start, period.start, period.end]
    row = store.query(KPI_SQL, params).iloc[0].to_dict()

    def both(key: str) -> tuple[float | None, float | None]:
        return _num(row[f"{key}_cur"]) or 0.0, _num(row[f"{key}_prev"]) or 0.0

    aov = (
        _ratio(row["revenue_cur"], row["orders_cur"]),
        _ratio(row["revenue_prev"], row["orders_prev"]),
    )
    repeat = (
        _ratio(row["repeat_cur"], row["buyers_cur"]),
        _ratio(row["repeat_prev"], row["buyers_prev"]),
    )
    return [
        Kpi("users", N_("Active users"), "count", *both("users")),
        Kpi("buyers", N_("Buyers"), "count", *both("buyers")),
        Kpi("revenue", N_("Revenue"), "money", *both("revenue")),
        Kpi("aov", N_("Average order value"), "money", *aov),
        Kpi("repeat", N_("Repeat rate"), "rate", *repeat),
    ]


def latest_order(store: Any) -> datetime | None:
    from segmint.store import COMPLETED

    value = store.scalar(f"SELECT max(ts) FROM orders WHERE {COMPLETED}")
    return _aware(value)


def _aware(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- what arrives now ----------------------------------------------------------------------
def read_live(store: Any, now: datetime) -> dict[str, Any]:
    """Tracking messages per minute over the last hour, how many in the last five
    minutes, and the last loads."""
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=LIVE_MINUTES - 1)
    recent_from = now - timedelta(minutes=RECENT_MINUTES)
    per_minute = store.query(
        "SELECT date_trunc('minute', received_at) AS minute, count(*) AS n, "
        "count(*) FILTER (WHERE received_at >= ?) AS recent "
        "FROM tracked_messages WHERE received_at >= ? GROUP BY 1",
        [recent_from, first],
    )
    counts = {
        _aware(m).strftime("%H:%M"): int(n)  # type: ignore[union-attr]
        for m, n in zip(per_minute["minute"], per_minute["n"], strict=True)
    }
    minutes = [(first + timedelta(minutes=i)).strftime("%H:%M") for i in range(LIVE_MINUTES)]
    loads = store.query(
        "SELECT load_id, source, target_table, started_at, finished_at, rows_read, "
        "rows_accepted, rows_rejected FROM loads ORDER BY started_at DESC, load_id LIMIT ?",
        [N_LAST_LOADS],
    )
    return {
        "points": [(m, counts.get(m, 0)) for m in minutes],
        "recent": int(per_minute["recent"].sum()) if len(per_minute) else 0,
        "loads": loads.to_dict(orient="records"),
    }


def events_chart(live: dict[str, Any], lang: Any) -> Any:
    return line(
        live["points"],
        title=lang.t(N_("Events per minute, last 60 minutes")),
        axis_label=lang.t(N_("events per minute (UTC)")),
        width=380,
    )


# -- alerts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    """A data-quality alert: ``kind`` picks its text in the template, ``href`` explains."""

    kind: str  # rejected_load, quarantine, job_failed, segmentation_stale, segmentation_missing, config
    href: str
    level: str = "warn"
    values: tuple[tuple[str, Any], ...] = ()

    @property
    def v(self) -> dict[str, Any]:
        return dict(self.values)


def read_alerts(store: Any, config: Any, now: datetime, config_error: str | None) -> list[Alert]:
    """Everything on the store's health that wants a look, most serious first."""
    alerts: list[Alert] = []
    if config_error:
        alerts.append(Alert("config", "/settings", "bad"))
    alerts += _job_alerts(store)
    alerts += _load_alerts(store, now)
    alerts += _segmentation_alerts(store, config, now)
    return alerts


def _job_alerts(store: Any) -> list[Alert]:
    failed = store.query(
        "SELECT job, started_at, error FROM (SELECT job, started_at, status, error, "
        "row_number() OVER (PARTITION BY job ORDER BY started_at DESC) AS rn FROM job_runs) "
        "AS r WHERE rn = 1 AND status = 'failed' ORDER BY job"
    )
    return [
        Alert("job_failed", "/jobs", "bad", (("job", r["job"]), ("when", r["started_at"])))
        for r in failed.to_dict(orient="records")
    ]


def _load_alerts(store: Any, now: datetime) -> list[Alert]:
    rejected = store.query(
        "SELECT load_id, source, started_at, rows_read, rows_rejected, count(*) OVER () AS n_all "
        "FROM loads WHERE started_at >= ? AND rows_read > 0 AND rows_rejected > ? * rows_read "
        "ORDER BY started_at DESC LIMIT 3",
        [now - timedelta(days=STALE_DAYS), REJECTED_ALERT],
    )
    alerts = [
        Alert(
            "rejected_load",
            f"/quality/{r['load_id']}",
            "warn",
            (
                ("source", r["source"]),
                ("share", r["rows_rejected"] / r["rows_read"]),
                ("rejected", r["rows_rejected"]),
                ("when", r["started_at"]),
            ),
        )
        for r in rejected.to_dict(orient="records")
    ]
    if len(rejected) and int(rejected["n_all"].iloc[0]) > len(rejected):
        more = int(rejected["n_all"].iloc[0]) - len(rejected)
        alerts.append(Alert("more_loads", "/quality", "warn", (("n", more),)))
    n_quarantined = store.scalar(
        "SELECT count(*) FROM quarantine WHERE load_id IN "
        "(SELECT load_id FROM loads WHERE started_at >= ?)",
        [now - timedelta(days=1)],
    )
    if n_quarantined:
        alerts.append(Alert("quarantine", "/quality", "warn", (("n", int(n_quarantined)),)))
    return alerts


def _segmentation_alerts(store: Any, config: Any, now: datetime) -> list[Alert]:
    last = store.query(
        "SELECT segmentation, max(created_at) AS last FROM segment_runs GROUP BY segmentation"
    )
    latest = {str(s): _aware(t) for s, t in zip(last["segmentation"], last["last"], strict=True)}
    alerts = []
    for name in config.segmentations:
        when = latest.get(name)
        href = f"/segments/{name}"
        if when is None:
            alerts.append(Alert("segmentation_missing", href, "warn", (("name", name),)))
        elif when < now - timedelta(days=STALE_DAYS):
            values = (("name", name), ("when", when), ("days", (now - when).days))
            alerts.append(Alert("segmentation_stale", href, "warn", values))
    return alerts


# -- the routes ------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request,
    session: Viewer,
    days: int = Query(30, description="the period: 7, 30 or 90 days"),
) -> HTMLResponse:
    if days not in PERIODS:
        days = 30
    ws = workspace(request)
    config = ws.config()
    now = datetime.now(UTC)
    with ws.project() as p:
        period = choose_period(days, latest_order(p.store), now)
        kpis = read_kpis(p.store, period)
        live = read_live(p.store, now)
        alerts = read_alerts(p.store, config, now, ws.config_error)
    return page(
        request,
        "overview.html.j2",
        active="overview",
        title=N_("Overview"),
        period=period,
        periods=PERIODS,
        kpis=kpis,
        live=live,
        chart=events_chart(live, language_of(request)),
        alerts=alerts,
    )


@router.get("/overview/live", response_class=HTMLResponse)
def overview_live(request: Request, session: Viewer) -> HTMLResponse:
    """The live part of the overview (events per minute, last loads), every 5 s."""
    ws = workspace(request)
    now = datetime.now(UTC)
    with ws.project() as p:
        live = read_live(p.store, now)
    return fragment(
        request,
        "overview_live.html.j2",
        live=live,
        chart=events_chart(live, language_of(request)),
    )
