"""Campaign evaluation from the holdout: what the campaign did, for whom, and at what cost.

The unit is the user the campaign *assigned* (treatment or control). Effects are
intention-to-treat: a treated user whose message bounced still counts as treated, so the
comparison stays the randomized one. Each user's outcome window opens at the campaign's
exposure time ``t0`` and lasts ``window_days``:

* a campaign planned and sent by segmint: ``t0`` = the first delivery of the run that
  assigned the user (the run's creation time when nothing was sent yet), the same instant
  for both arms of a run;
* an imported campaign (:func:`import_assignments`): ``t0`` = the send time in the file.

Outcomes come from the store: completed orders (conversion, revenue, orders) and events
(visits, activity) in ``[t0, t0 + window)``; the CUPED covariate is the user's completed
order revenue in ``[t0 - pre_days, t0)``. Covariates for the per-segment breakdown and the
uplift model are features as of the earliest ``t0`` (pre-treatment by construction).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint.campaigns._tables import ensure_campaign_tables, lit, ts_lit
from segmint.errors import ConfigError, NotFoundError
from segmint.experiments._stats import (
    CupedResult,
    SrmResult,
    benjamini_hochberg,
    cuped,
    holm,
    newcombe_interval,
    percentile_interval,
    ratio_interval,
    srm_test,
    two_proportion_ztest,
    welch_batch,
    welch_ttest,
    wilson_interval,
)
from segmint.store import Store

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.experiments._uplift import UpliftResult

log = logging.getLogger(__name__)

VISIT_EVENTS = ("page_view", "product_view", "app_open", "store_visit", "search", "add_to_cart")
"""Events that count as a visit (a user came back to the shop)."""

MESSAGE_EVENTS = ("email_open", "email_click", "nps", "csat")
"""Events left out of "activity": reactions to the campaign's own messages and surveys."""

MIN_UPLIFT_USERS = 200
MIN_UPLIFT_CONVERSIONS = 20


@dataclass(frozen=True)
class CampaignEvaluation:
    """Everything ``segmint evaluate`` reports about one campaign.

    Attributes
    ----------
    arms : DataFrame
        One row per arm: users, converters, conversion with its Wilson CI, revenue,
        revenue per user, orders per user, visit rate, pre-period revenue per user.
    effects : DataFrame
        Tidy, one row per metric and method: ``metric, method, treatment, control, diff,
        diff_lo, diff_hi, rel, rel_lo, rel_hi, p_value`` (treatment minus control; ``rel``
        is relative to the control).
    srm : SrmResult
        Arm sizes against the designed split.
    cuped : CupedResult
        Revenue per user adjusted with the pre-period revenue (its ``variance_reduction``).
    segments : DataFrame
        Per segment: sizes, conversion per arm, lift with Newcombe CI, p-value, Holm and
        Benjamini-Hochberg adjusted p-values, revenue lift with Welch CI and adjusted p.
    roi : DataFrame
        ``item, value, lo, hi``: incremental revenue, cost, net, ROI, cost per incremental
        conversion (bootstrap CIs; cost counts messages and offer redemptions).
    uplift : UpliftResult or None
        Two-model uplift ranking with its Qini curve (None when too few users).
    users : DataFrame
        The user-level table everything above is computed from.
    breakdowns : DataFrame
        Each arm against the control within each level of each ``by`` variable, with Holm
        and BH p-values within the variable and across all (see
        :func:`segmint.experiments.breakdown_table`); empty without ``by``.
    """

    campaign: str
    window_days: int
    pre_days: int
    start: datetime
    end: datetime
    observed_days: float
    alpha: float
    segmentation: str | None
    arms: pd.DataFrame
    effects: pd.DataFrame
    srm: SrmResult
    cuped: CupedResult
    segments: pd.DataFrame
    roi: pd.DataFrame
    uplift: UpliftResult | None
    users: pd.DataFrame = field(repr=False)
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    breakdowns: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def complete(self) -> bool:
        """Whether the whole outcome window is covered by data in the store."""
        return self.observed_days >= self.window_days

    def effect(self, metric: str, method: str | None = None) -> pd.Series:
        """One row of :attr:`effects`."""
        rows = self.effects[self.effects["metric"] == metric]
        if method is not None:
            rows = rows[rows["method"] == method]
        if rows.empty:
            raise KeyError(f"no effect {metric!r} ({method or 'any method'})")
        return rows.iloc[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every table as a list of records."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records", date_format="iso"))

        return {
            "campaign": self.campaign,
            "window_days": self.window_days,
            "pre_days": self.pre_days,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "observed_days": round(self.observed_days, 3),
            "complete": self.complete,
            "alpha": self.alpha,
            "segmentation": self.segmentation,
            "arms": records(self.arms),
            "effects": records(self.effects),
            "srm": self.srm.to_dict(),
            "cuped": self.cuped.to_dict(),
            "segments": records(self.segments),
            "roi": records(self.roi),
            "uplift": None
            if self.uplift is None
            else {
                "model": self.uplift.model,
                "qini_coefficient": self.uplift.qini_coefficient,
                "auuc": None if not np.isfinite(self.uplift.auuc) else self.uplift.auuc,
                "qini": records(self.uplift.qini),
            },
            "warnings": list(self.warnings),
            "breakdowns": records(self.breakdowns),
        }


EVALUATIONS_DDL = """
CREATE TABLE IF NOT EXISTS campaign_evaluations (
    evaluation_id VARCHAR PRIMARY KEY,
    campaign VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    window_days INTEGER NOT NULL,
    complete BOOLEAN NOT NULL,
    result JSON NOT NULL
);
"""


def save_evaluation(store: Store, ev: CampaignEvaluation) -> str:
    """Store an evaluation (its tables, not the user rows); returns its id."""
    with store.schema_change():
        store.execute(EVALUATIONS_DDL)
    now = datetime.now(UTC)
    eid = f"e-{now:%Y%m%dT%H%M%S%f}-{ev.campaign}"[:120]
    body = json.dumps(ev.to_dict(), allow_nan=False, default=str)
    store.execute(
        "INSERT INTO campaign_evaluations (evaluation_id, campaign, created_at, window_days, "
        f"complete, result) VALUES ({lit(eid)}, {lit(ev.campaign)}, {ts_lit(now)}, "
        f"{int(ev.window_days)}, {'TRUE' if ev.complete else 'FALSE'}, "
        f"CAST({lit(body)} AS JSON))"
    )
    return eid


def latest_evaluations(store: Store) -> list[dict[str, Any]]:
    """The newest stored evaluation of every campaign (as :meth:`CampaignEvaluation.to_dict`
    data plus ``evaluation_id`` and ``created_at``), campaigns by name."""
    with store.schema_change():
        store.execute(EVALUATIONS_DDL)
    frame = store.query(
        "SELECT evaluation_id, campaign, created_at, result FROM campaign_evaluations "
        "ORDER BY campaign, created_at DESC, evaluation_id DESC"
    )
    out = []
    for _, group in frame.groupby("campaign", sort=True):
        row = group.iloc[0]
        data = json.loads(row["result"]) if isinstance(row["result"], str) else row["result"]
        data["evaluation_id"] = str(row["evaluation_id"])
        data["created_at"] = pd.Timestamp(row["created_at"]).isoformat()
        out.append(data)
    return out


# -- loading ---------------------------------------------------------------------------
def _units_sql(campaign: str) -> str:
    """Assigned users with their arm and exposure time ``t0``."""
    c = lit(campaign)
    return (
        "SELECT a.user_id, a.arm, a.run_id, CASE WHEN r.status = 'imported' THEN a.assigned_at "
        "ELSE coalesce(d.first_sent, r.created_at) END AS t0 "
        "FROM campaign_assignments a JOIN campaign_runs r ON r.run_id = a.run_id "
        "LEFT JOIN (SELECT run_id, min(sent_at) AS first_sent FROM deliveries "
        f"WHERE campaign = {c} AND sent_at IS NOT NULL GROUP BY run_id) d "
        f"ON d.run_id = a.run_id WHERE a.campaign = {c}"
    )


def _user_outcomes(
    store: Store,
    campaign: str,
    window_days: int,
    pre_days: int,
    visit_events: Sequence[str],
) -> pd.DataFrame:
    w, p = f"INTERVAL '{int(window_days)} days'", f"INTERVAL '{int(pre_days)} days'"
    visits = ", ".join(lit(e) for e in visit_events) or "NULL"
    quiet = ", ".join(lit(e) for e in MESSAGE_EVENTS)
    orders = store.query(
        f"WITH u AS ({_units_sql(campaign)}) "
        "SELECT u.user_id, u.arm, u.run_id, u.t0, "
        f"count(o.order_id) FILTER (WHERE o.ts >= u.t0) AS orders, "
        f"coalesce(sum(o.amount) FILTER (WHERE o.ts >= u.t0), 0) AS revenue, "
        f"coalesce(sum(o.amount) FILTER (WHERE o.ts < u.t0), 0) AS pre_revenue "
        "FROM u LEFT JOIN orders o ON o.user_id = u.user_id AND o.status = 'completed' "
        f"AND o.ts >= u.t0 - {p} AND o.ts < u.t0 + {w} "
        "GROUP BY u.user_id, u.arm, u.run_id, u.t0"
    )
    events = store.query(
        f"WITH u AS ({_units_sql(campaign)}) "
        f"SELECT u.user_id, count(*) FILTER (WHERE e.event IN ({visits})) AS visits, "
        "count(*) AS events "
        "FROM u JOIN events e ON e.user_id = u.user_id "
        f"AND e.ts >= u.t0 AND e.ts < u.t0 + {w} AND e.event NOT IN ({quiet}) "
        "GROUP BY u.user_id"
    )
    out = orders.merge(events, on="user_id", how="left")
    for col in ("orders", "visits", "events"):
        out[col] = pd.to_numeric(out[col]).fillna(0).astype("int64")
    for col in ("revenue", "pre_revenue"):
        out[col] = pd.to_numeric(out[col]).astype("float64")
    out["t0"] = pd.to_datetime(out["t0"], utc=True)
    out["user_id"] = out["user_id"].astype(str)
    out["converted"] = out["orders"] > 0
    out["visited"] = out["visits"] > 0
    return out.sort_values("user_id", kind="stable").reset_index(drop=True)


def _segments_at_plan(store: Store, campaign: str) -> tuple[str | None, pd.DataFrame]:
    """The segment each user was in when the campaign planned them (pre-treatment)."""
    c = lit(campaign)
    frame = store.query(
        "SELECT au.user_id, min(au.segment) AS segment, min(r.segmentation) AS segmentation "
        "FROM campaign_audiences au JOIN campaign_assignments a ON a.campaign = au.campaign "
        "AND a.user_id = au.user_id AND a.run_id = au.run_id "
        f"JOIN campaign_runs r ON r.run_id = au.run_id WHERE au.campaign = {c} "
        "GROUP BY au.user_id"
    )
    if frame.empty:
        return None, pd.DataFrame({"user_id": [], "segment": []})
    name = str(frame["segmentation"].iloc[0])
    return name, frame[["user_id", "segment"]].astype(str)


# -- statistics on the user table ------------------------------------------------------
def _arms_table(users: pd.DataFrame, alpha: float) -> pd.DataFrame:
    g = users.groupby("arm", sort=False)
    arms = pd.DataFrame(
        {
            "users": g.size(),
            "converters": g["converted"].sum(),
            "revenue": g["revenue"].sum(),
            "revenue_per_user": g["revenue"].mean(),
            "orders_per_user": g["orders"].mean(),
            "visit_rate": g["visited"].mean(),
            "events_per_user": g["events"].mean(),
            "pre_revenue_per_user": g["pre_revenue"].mean(),
        }
    ).reindex(["treatment", "control"])
    arms["users"] = arms["users"].fillna(0).astype("int64")
    arms["converters"] = arms["converters"].fillna(0).astype("int64")
    arms["conversion"] = arms["converters"] / arms["users"].where(arms["users"] > 0)
    lo, hi = wilson_interval(arms["converters"].to_numpy(), arms["users"].to_numpy(), alpha)
    arms["conversion_lo"], arms["conversion_hi"] = lo, hi
    cols = ["users", "converters", "conversion", "conversion_lo", "conversion_hi"]
    rest = [c for c in arms.columns if c not in cols]
    return arms[cols + rest].rename_axis("arm").reset_index()


def _proportion_row(metric: str, x1: int, n1: int, x0: int, n0: int, alpha: float) -> dict:
    lo, hi = newcombe_interval(x1, n1, x0, n0, alpha)
    rlo, rhi = ratio_interval(x1, n1, x0, n0, alpha)
    _, p = two_proportion_ztest(x1, n1, x0, n0)
    p1 = x1 / n1 if n1 else float("nan")
    p0 = x0 / n0 if n0 else float("nan")
    return {
        "metric": metric,
        "method": "newcombe",
        "treatment": p1,
        "control": p0,
        "diff": p1 - p0,
        "diff_lo": float(lo),
        "diff_hi": float(hi),
        "rel": p1 / p0 - 1 if p0 else float("nan"),
        "rel_lo": float(rlo) - 1,
        "rel_hi": float(rhi) - 1,
        "p_value": float(p),
    }


def _relative_interval(
    diff: float, se_diff: float, mean0: float, var_mean0: float, alpha: float
) -> tuple[float, float, float]:
    """Relative lift ``diff / mean0`` with a delta-method CI that keeps the control mean's
    own uncertainty: with independent arms ``cov(diff, mean0) = -var(mean0)``, so
    ``var(diff/m0) ~ se^2/m0^2 + diff^2 var(m0)/m0^4 + 2 diff var(m0)/m0^3``."""
    if not mean0 or not np.isfinite(mean0) or not np.isfinite(se_diff):
        return float("nan"), float("nan"), float("nan")
    from scipy.stats import norm

    rel = diff / mean0
    var = se_diff**2 / mean0**2 + diff**2 * var_mean0 / mean0**4 + 2 * diff * var_mean0 / mean0**3
    half = float(norm.ppf(1 - alpha / 2)) * float(np.sqrt(max(var, 0.0)))
    return rel, rel - half, rel + half


def _mean_row(metric: str, method: str, a: np.ndarray, b: np.ndarray, alpha: float) -> dict:
    r = welch_ttest(a, b, alpha)
    var_m0 = float(np.var(b, ddof=1) / b.size) if b.size > 1 else float("nan")
    rel, rlo, rhi = _relative_interval(r.diff, r.se, r.mean0, var_m0, alpha)
    return {
        "metric": metric,
        "method": method,
        "treatment": r.mean1,
        "control": r.mean0,
        "diff": r.diff,
        "diff_lo": r.lo,
        "diff_hi": r.hi,
        "rel": rel,
        "rel_lo": rlo,
        "rel_hi": rhi,
        "p_value": r.p,
    }


def _bootstrap_means(
    values: np.ndarray, n_resamples: int, rng: np.random.Generator, chunk: int = 64
) -> np.ndarray:
    """Replicate column means of ``values`` (n x k), rows resampled jointly: (B x k)."""
    n, k = values.shape
    out = np.empty((n_resamples, k))
    if n == 0:
        out[:] = np.nan
        return out
    step = max(1, min(chunk, int(2e7 // max(n * k, 1))))
    for s in range(0, n_resamples, step):
        m = min(step, n_resamples - s)
        idx = rng.integers(0, n, size=(m, n))
        out[s : s + m] = values[idx].mean(axis=1)
    return out


def _effects(
    users: pd.DataFrame, alpha: float, n_resamples: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, CupedResult, np.ndarray, np.ndarray]:
    t = users["arm"].to_numpy() == "treatment"
    c = users["arm"].to_numpy() == "control"
    rows = []
    x1, n1 = int(users.loc[t, "converted"].sum()), int(t.sum())
    x0, n0 = int(users.loc[c, "converted"].sum()), int(c.sum())
    rows.append(_proportion_row("conversion", x1, n1, x0, n0, alpha))
    rev = users["revenue"].to_numpy(dtype=float)
    rows.append(_mean_row("revenue_per_user", "welch", rev[t], rev[c], alpha))
    # the bootstrap (percentile; arms resampled independently) for the skewed revenue
    cols = ["revenue", "converted", "offer_cost"]
    reps_t = _bootstrap_means(users.loc[t, cols].to_numpy(dtype=float), n_resamples, rng)
    reps_c = _bootstrap_means(users.loc[c, cols].to_numpy(dtype=float), n_resamples, rng)
    diff_reps = reps_t[:, 0] - reps_c[:, 0]
    blo, bhi = percentile_interval(diff_reps, alpha)
    m1, m0 = float(rev[t].mean()) if n1 else np.nan, float(rev[c].mean()) if n0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_reps = reps_t[:, 0] / reps_c[:, 0] - 1
    rlo, rhi = (
        percentile_interval(rel_reps[np.isfinite(rel_reps)], alpha)
        if np.isfinite(rel_reps).any()
        else (np.nan, np.nan)
    )
    p_boot = (
        float(min(1.0, 2 * min((diff_reps <= 0).mean(), (diff_reps >= 0).mean())))
        if n_resamples
        else np.nan
    )
    rows.append(
        {
            "metric": "revenue_per_user",
            "method": "bootstrap",
            "treatment": m1,
            "control": m0,
            "diff": m1 - m0,
            "diff_lo": blo,
            "diff_hi": bhi,
            "rel": m1 / m0 - 1 if m0 else np.nan,
            "rel_lo": rlo,
            "rel_hi": rhi,
            "p_value": p_boot,
        }
    )
    cu = cuped(rev[t | c], users.loc[t | c, "pre_revenue"].to_numpy(float), t[t | c], alpha)
    var_m0 = float(np.var(rev[c], ddof=1) / n0) if n0 > 1 else float("nan")
    crel, crlo, crhi = _relative_interval(cu.diff, cu.se, m0, var_m0, alpha)
    rows.append(
        {
            "metric": "revenue_per_user",
            "method": "cuped",
            "treatment": cu.mean1,
            "control": cu.mean0,
            "diff": cu.diff,
            "diff_lo": cu.lo,
            "diff_hi": cu.hi,
            "rel": crel,
            "rel_lo": crlo,
            "rel_hi": crhi,
            "p_value": cu.p,
        }
    )
    orders = users["orders"].to_numpy(float)
    rows.append(_mean_row("orders_per_user", "welch", orders[t], orders[c], alpha))
    v1, v0 = int(users.loc[t, "visited"].sum()), int(users.loc[c, "visited"].sum())
    rows.append(_proportion_row("visit_rate", v1, n1, v0, n0, alpha))
    ev = users["events"].to_numpy(float)
    rows.append(_mean_row("events_per_user", "welch", ev[t], ev[c], alpha))
    pre = users["pre_revenue"].to_numpy(float)
    rows.append(_mean_row("pre_revenue_per_user (balance)", "welch", pre[t], pre[c], alpha))
    return pd.DataFrame(rows), cu, reps_t, reps_c


def _segment_table(users: pd.DataFrame, alpha: float) -> pd.DataFrame:
    cols = [
        "segment", "n_treatment", "n_control", "conversion_treatment", "conversion_control",
        "lift", "lift_lo", "lift_hi", "p_value", "p_holm", "p_bh", "revenue_lift",
        "revenue_lift_lo", "revenue_lift_hi", "revenue_p_value", "revenue_p_holm",
        "revenue_p_bh",
    ]  # fmt: skip
    if "segment" not in users or users["segment"].isna().all():
        return pd.DataFrame(columns=cols)
    u = users.dropna(subset=["segment"]).assign(t=lambda f: f["arm"] == "treatment")
    g = u.groupby(["segment", "t"])
    agg = g.agg(
        n=("converted", "size"),
        x=("converted", "sum"),
        mean=("revenue", "mean"),
        var=("revenue", lambda s: s.var(ddof=1)),
    ).unstack("t")
    agg = pd.DataFrame(agg).reindex(
        columns=pd.MultiIndex.from_product([["n", "x", "mean", "var"], [True, False]])
    )
    n1 = agg[("n", True)].fillna(0).to_numpy(float)
    n0 = agg[("n", False)].fillna(0).to_numpy(float)
    x1 = agg[("x", True)].fillna(0).to_numpy(float)
    x0 = agg[("x", False)].fillna(0).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p0 = x1 / n1, x0 / n0
    lo, hi = newcombe_interval(x1, n1, x0, n0, alpha)
    _, p = two_proportion_ztest(x1, n1, x0, n0)
    w = welch_batch(
        agg[("mean", True)].to_numpy(float),
        agg[("var", True)].to_numpy(float),
        n1,
        agg[("mean", False)].to_numpy(float),
        agg[("var", False)].to_numpy(float),
        n0,
        alpha,
    )
    out = pd.DataFrame(
        {
            "segment": agg.index.astype(str),
            "n_treatment": n1.astype("int64"),
            "n_control": n0.astype("int64"),
            "conversion_treatment": p1,
            "conversion_control": p0,
            "lift": p1 - p0,
            "lift_lo": np.asarray(lo, float),
            "lift_hi": np.asarray(hi, float),
            "p_value": np.asarray(p, float),
            "revenue_lift": np.asarray(w["diff"], float),
            "revenue_lift_lo": np.asarray(w["lo"], float),
            "revenue_lift_hi": np.asarray(w["hi"], float),
            "revenue_p_value": np.asarray(w["p"], float),
        }
    )
    out["p_holm"] = holm(out["p_value"].to_numpy())
    out["p_bh"] = benjamini_hochberg(out["p_value"].to_numpy())
    out["revenue_p_holm"] = holm(out["revenue_p_value"].to_numpy())
    out["revenue_p_bh"] = benjamini_hochberg(out["revenue_p_value"].to_numpy())
    return (
        out[cols].sort_values("n_treatment", ascending=False, kind="stable").reset_index(drop=True)
    )


def _roi_table(
    users: pd.DataFrame,
    reps_t: np.ndarray,
    reps_c: np.ndarray,
    message_cost: float,
    alpha: float,
) -> pd.DataFrame:
    """Incremental revenue, cost, net and ROI for the treated arm, with bootstrap CIs.

    ``reps_*`` hold bootstrap replicate means of (revenue, converted, offer_cost).
    Incremental quantities scale the per-user difference to the treated arm's size.
    """
    t = users["arm"] == "treatment"
    c = users["arm"] == "control"
    n_t = int(t.sum())
    point_t = users.loc[t, ["revenue", "converted", "offer_cost"]].to_numpy(float).mean(axis=0)
    point_c = users.loc[c, ["revenue", "converted"]].to_numpy(float).mean(axis=0)

    def stats(mt: np.ndarray, mc: np.ndarray) -> dict[str, np.ndarray]:
        inc_rev = n_t * (mt[..., 0] - mc[..., 0])
        inc_conv = n_t * (mt[..., 1] - mc[..., 1])
        cost = message_cost + n_t * mt[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            roi = np.where(cost > 0, (inc_rev - cost) / cost, np.nan)
            cpic = np.where(inc_conv > 0, cost / inc_conv, np.nan)
        return {
            "incremental_revenue": inc_rev,
            "incremental_conversions": inc_conv,
            "cost": cost,
            "net": inc_rev - cost,
            "roi": roi,
            "cost_per_incremental_conversion": cpic,
        }

    point = stats(point_t, np.append(point_c, 0.0))
    reps = stats(reps_t, reps_c)
    rows = []
    for item, value in point.items():
        r = np.asarray(reps[item], float)
        r = r[np.isfinite(r)]
        if item == "cost_per_incremental_conversion" and len(r) < 0.975 * len(reps_t):
            lo, hi = np.nan, np.nan  # the lift CI reaches 0: the ratio is unbounded
        else:
            lo, hi = percentile_interval(r, alpha) if r.size else (np.nan, np.nan)
        rows.append({"item": item, "value": float(value), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


# -- costs -----------------------------------------------------------------------------
def _costs(
    store: Store,
    config: Config | None,
    campaign: str,
    users: pd.DataFrame,
    runs: pd.DataFrame,
    plan_segmentation: str | None,
) -> tuple[float, pd.Series]:
    """Total message cost and the offer cost each treated user would cost on converting.

    ``runs`` are the campaign's rows of ``campaign_runs``; ``plan_segmentation`` the
    segmentation its plan targeted (offers are looked up per segment at plan time).
    """
    imported = runs[runs["status"] == "imported"]
    offer = pd.Series(0.0, index=users.index)
    if not imported.empty:
        params = json.loads(imported["params"].iloc[0] or "{}")
        per_msg = float(params.get("cost_per_message", 0.0))
        per_red = float(params.get("cost_per_redemption", 0.0))
        n_sent = int((users["arm"] == "treatment").sum())
        offer[:] = per_red
        return per_msg * n_sent, offer
    sent = store.query(
        "SELECT channel, count(*) AS n FROM deliveries "
        f"WHERE campaign = {lit(campaign)} AND status = 'sent' GROUP BY channel"
    )
    playbook = config.playbook if config is not None else None
    total = 0.0
    for ch, n in zip(sent["channel"], sent["n"], strict=True):
        spec = playbook.channels.get(str(ch)) if playbook is not None else None
        total += (float(spec.cost_per_message) if spec is not None else 0.0) * int(n)
    if playbook is not None and plan_segmentation is not None and "segment_at_plan" in users:
        costs = {}
        for seg in users["segment_at_plan"].dropna().unique():
            strategy = playbook.strategy_for(plan_segmentation, str(seg))
            costs[seg] = strategy.offer.cost_per_redemption if strategy is not None else 0.0
        offer = users["segment_at_plan"].map(costs).fillna(0.0).astype(float)
    return total, offer


# -- the entry point -------------------------------------------------------------------
def evaluate_campaign(
    store: Store,
    campaign: str,
    *,
    config: Config | None = None,
    window_days: int = 30,
    pre_days: int = 90,
    segmentation: str | None = None,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    uplift: bool = True,
    visit_events: Sequence[str] = VISIT_EVENTS,
    seed: int = 0,
    by: Sequence[str] = (),
    max_levels: int = 20,
) -> CampaignEvaluation:
    """Evaluate a campaign from its holdout.

    Parameters
    ----------
    store : Store
        Holds the campaign's assignments (planned by segmint or imported) and the orders
        and events the outcomes come from.
    campaign : str
        The campaign name.
    config : Config, optional
        The project's configuration: the playbook's costs, and the segmentations used when
        ``segmentation`` names one.
    window_days : int, default 30
        Attribution window after each user's exposure time.
    pre_days : int, default 90
        Pre-period for the CUPED covariate (revenue before exposure).
    segmentation : str, optional
        Break the effect down by this segmentation of ``config``, computed on features as
        of the exposure (pre-treatment). By default a campaign planned by segmint uses the
        segments its plan targeted; an imported campaign has no breakdown.
    alpha : float, default 0.05
        1 - confidence level of every interval.
    n_resamples : int, default 2000
        Bootstrap resamples (revenue CI, ROI).
    uplift : bool, default True
        Fit the two-model uplift ranking (cross-fitted) and its Qini curve.
    visit_events : sequence of str
        Event names that count as a visit.
    seed : int, default 0
        Seeds the bootstrap and the uplift model's folds: reruns give the same numbers.
    by : sequence of str, optional
        Break the effects down by these user columns, traits (``traits.zip_code``),
        features or segmentations, as of the exposure (see
        :func:`segmint.experiments.breakdown_attributes`).
    max_levels : int, default 20
        Levels shown per ``by`` variable; the smallest beyond are folded into ``(other)``.
    """
    started = time.perf_counter()
    if window_days <= 0 or pre_days < 0:
        raise ConfigError("window_days must be > 0 and pre_days >= 0")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {alpha})")
    ensure_campaign_tables(store)
    known = store.query(
        "SELECT campaign, count(*) AS n FROM campaign_assignments GROUP BY campaign"
    )
    if campaign not in set(known["campaign"].astype(str)):
        names = ", ".join(sorted(known["campaign"].astype(str))) or "(none)"
        raise NotFoundError(
            f"campaign {campaign!r} has no assignments to evaluate; campaigns with "
            f"assignments: {names} (plan one with `segmint campaign plan`, or import a past "
            "experiment with `segmint campaign import`)"
        )
    rng = np.random.default_rng(seed)
    users = _user_outcomes(store, campaign, window_days, pre_days, visit_events)
    warnings: list[str] = []
    start = users["t0"].min().to_pydatetime()
    end = users["t0"].max().to_pydatetime() + timedelta(days=window_days)
    horizon = store.scalar(
        "SELECT max(ts) FROM (SELECT max(ts) AS ts FROM orders UNION ALL "
        "SELECT max(ts) FROM events) AS h"
    )
    horizon_ts = pd.Timestamp(horizon) if horizon is not None else None
    if horizon_ts is not None and horizon_ts.tzinfo is None:
        horizon_ts = horizon_ts.tz_localize("UTC")
    last_t0 = users["t0"].max()
    observed = (
        0.0
        if horizon_ts is None
        else float(np.clip((horizon_ts - last_t0).total_seconds() / 86_400, 0, window_days))
    )
    if observed < window_days:
        warnings.append(
            f"the outcome window is not complete: the store's data reaches "
            f"{horizon_ts:%Y-%m-%d %H:%M} UTC, {observed:.1f} of {window_days} days after the "
            f"last exposure ({last_t0:%Y-%m-%d %H:%M} UTC); the effects below are interim"
            if horizon_ts is not None
            else "the store has no orders or events: nothing to measure yet"
        )

    # pre-treatment segments
    seg_name: str | None = None
    plan_seg, at_plan = _segments_at_plan(store, campaign)
    if not at_plan.empty:
        users = users.merge(
            at_plan.rename(columns={"segment": "segment_at_plan"}), on="user_id", how="left"
        )
    features: pd.DataFrame | None = None
    if segmentation is not None or uplift:
        from segmint.features import CustomFeature, features_as_of

        custom = (
            [CustomFeature(n, c.expr, c.table) for n, c in config.features.custom.items()]
            if config is not None
            else []
        )
        features = features_as_of(store, start.astimezone(UTC), custom)
    if segmentation is not None:
        if config is None or segmentation not in config.segmentations:
            known_s = ", ".join(config.segmentations) if config is not None else "(no config)"
            raise NotFoundError(f"no segmentation {segmentation!r}; known: {known_s}")
        from segmint.segments._segment import run_segmentation

        assert features is not None
        result = run_segmentation(
            store,
            segmentation,
            config.segmentations[segmentation],
            features,
            as_of=start.astimezone(UTC),
            save=False,
        )
        seg = result.assignments[["user_id", "segment"]].astype(str)
        users = users.merge(seg, on="user_id", how="left")
        seg_name = segmentation
    elif "segment_at_plan" in users:
        users["segment"] = users["segment_at_plan"]
        seg_name = plan_seg

    # design: the configured split, per run
    runs = store.query(
        f"SELECT run_id, status, params FROM campaign_runs WHERE campaign = {lit(campaign)}"
    )
    holdout = {
        str(r): float(json.loads(p or "{}").get("holdout", np.nan))
        for r, p in zip(runs["run_id"], runs["params"], strict=True)
    }
    per_run = users.groupby("run_id").size()
    h = per_run.index.map(lambda r: holdout.get(str(r), np.nan)).to_numpy(float)
    if np.isnan(h).any():
        raise ConfigError(f"campaign {campaign!r}: a run has no recorded holdout share")
    expected_control = float((per_run.to_numpy() * h).sum())
    n_all = len(users)
    observed_counts = [
        int((users["arm"] == "treatment").sum()),
        int((users["arm"] == "control").sum()),
    ]
    srm = srm_test(
        observed_counts, [1 - expected_control / n_all, expected_control / n_all], alpha=0.01
    )
    if srm.flagged:
        warnings.append(
            f"SAMPLE RATIO MISMATCH: {observed_counts[0]:,} treatment / {observed_counts[1]:,} "
            f"control against a designed {1 - expected_control / n_all:.1%} / "
            f"{expected_control / n_all:.1%} split (chi-square p = {srm.p:.2g}); the "
            "assignment or the logging is broken and the effects below are NOT trustworthy"
        )

    message_cost, offer_cost = _costs(store, config, campaign, users, runs, plan_seg)
    users["offer_cost"] = offer_cost.to_numpy(float) * users["converted"].to_numpy(float)
    arms = _arms_table(users, alpha)
    effects, cu, reps_t, reps_c = _effects(users, alpha, n_resamples, rng)
    segments = _segment_table(users, alpha)
    roi = _roi_table(users, reps_t, reps_c, message_cost, alpha)
    from segmint.experiments._breakdown import evaluate_breakdowns

    breakdowns = evaluate_breakdowns(
        store, config, campaign, users, by, as_of=start.astimezone(UTC), alpha=alpha,
        max_levels=max_levels, features=features, warnings=warnings,
    )  # fmt: skip

    up = None
    if uplift and features is not None:
        up = _fit_uplift(users, features, seed, warnings)
    seconds = time.perf_counter() - started
    log.info("evaluated campaign %s (%d users) in %.2fs", campaign, n_all, seconds)
    return CampaignEvaluation(
        campaign=campaign,
        window_days=window_days,
        pre_days=pre_days,
        start=start,
        end=end,
        observed_days=observed,
        alpha=alpha,
        segmentation=seg_name,
        arms=arms,
        effects=effects,
        srm=srm,
        cuped=cu,
        segments=segments,
        roi=roi,
        uplift=up,
        users=users,
        warnings=tuple(warnings),
        seconds=seconds,
        breakdowns=breakdowns,
    )


def _fit_uplift(
    users: pd.DataFrame, features: pd.DataFrame, seed: int, warnings: list[str]
) -> UpliftResult | None:
    """Cross-fitted two-model uplift on pre-treatment features, with its Qini curve."""
    from segmint.experiments._uplift import TLearner, evaluate_uplift

    t = (users["arm"] == "treatment").to_numpy()
    y = users["converted"].to_numpy()
    if min(t.sum(), (~t).sum()) < MIN_UPLIFT_USERS or min(y[t].sum(), y[~t].sum()) < (
        MIN_UPLIFT_CONVERSIONS
    ):
        warnings.append(
            f"uplift model skipped: it needs at least {MIN_UPLIFT_USERS} users and "
            f"{MIN_UPLIFT_CONVERSIONS} conversions in each arm"
        )
        return None
    numeric = features.select_dtypes(include=["number", "boolean", "bool"]).columns
    x = users[["user_id"]].merge(features[["user_id", *numeric]], on="user_id", how="left")
    matrix = x[list(numeric)].astype("float64").to_numpy()
    model = TLearner(random_state=seed)
    scores = model.fit_predict(matrix, t, y)
    return evaluate_uplift(scores, t, y, model=str(model.model_name_))


# -- importing a past experiment -------------------------------------------------------
def import_assignments(
    store: Store,
    campaign: str,
    frame: pd.DataFrame,
    *,
    control_share: float,
    cost_per_message: float = 0.0,
    cost_per_redemption: float = 0.0,
    source: str | None = None,
) -> dict[str, int]:
    """Store a past randomized campaign's assignments so it can be evaluated.

    ``frame`` has ``user_id``, ``arm`` (``treatment``/``control``) and ``sent_at`` (the
    exposure time, one per user; naive times are UTC). ``control_share`` is the designed
    holdout, which the sample-ratio check compares against. Users unknown to the store and
    rows with a bad arm are refused with a count; importing the same file again replaces
    the earlier import of that campaign (idempotent) in one transaction.
    """
    if not 0 < control_share < 1:
        raise ConfigError(f"control_share must be between 0 and 1 (got {control_share})")
    missing = {"user_id", "arm", "sent_at"} - set(frame.columns)
    if missing:
        raise ConfigError(
            f"assignments need columns user_id, arm, sent_at; missing: {', '.join(sorted(missing))}"
            f" (found: {', '.join(map(str, frame.columns))})"
        )
    ensure_campaign_tables(store)
    f = frame[["user_id", "arm", "sent_at"]].copy()
    f["user_id"] = f["user_id"].astype(str)
    f["arm"] = f["arm"].astype(str).str.strip().str.lower()
    ts = pd.to_datetime(f["sent_at"], errors="coerce", utc=True)
    bad = ~f["arm"].isin(["treatment", "control"]) | ts.isna() | f["user_id"].duplicated()
    f = f.assign(sent_at=ts)[~bad]
    known = set(store.query("SELECT user_id FROM users")["user_id"].astype(str))
    unknown = ~f["user_id"].isin(known)
    f = f[~unknown]
    if f.empty:
        raise ConfigError(f"no usable assignment rows for {campaign!r}")
    c = lit(campaign)
    existing = store.query(f"SELECT DISTINCT status FROM campaign_runs WHERE campaign = {c}")[
        "status"
    ].tolist()
    if existing and set(existing) != {"imported"}:
        raise ConfigError(
            f"campaign {campaign!r} was planned by segmint; import under another name"
        )
    run_id = f"import-{campaign}"
    now = datetime.now(UTC)
    params = {
        "holdout": control_share,
        "source": source,
        "cost_per_message": cost_per_message,
        "cost_per_redemption": cost_per_redemption,
        "imported_at": now.isoformat(),
    }
    n_t, n_c = int((f["arm"] == "treatment").sum()), int((f["arm"] == "control").sum())
    rows = pd.DataFrame(
        {
            "campaign": campaign,
            "user_id": f["user_id"],
            "arm": f["arm"],
            "bucket": -1.0,
            "assigned_at": f["sent_at"],
            "run_id": run_id,
        }
    )
    first = f["sent_at"].min()
    con = store.engine
    con.register("_import_df", rows)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _import_rows AS SELECT campaign, user_id, arm, "
        "bucket::DOUBLE AS bucket, assigned_at::TIMESTAMPTZ AS assigned_at, run_id "
        "FROM _import_df"
    )
    con.unregister("_import_df")
    cols = ["campaign", "user_id", "arm", "bucket", "assigned_at", "run_id"]
    with store.transaction():
        store.execute(f"DELETE FROM campaign_assignments WHERE campaign = {c}")
        store.execute(f"DELETE FROM campaign_runs WHERE campaign = {c}")
        store.write_rows("campaign_assignments", "_import_rows", cols)
        store.execute(
            "INSERT INTO campaign_runs (run_id, campaign, created_at, as_of, segmentation, "
            "segment_run_id, previous_run_id, status, n_eligible, n_treatment, n_control, "
            f"params, funnel) VALUES ({lit(run_id)}, {c}, {ts_lit(now)}, "
            f"CAST('{first.date().isoformat()}' AS DATE), '', '', NULL, 'imported', "
            f"{n_t + n_c}, {n_t}, {n_c}, CAST({lit(json.dumps(params))} AS JSON), NULL)"
        )
    con.execute("DROP TABLE IF EXISTS _import_rows")
    return {
        "read": len(frame),
        "imported": n_t + n_c,
        "treatment": n_t,
        "control": n_c,
        "rejected_bad_rows": int(bad.sum()),
        "rejected_unknown_users": int(unknown.sum()),
    }
