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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint.campaigns import (
    DEFAULT_CONTROL,
    POOLED,
    Design,
    make_design,
    normalize_arm,
    run_designs,
)
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
from segmint.store import Store, completed, date_lit, lit, ts_lit

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.experiments._outcomes import FinalOutcomes
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
    control: str = DEFAULT_CONTROL
    treatments: tuple[str, ...] = ("treatment",)
    n_resamples: int = 0
    uplift_outcome: str = "conversion"
    outcomes_imported: tuple[str, ...] = ()
    breakdowns: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def complete(self) -> bool:
        """Whether the whole outcome window is covered by data in the store."""
        return self.observed_days >= self.window_days

    @property
    def main_comparison(self) -> str:
        """The arm whose effect :meth:`effect` returns by default: the only treatment arm,
        or every treatment arm pooled (``"any treatment"``) when there are several."""
        return self.treatments[0] if len(self.treatments) == 1 else POOLED

    def effect(self, metric: str, method: str | None = None, arm: str | None = None) -> pd.Series:
        """One row of :attr:`effects` (by default of :attr:`main_comparison`)."""
        rows = self.effects[
            (self.effects["metric"] == metric)
            & (self.effects["arm"] == (arm or self.main_comparison))
        ]
        if method is not None:
            rows = rows[rows["method"] == method]
        if rows.empty:
            raise KeyError(f"no effect {metric!r} ({method or 'any method'}, arm {arm!r})")
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
            "control": self.control,
            "treatments": list(self.treatments),
            "n_resamples": self.n_resamples,
            "uplift_outcome": self.uplift_outcome,
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
            "outcomes_imported": list(self.outcomes_imported),
            "breakdowns": records(self.breakdowns),
        }


def save_evaluation(store: Store, ev: CampaignEvaluation) -> str:
    """Store an evaluation (its tables, not the user rows); returns its id."""
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
    end: datetime | None = None,
) -> pd.DataFrame:
    w, p = f"INTERVAL '{int(window_days)} days'", f"INTERVAL '{int(pre_days)} days'"
    close = ts_lit(end) if end is not None else f"u.t0 + {w}"  # an import's outcome end
    visits = ", ".join(lit(e) for e in visit_events) or "NULL"
    quiet = ", ".join(lit(e) for e in MESSAGE_EVENTS)
    orders = store.query(
        f"WITH u AS ({_units_sql(campaign)}) "
        "SELECT u.user_id, u.arm, u.run_id, u.t0, "
        f"count(o.order_id) FILTER (WHERE o.ts >= u.t0) AS orders, "
        f"coalesce(sum(o.amount) FILTER (WHERE o.ts >= u.t0), 0) AS revenue, "
        f"coalesce(sum(o.amount) FILTER (WHERE o.ts < u.t0), 0) AS pre_revenue "
        f"FROM u LEFT JOIN orders o ON o.user_id = u.user_id AND {completed('o')} "
        f"AND o.ts >= u.t0 - {p} AND o.ts < {close} "
        "GROUP BY u.user_id, u.arm, u.run_id, u.t0"
    )
    events = store.query(
        f"WITH u AS ({_units_sql(campaign)}) "
        f"SELECT u.user_id, count(*) FILTER (WHERE e.event IN ({visits})) AS visits, "
        "count(*) AS events "
        "FROM u JOIN events e ON e.user_id = u.user_id "
        f"AND e.ts >= u.t0 AND e.ts < {close} AND e.event NOT IN ({quiet}) "
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


def _arms_table(users: pd.DataFrame, arms: Sequence[str], alpha: float) -> pd.DataFrame:
    g = users.groupby("arm", sort=False)
    table = pd.DataFrame(
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
    ).reindex(list(arms))
    table["users"] = table["users"].fillna(0).astype("int64")
    table["converters"] = table["converters"].fillna(0).astype("int64")
    table["conversion"] = table["converters"] / table["users"].where(table["users"] > 0)
    lo, hi = wilson_interval(table["converters"].to_numpy(), table["users"].to_numpy(), alpha)
    table["conversion_lo"], table["conversion_hi"] = lo, hi
    cols = ["users", "converters", "conversion", "conversion_lo", "conversion_hi"]
    rest = [c for c in table.columns if c not in cols]
    return table[cols + rest].rename_axis("arm").reset_index()


def _proportion_row(metric: str, x1: int, n1: int, x0: int, n0: int, alpha: float) -> dict:
    if not n1 or not n0:
        return _empty_row(metric, "newcombe")
    lo, hi = newcombe_interval(x1, n1, x0, n0, alpha)
    rlo, rhi = ratio_interval(x1, n1, x0, n0, alpha)
    _, p = two_proportion_ztest(x1, n1, x0, n0)
    p1, p0 = x1 / n1, x0 / n0
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


def _empty_row(metric: str, method: str) -> dict:
    """A comparison with an empty arm: every figure NaN (reported, never a crash)."""
    nan = float("nan")
    keys = ("treatment", "control", "diff", "diff_lo", "diff_hi", "rel", "rel_lo", "rel_hi")
    return {"metric": metric, "method": method, **dict.fromkeys(keys, nan), "p_value": nan}


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
    if not a.size or not b.size:
        return _empty_row(metric, method)
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


BOOTSTRAP_COLUMNS = ["revenue", "converted", "offer_cost"]
_CHUNK = 1 << 22


def _bootstrap_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Replicate column means of ``values`` (n x k), rows resampled jointly: (B x k).

    Exact and fast for zero-inflated rows (most users buy nothing): a replicate's column
    sums only depend on the draws that hit a row with a non-zero value, so the number of
    such draws is drawn from ``Binomial(n, m/n)`` and only those are made, uniformly among
    the ``m`` non-zero rows (the same distribution as drawing all ``n``; see
    :func:`segmint.experiments.bootstrap_means`). Memory stays under ~4M draws per chunk.
    """
    n, k = values.shape
    out = np.zeros((n_resamples, k))
    if n == 0:
        out[:] = np.nan
        return out
    rows = np.ascontiguousarray(values[(values != 0).any(axis=1)])
    m = len(rows)
    if m == 0:
        return out
    picks = (
        np.full(n_resamples, n, dtype=np.int64)
        if m == n
        else rng.binomial(n, m / n, size=n_resamples).astype(np.int64)
    )
    step = max(1, _CHUNK // n)
    for s in range(0, n_resamples, step):
        counts = picks[s : s + step]
        drawn = rows[rng.integers(0, m, size=int(counts.sum()))]
        if not len(drawn):
            continue
        starts = np.minimum(np.r_[0, np.cumsum(counts)[:-1]], len(drawn) - 1)
        sums = np.add.reduceat(drawn, starts, axis=0)
        sums[counts == 0] = 0.0  # reduceat gives the next row for an empty replicate
        out[s : s + counts.size] = sums
    return out / n


def bootstrap_p_value(diff_reps: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": ``2 (1 + k) / (N + 1)`` with ``k``
    the replicates on the far side of 0 (Davison & Hinkley, 1997, eq. 4.11; never 0, so its
    resolution is honest: the smallest value N replicates can give is ``2 / (N + 1)``)."""
    reps = diff_reps[np.isfinite(diff_reps)]
    if not reps.size:
        return float("nan")
    k = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    return float(min(1.0, 2 * (1 + k) / (reps.size + 1)))


def _step_failed(warnings: list[str], step: str, exc: BaseException) -> None:
    """An optional step (bootstrap, uplift) failed: say so in the result, go on."""
    log.warning("evaluation step %s failed", step, exc_info=exc)
    warnings.append(
        f"the {step} step failed and is left out ({type(exc).__name__}: {exc}); "
        "the other figures are unaffected"
    )


def _comparison(
    users: pd.DataFrame,
    arm: str,
    t: np.ndarray,
    c: np.ndarray,
    alpha: float,
    reps_t: np.ndarray | None,
    reps_c: np.ndarray | None,
) -> tuple[list[dict], CupedResult | None]:
    """Every effect row of one arm (``t``) against the control (``c``)."""
    rows = []
    x1, n1 = int(users.loc[t, "converted"].sum()), int(t.sum())
    x0, n0 = int(users.loc[c, "converted"].sum()), int(c.sum())
    rows.append(_proportion_row("conversion", x1, n1, x0, n0, alpha))
    rev = users["revenue"].to_numpy(dtype=float)
    rows.append(_mean_row("revenue_per_user", "welch", rev[t], rev[c], alpha))
    m1 = float(rev[t].mean()) if n1 else np.nan
    m0 = float(rev[c].mean()) if n0 else np.nan
    if reps_t is not None and reps_c is not None and n1 and n0:
        # the bootstrap (percentile; arms resampled independently) for the skewed revenue
        diff_reps = reps_t[:, 0] - reps_c[:, 0]
        blo, bhi = percentile_interval(diff_reps, alpha)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_reps = reps_t[:, 0] / reps_c[:, 0] - 1
        fin = rel_reps[np.isfinite(rel_reps)]
        rlo, rhi = percentile_interval(fin, alpha) if fin.size else (np.nan, np.nan)
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
                "p_value": bootstrap_p_value(diff_reps),
            }
        )
    else:
        rows.append(_empty_row("revenue_per_user", "bootstrap"))
    cu = None
    if n1 >= 2 and n0 >= 2:
        both = t | c
        cu = cuped(rev[both], users.loc[both, "pre_revenue"].to_numpy(float), t[both], alpha)
        var_m0 = float(np.var(rev[c], ddof=1) / n0)
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
    else:
        rows.append(_empty_row("revenue_per_user", "cuped"))
    orders = users["orders"].to_numpy(float)
    rows.append(_mean_row("orders_per_user", "welch", orders[t], orders[c], alpha))
    v1, v0 = int(users.loc[t, "visited"].sum()), int(users.loc[c, "visited"].sum())
    rows.append(_proportion_row("visit_rate", v1, n1, v0, n0, alpha))
    ev = users["events"].to_numpy(float)
    rows.append(_mean_row("events_per_user", "welch", ev[t], ev[c], alpha))
    pre = users["pre_revenue"].to_numpy(float)
    rows.append(_mean_row("pre_revenue_per_user (balance)", "welch", pre[t], pre[c], alpha))
    for r in rows:
        r["arm"] = arm
    return rows, cu


def _comparisons(users: pd.DataFrame, treatments: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """Each treatment arm's mask, then the pooled "any treatment" when there are several."""
    arm = users["arm"].to_numpy()
    out = [(a, arm == a) for a in treatments]
    if len(treatments) > 1:
        out.append((POOLED, np.isin(arm, list(treatments))))
    return out


def _effects(
    users: pd.DataFrame,
    treatments: Sequence[str],
    control: str,
    alpha: float,
    n_resamples: int,
    rng: np.random.Generator,
    warnings: list[str],
) -> tuple[pd.DataFrame, dict[str, CupedResult | None], dict[str, np.ndarray]]:
    """Every arm against the control (and the pooled treatment), with Holm and BH across
    the arms for each metric. Returns the effects, CUPED per comparison and the bootstrap
    replicates (per arm, the control and the pooled arm) the ROI reuses."""
    c = users["arm"].to_numpy() == control
    comparisons = _comparisons(users, treatments)
    reps: dict[str, np.ndarray] = {}
    if n_resamples > 0:
        try:
            for name, mask in [(control, c), *comparisons]:
                values = users.loc[mask, BOOTSTRAP_COLUMNS].to_numpy(float)
                reps[name] = _bootstrap_means(values, n_resamples, rng)
        except Exception as exc:  # an optional step: report it, keep the rest
            _step_failed(warnings, "bootstrap", exc)
            reps = {}
    rows: list[dict] = []
    cupeds: dict[str, CupedResult | None] = {}
    for name, mask in comparisons:
        r, cupeds[name] = _comparison(
            users, name, mask, c, alpha, reps.get(name), reps.get(control)
        )
        rows.extend(r)
    cols = ["arm", "metric", "method", "treatment", "control", "diff", "diff_lo", "diff_hi",
            "rel", "rel_lo", "rel_hi", "p_value"]  # fmt: skip
    effects = pd.DataFrame(rows)[cols]
    # several arms against one control: adjust each metric's p-values across the arms
    effects["p_holm"] = effects["p_value"]
    effects["p_bh"] = effects["p_value"]
    arms_only = effects["arm"] != POOLED
    for _, idx in effects[arms_only].groupby(["metric", "method"], sort=False).groups.items():
        p = effects.loc[idx, "p_value"].to_numpy(float)
        effects.loc[idx, "p_holm"] = holm(p)
        effects.loc[idx, "p_bh"] = benjamini_hochberg(p)
    return effects, cupeds, reps


def _segment_table(users: pd.DataFrame, control: str, alpha: float) -> pd.DataFrame:
    """Lift by segment, every treatment arm pooled against the control."""
    cols = [
        "segment", "n_treatment", "n_control", "conversion_treatment", "conversion_control",
        "lift", "lift_lo", "lift_hi", "p_value", "p_holm", "p_bh", "revenue_lift",
        "revenue_lift_lo", "revenue_lift_hi", "revenue_p_value", "revenue_p_holm",
        "revenue_p_bh",
    ]  # fmt: skip
    if "segment" not in users or users["segment"].isna().all():
        return pd.DataFrame(columns=cols)
    u = users.dropna(subset=["segment"]).assign(t=lambda f: f["arm"] != control)
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
    comparisons: list[tuple[str, np.ndarray]],
    control: str,
    reps: dict[str, np.ndarray],
    message_cost: dict[str, float],
    alpha: float,
) -> pd.DataFrame:
    """Incremental revenue, cost, net and ROI of each treated arm, with bootstrap CIs.

    ``reps`` hold bootstrap replicate means of (revenue, converted, offer_cost) per arm.
    Incremental quantities scale the per-user difference to the treated arm's size.
    """
    c = users["arm"].to_numpy() == control

    def mean(values: np.ndarray) -> np.ndarray:
        return values.mean(axis=0) if len(values) else np.full(values.shape[1], np.nan)

    point_c = mean(users.loc[c, ["revenue", "converted"]].to_numpy(float))
    rows = []
    for arm, t in comparisons:
        n_t = int(t.sum())
        point_t = mean(users.loc[t, BOOTSTRAP_COLUMNS].to_numpy(float))
        msg = float(message_cost.get(arm, 0.0))

        def stats(mt: np.ndarray, mc: np.ndarray, n_t: int = n_t, msg: float = msg) -> dict:
            inc_rev = n_t * (mt[..., 0] - mc[..., 0])
            inc_conv = n_t * (mt[..., 1] - mc[..., 1])
            cost = msg + n_t * mt[..., 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                roi = np.where(cost > 0, (inc_rev - cost) / cost, np.nan)
                cpic = np.where((inc_conv > 0) & (cost > 0), cost / inc_conv, np.nan)
            return {
                "incremental_revenue": inc_rev,
                "incremental_conversions": inc_conv,
                "cost": cost,
                "net": inc_rev - cost,
                "roi": roi,
                "cost_per_incremental_conversion": cpic,
            }

        with np.errstate(invalid="ignore"):
            point = stats(point_t, np.append(point_c, 0.0))
        boot = stats(reps[arm], reps[control]) if arm in reps and control in reps else None
        for item, value in point.items():
            lo = hi = np.nan
            if boot is not None:
                r = np.asarray(boot[item], float)
                fin = r[np.isfinite(r)]
                # a ratio whose denominator's CI reaches 0 is unbounded: no interval
                if fin.size and fin.size >= 0.975 * r.size:
                    lo, hi = percentile_interval(fin, alpha)
            rows.append({"arm": arm, "item": item, "value": float(value), "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["arm", "item", "value", "lo", "hi"])


# -- costs -----------------------------------------------------------------------------
def _costs(
    store: Store,
    config: Config | None,
    campaign: str,
    users: pd.DataFrame,
    runs: pd.DataFrame,
    plan_segmentation: str | None,
    comparisons: list[tuple[str, np.ndarray]],
) -> tuple[dict[str, float], pd.Series]:
    """Message cost of each treated arm and the offer cost each user would cost on
    converting.

    ``runs`` are the campaign's rows of ``campaign_runs``; ``plan_segmentation`` the
    segmentation its plan targeted (offers are looked up per segment at plan time).
    """
    imported = runs[runs["status"] == "imported"]
    offer = pd.Series(0.0, index=users.index)
    if not imported.empty:
        params = json.loads(imported["params"].iloc[0] or "{}")
        per_msg = float(params.get("cost_per_message", 0.0))
        offer[:] = float(params.get("cost_per_redemption", 0.0))
        return {arm: per_msg * int(mask.sum()) for arm, mask in comparisons}, offer
    sent = store.query(
        "SELECT a.arm, d.channel, count(*) AS n FROM deliveries d "
        "JOIN campaign_assignments a ON a.campaign = d.campaign AND a.run_id = d.run_id "
        f"AND a.user_id = d.user_id WHERE d.campaign = {lit(campaign)} AND d.status = 'sent' "
        "GROUP BY a.arm, d.channel"
    )
    playbook = config.playbook if config is not None else None
    per_arm: dict[str, float] = {}
    for arm, ch, n in zip(sent["arm"], sent["channel"], sent["n"], strict=True):
        spec = playbook.channels.get(str(ch)) if playbook is not None else None
        cost = (float(spec.cost_per_message) if spec is not None else 0.0) * int(n)
        per_arm[str(arm)] = per_arm.get(str(arm), 0.0) + cost
    arms = users["arm"].to_numpy()
    message = {
        name: sum(v for a, v in per_arm.items() if mask[arms == a].any())
        for name, mask in comparisons
    }
    if playbook is not None and plan_segmentation is not None and "segment_at_plan" in users:
        costs = {}
        for seg in users["segment_at_plan"].dropna().unique():
            strategy = playbook.strategy_for(plan_segmentation, str(seg))
            costs[seg] = strategy.offer.cost_per_redemption if strategy is not None else 0.0
        offer = users["segment_at_plan"].map(costs).fillna(0.0).astype(float)
    return message, offer


def _design_check(
    users: pd.DataFrame, designs: dict[str, Design], campaign: str, warnings: list[str]
) -> tuple[str, list[str], SrmResult]:
    """The control label, the treatment arms in design order, and the k-arm sample-ratio
    test of the observed arm sizes against the split each run recorded."""
    controls = {d.control for d in designs.values()}
    if len(controls) != 1:
        raise ConfigError(
            f"campaign {campaign!r}: its runs name different control arms "
            f"({', '.join(sorted(controls)) or 'none'})"
        )
    control = controls.pop()
    per_run = users.groupby("run_id").size()
    missing = [str(r) for r in per_run.index if not designs.get(str(r), Design(control)).split]
    if missing:
        raise ConfigError(f"campaign {campaign!r}: run {missing[0]} has no recorded split")
    expected: dict[str, float] = {}
    for run, n in per_run.items():
        for arm, share in designs[str(run)].split.items():
            expected[arm] = expected.get(arm, 0.0) + float(n) * share
    observed = users["arm"].value_counts()
    stray = [str(a) for a in observed.index if str(a) not in expected]
    if stray:
        warnings.append(
            f"arm(s) {', '.join(stray)} are not in the campaign's design; their "
            f"{int(observed[stray].sum()):,} users are left out of every comparison"
        )
    arms = [a for a in expected if expected[a] > 0]
    if control not in arms:
        raise ConfigError(
            f"campaign {campaign!r} has no control group ({control!r} is not among its arms "
            f"with a share: {', '.join(arms) or 'none'}): there is nothing to compare with; "
            "plan it with a holdout > 0"
        )
    treatments = [a for a in arms if a != control]
    for arm in arms:
        if int(observed.get(arm, 0)) == 0:
            warnings.append(f"arm {arm!r} has no users: its comparisons are empty (shown as —)")
    counts = [int(observed.get(a, 0)) for a in arms]
    srm = srm_test(counts, [expected[a] for a in arms], alpha=0.01)
    if srm.flagged:
        total = sum(expected.values())
        got = " / ".join(f"{n:,} {a}" for a, n in zip(arms, counts, strict=True))
        want = " / ".join(f"{expected[a] / total:.1%}" for a in arms)
        warnings.append(
            f"SAMPLE RATIO MISMATCH: {got} against a designed {want} split "
            f"(chi-square p = {srm.p:.2g}, {len(arms) - 1} df); the assignment or the logging "
            "is broken and the effects below are NOT trustworthy"
        )
    return control, treatments, srm


# -- the entry point -------------------------------------------------------------------
DEFAULT_RESAMPLES = 25_000
"""Bootstrap resamples by default: the percentile interval's Monte-Carlo error is then
under 0.5 % of its width (``bench/bootstrap_mc.py`` measures it on the demo)."""

UPLIFT_OUTCOMES = ("conversion", "visit", "revenue")


def _check_evaluation_args(
    window_days: int, pre_days: int, alpha: float, n_resamples: int, uplift_outcome: str
) -> None:
    if window_days <= 0 or pre_days < 0:
        raise ConfigError("window_days must be > 0 and pre_days >= 0")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {alpha})")
    if n_resamples < 0:
        raise ConfigError(f"n_resamples must be >= 0 (got {n_resamples})")
    if uplift_outcome not in UPLIFT_OUTCOMES:
        raise ConfigError(
            f"uplift_outcome must be one of {', '.join(UPLIFT_OUTCOMES)} (got {uplift_outcome!r})"
        )


def _require_assignments(store: Store, campaign: str) -> None:
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


def _outcome_window(
    store: Store,
    users: pd.DataFrame,
    window_days: int,
    final: FinalOutcomes,
    imported: list[str],
    warnings: list[str],
) -> tuple[datetime, datetime, int, float]:
    """The evaluation's start and end, its window (as final outcomes set it) and the days
    of it the store's data covers; a warning when the window is not complete."""
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
    window_days, observed = final.completeness(window_days, observed, last_t0, horizon_ts)
    if final.end is not None:
        end = final.end
    warnings.extend(final.notes(imported))
    if observed < window_days:
        warnings.append(
            f"the outcome window is not complete: the store's data reaches "
            f"{horizon_ts:%Y-%m-%d %H:%M} UTC, {observed:.1f} of {window_days} days after the "
            f"last exposure ({last_t0:%Y-%m-%d %H:%M} UTC); the effects below are interim"
            if horizon_ts is not None
            else "the store has no orders or events: nothing to measure yet"
        )
    return start, end, window_days, observed


def _pre_treatment_segments(
    store: Store,
    config: Config | None,
    campaign: str,
    users: pd.DataFrame,
    segmentation: str | None,
    uplift: bool,
    start: datetime,
) -> tuple[pd.DataFrame, str | None, str | None, pd.DataFrame | None]:
    """Each user's segment before the treatment (the named segmentation as of the start,
    else the plan's), with the features as of the start when a step needs them; returns
    (users, segmentation name, the plan's segmentation, features)."""
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
        from segmint.segments import run_segmentation

        assert features is not None
        result = run_segmentation(
            store,
            segmentation,
            config.segmentations[segmentation],
            features,
            as_of=start.astimezone(UTC),
            save=False,
            predict=config.predict,
            custom_features=custom,
        )
        seg = result.assignments[["user_id", "segment"]].astype(str)
        users = users.merge(seg, on="user_id", how="left")
        seg_name = segmentation
    elif "segment_at_plan" in users:
        users["segment"] = users["segment_at_plan"]
        seg_name = plan_seg
    return users, seg_name, plan_seg, features


def _add_offer_costs(
    store: Store,
    config: Config | None,
    campaign: str,
    users: pd.DataFrame,
    plan_seg: str | None,
    comparisons: list[tuple[str, np.ndarray]],
) -> dict[str, float]:
    """Each converted user's offer cost into ``users["offer_cost"]``; returns the message
    costs (for the ROI table)."""
    runs = store.query(
        f"SELECT run_id, status, params FROM campaign_runs WHERE campaign = {lit(campaign)}"
    )
    message_cost, offer_cost = _costs(store, config, campaign, users, runs, plan_seg, comparisons)
    users["offer_cost"] = offer_cost.to_numpy(float) * users["converted"].to_numpy(float)
    return message_cost


def _judged_effects(
    users: pd.DataFrame,
    treatments: Sequence[str],
    control: str,
    alpha: float,
    n_resamples: int,
    rng: np.random.Generator,
    warnings: list[str],
) -> tuple[pd.DataFrame, dict[str, CupedResult | None], dict[str, np.ndarray]]:
    """Every arm's effects against the control with their verdicts, and warnings for
    imbalanced arms; returns (effects, CUPED by arm, bootstrap replicates)."""
    effects, cupeds, reps = _effects(users, treatments, control, alpha, n_resamples, rng, warnings)
    from segmint.experiments._power import add_verdicts, imbalance_warnings

    effects = add_verdicts(effects, users, control=control, alpha=alpha)
    warnings.extend(imbalance_warnings(effects))
    return effects, cupeds, reps


# long on purpose: a 55-line docstring and 17 parameters; the ~70-line body is a list of
# named steps
def evaluate_campaign(
    store: Store,
    campaign: str,
    *,
    config: Config | None = None,
    window_days: int = 30,
    pre_days: int = 90,
    segmentation: str | None = None,
    alpha: float = 0.05,
    n_resamples: int = DEFAULT_RESAMPLES,
    uplift: bool = True,
    uplift_outcome: str = "conversion",
    visit_events: Sequence[str] = VISIT_EVENTS,
    seed: int = 0,
    by: Sequence[str] = (),
    max_levels: int = 20,
) -> CampaignEvaluation:
    """Evaluate a campaign from its holdout: every arm against the control.

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
    n_resamples : int, default 25,000
        Bootstrap resamples (revenue CI and p-value, ROI); 0 skips the bootstrap.
    uplift : bool, default True
        Fit the two-model uplift ranking (cross-fitted) and its Qini curve.
    uplift_outcome : {"conversion", "visit", "revenue"}
        What the uplift model ranks users by.
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

    Notes
    -----
    Arms have any names; the control is the one the campaign's design names (see
    :mod:`segmint.campaigns._arms`). With several treatment arms each is compared with
    the control (p-values also Holm- and BH-adjusted across the arms, ``p_holm``/``p_bh``)
    and the arms pooled as ``"any treatment"`` are compared too. Optional steps (the
    bootstrap, the uplift model) that fail become a warning, never a failed evaluation.
    """
    started = time.perf_counter()
    _check_evaluation_args(window_days, pre_days, alpha, n_resamples, uplift_outcome)
    _require_assignments(store, campaign)
    rng = np.random.default_rng(seed)
    from segmint.experiments._outcomes import FinalOutcomes, apply_outcomes

    final = FinalOutcomes(store, campaign)
    users = _user_outcomes(store, campaign, window_days, pre_days, visit_events, final.end)
    users, imported = apply_outcomes(users, final.values)
    warnings: list[str] = []
    control, treatments, srm = _design_check(
        users, run_designs(store, campaign), campaign, warnings
    )
    users = users[users["arm"].isin([*treatments, control])].reset_index(drop=True)
    start, end, window_days, observed = _outcome_window(
        store, users, window_days, final, imported, warnings
    )
    users, seg_name, plan_seg, features = _pre_treatment_segments(
        store, config, campaign, users, segmentation, uplift, start
    )

    comparisons = _comparisons(users, treatments)
    message_cost = _add_offer_costs(store, config, campaign, users, plan_seg, comparisons)
    arms = _arms_table(users, [*treatments, control], alpha)
    effects, cupeds, reps = _judged_effects(
        users, treatments, control, alpha, n_resamples, rng, warnings
    )
    segments = _segment_table(users, control, alpha)
    roi = _roi_table(users, comparisons, control, reps, message_cost, alpha)
    main = comparisons[-1][0] if comparisons else control
    cu = cupeds.get(main) or _nan_cuped()
    from segmint.experiments._breakdown import evaluate_breakdowns

    breakdowns = evaluate_breakdowns(
        store, config, campaign, users, by, as_of=start.astimezone(UTC), alpha=alpha,
        max_levels=max_levels, features=features, warnings=warnings,
    )  # fmt: skip

    up = None
    if uplift and features is not None:
        try:
            up = _fit_uplift(users, features, control, uplift_outcome, seed, warnings)
        except Exception as exc:  # an optional step: report it, keep the rest
            _step_failed(warnings, "uplift", exc)
    seconds = time.perf_counter() - started
    log.info("evaluated campaign %s (%d users) in %.2fs", campaign, len(users), seconds)
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
        control=control,
        treatments=tuple(treatments),
        n_resamples=n_resamples,
        uplift_outcome=uplift_outcome,
        outcomes_imported=tuple(imported),
        breakdowns=breakdowns,
    )


def _nan_cuped() -> CupedResult:
    nan = float("nan")
    return CupedResult(nan, nan, nan, nan, nan, nan, nan, nan, nan)


def usable_features(matrix: pd.DataFrame, treated: np.ndarray) -> pd.DataFrame:
    """The feature columns a model can learn from: numeric, not entirely missing, not
    constant, and observed in both arms (a column missing in one arm would let the model
    tell the arms apart by missingness alone)."""
    keep = []
    for col in matrix.columns:
        v = matrix[col].to_numpy(dtype="float64", na_value=np.nan)
        seen = ~np.isnan(v)
        if not seen[treated].any() or not seen[~treated].any():
            continue
        if np.nanmin(v) == np.nanmax(v) and seen.all():
            continue
        keep.append(col)
    return matrix[keep]


def _fit_uplift(
    users: pd.DataFrame,
    features: pd.DataFrame,
    control: str,
    outcome: str,
    seed: int,
    warnings: list[str],
) -> UpliftResult | None:
    """Cross-fitted two-model uplift on pre-treatment features, with its Qini curve.

    Every treatment arm together against the control. ``outcome`` is conversion, visit
    (both classified) or revenue (regressed; no AUUC then)."""
    from segmint.experiments._uplift import TLearner, evaluate_uplift

    t = (users["arm"] != control).to_numpy()
    column = {"conversion": "converted", "visit": "visited", "revenue": "revenue"}[outcome]
    y = users[column].to_numpy(dtype=float)
    hits = y > 0
    if min(t.sum(), (~t).sum()) < MIN_UPLIFT_USERS or min(hits[t].sum(), hits[~t].sum()) < (
        MIN_UPLIFT_CONVERSIONS
    ):
        warnings.append(
            f"uplift model skipped: it needs at least {MIN_UPLIFT_USERS} users and "
            f"{MIN_UPLIFT_CONVERSIONS} users with a {outcome} in each arm"
        )
        return None
    numeric = features.select_dtypes(include=["number", "boolean", "bool"]).columns
    x = users[["user_id"]].merge(features[["user_id", *numeric]], on="user_id", how="left")
    x = usable_features(x[list(numeric)].astype("float64"), t)
    if x.shape[1] == 0:
        warnings.append("uplift model skipped: no pre-treatment feature varies across users")
        return None
    estimator = None
    if outcome == "revenue":
        from sklearn.ensemble import HistGradientBoostingRegressor

        estimator = HistGradientBoostingRegressor(
            max_iter=100,
            max_leaf_nodes=15,
            min_samples_leaf=100,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
    model = TLearner(estimator=estimator, random_state=seed)
    target = y if outcome == "revenue" else hits.astype(float)
    scores = model.fit_predict(x.to_numpy(), t, target)
    return evaluate_uplift(scores, t, target, model=str(model.model_name_))


# -- importing a past experiment -------------------------------------------------------
def _import_design(
    labels: pd.Series,
    control: str,
    control_share: float | None,
    split: Mapping[str, float] | None,
) -> tuple[Design, pd.Series]:
    """The design of an imported experiment and each row's arm in the design's spelling
    (NaN for a row whose arm is not in it). Labels match case-insensitively."""
    control = normalize_arm(control)
    if split is not None:
        design = make_design(split, control)
    else:
        if control_share is None:
            raise ConfigError(
                "give the designed split: control_share (the control's share; the other "
                "arms share the rest equally) or split {arm: share}"
            )
        if not 0 < control_share < 1:
            raise ConfigError(f"control_share must be between 0 and 1 (got {control_share})")
        found = labels[labels != ""]
        spelling = (
            found.groupby(found.str.casefold()).agg(lambda s: s.value_counts().index[0])
            if not found.empty
            else pd.Series(dtype=str)
        )
        sizes = found.str.casefold().value_counts()
        if control.casefold() not in spelling.index:
            raise ConfigError(
                f"no arm named {control!r} in the file (arms found: "
                f"{', '.join(map(str, spelling.to_numpy())) or 'none'}); name the control "
                "arm with --control ARM"
            )
        others = [k for k in sizes.index if k != control.casefold()]
        if not others:
            raise ConfigError(f"the file has only the control arm {control!r}: nothing to compare")
        for k in others:  # a tiny arm spelled like a big one is a typo, not an arm
            near = get_close_matches(k, [o for o in sizes.index if o != k], n=1, cutoff=0.75)
            if near and sizes[k] < 0.05 * sizes[near[0]]:
                raise ConfigError(
                    f"arm {spelling[k]!r} ({sizes[k]:,} rows) looks like a typo of "
                    f"{spelling[near[0]]!r} ({sizes[near[0]]:,} rows): fix the file, or give "
                    "the split of every arm (--split) to count such rows as bad"
                )
        share = (1 - control_share) / len(others)
        design = make_design(
            {
                **{str(spelling[k]): share for k in others},
                str(spelling[control.casefold()]): control_share,
            },  # fmt: skip
            str(spelling[control.casefold()]),
        )
    by_key = {a.casefold(): a for a in design.split}
    if labels.str.casefold().isin([design.control.casefold()]).sum() == 0:
        raise ConfigError(
            f"no row of the file has the control arm {design.control!r} (arms found: "
            f"{', '.join(sorted(set(labels) - {''})) or 'none'}); name it with --control ARM"
        )
    return design, labels.str.casefold().map(by_key)


def import_assignments(
    store: Store,
    campaign: str,
    frame: pd.DataFrame,
    *,
    control_share: float | None = None,
    split: Mapping[str, float] | None = None,
    control: str = DEFAULT_CONTROL,
    cost_per_message: float = 0.0,
    cost_per_redemption: float = 0.0,
    source: str | None = None,
    outcome_end: date | None = None,
) -> dict[str, Any]:
    """Store a past randomized experiment's assignments so it can be evaluated.

    ``frame`` has ``user_id``, ``arm`` and ``sent_at`` (the exposure time, one per user;
    naive times are UTC). Arms have any names (``message A``, ``message B``, ``holdout``);
    ``control`` names the control arm. The designed split, which the sample-ratio check
    compares against, is either ``split`` (``{arm: share}`` over every arm; rows with
    another arm are counted as bad rows) or ``control_share`` (the other arms found in the
    file share the rest equally). Users unknown to the store and bad rows are refused with
    a count; importing the same file again replaces the earlier import of that campaign
    (idempotent) in one transaction.

    Optional columns ``converted``, ``revenue``, ``visited`` are the experiment's final
    outcomes (see :mod:`segmint.experiments._outcomes`; an unreadable value rejects its row,
    counted under ``bad_<column>``); ``outcome_end`` is the last day outcomes were measured
    (every user's window ends with it).
    """
    f, design, bad, outcome_values, outcome_counts = _parse_import(
        frame, control, control_share, split
    )
    f, unknown = _usable_rows(store, campaign, f[~bad], outcome_end)
    _check_not_planned(store, campaign)
    now = datetime.now(UTC)
    params = {
        "holdout": design.split[design.control],
        **design.to_params(),
        "source": source,
        "cost_per_message": cost_per_message,
        "cost_per_redemption": cost_per_redemption,
        "imported_at": now.isoformat(),
        "outcome_end": outcome_end.isoformat() if outcome_end is not None else None,
        "outcomes": list(outcome_values.columns),
    }
    per_arm = f["arm"].value_counts()
    n_c = int(per_arm.get(design.control, 0))
    n_t = len(f) - n_c
    _write_import(store, campaign, f, list(outcome_values.columns), params, now, (n_t, n_c))
    return {
        "read": len(frame),
        "imported": n_t + n_c,
        "arms": {a: int(per_arm.get(a, 0)) for a in design.arms},
        "control_arm": design.control,
        "treatment": n_t,
        "control": n_c,
        "rejected_bad_rows": int(bad.sum()),
        "rejected_unknown_users": int(unknown.sum()),
        **outcome_counts,
    }


def _parse_import(
    frame: pd.DataFrame,
    control: str,
    control_share: float | None,
    split: Mapping[str, float] | None,
) -> tuple[pd.DataFrame, Design, pd.Series, pd.DataFrame, dict[str, int]]:
    """The file's rows read: ``(rows, design, bad, outcome values, outcome counts)``.

    ``rows`` has ``user_id``, ``arm`` (the design's label, NaN when unknown), ``sent_at``
    (UTC) and the outcome columns; ``bad`` marks rows with no arm, an unreadable time, a
    repeated user or an unreadable outcome.
    """
    missing = {"user_id", "arm", "sent_at"} - set(frame.columns)
    if missing:
        raise ConfigError(
            f"assignments need columns user_id, arm, sent_at; missing: {', '.join(sorted(missing))}"
            f" (found: {', '.join(map(str, frame.columns))})"
        )
    f = frame[["user_id", "arm", "sent_at"]].copy()
    f["user_id"] = f["user_id"].astype(str)
    labels = f["arm"].fillna("").astype(str).map(normalize_arm)
    design, f["arm"] = _import_design(labels, control, control_share, split)
    ts = pd.to_datetime(f["sent_at"], errors="coerce", utc=True)
    bad = f["arm"].isna() | ts.isna() | f["user_id"].duplicated()
    from segmint.experiments._outcomes import parse_outcomes

    outcome_values, bad_outcome, outcome_counts = parse_outcomes(frame)
    bad = bad | bad_outcome
    f = f.assign(**{c: outcome_values[c].to_numpy() for c in outcome_values.columns})
    return f.assign(sent_at=ts), design, bad, outcome_values, outcome_counts


def _usable_rows(
    store: Store, campaign: str, f: pd.DataFrame, outcome_end: date | None
) -> tuple[pd.DataFrame, pd.Series]:
    """The good rows of known users, and the mask of the unknown ones; raises when none is
    left or when ``outcome_end`` is before the last send."""
    known = set(store.query("SELECT user_id FROM users")["user_id"].astype(str))
    unknown = ~f["user_id"].isin(known)
    f = f[~unknown]
    if f.empty:
        raise ConfigError(f"no usable assignment rows for {campaign!r}")
    if outcome_end is not None and outcome_end < f["sent_at"].max().date():
        raise ConfigError(
            f"the outcome end {outcome_end} is before the last send "
            f"({f['sent_at'].max():%Y-%m-%d}): give the last day outcomes were measured"
        )
    return f, unknown


def _check_not_planned(store: Store, campaign: str) -> None:
    """Refuse to import over a campaign segmint planned (only an import replaces one)."""
    existing = store.query(
        "SELECT DISTINCT status FROM campaign_runs WHERE campaign = ?", [campaign]
    )["status"].tolist()
    if existing and set(existing) != {"imported"}:
        raise ConfigError(
            f"campaign {campaign!r} was planned by segmint; import under another name"
        )


def _write_import(
    store: Store,
    campaign: str,
    f: pd.DataFrame,
    outcomes: list[str],
    params: dict[str, Any],
    now: datetime,
    counts: tuple[int, int],
) -> None:
    """Replace the campaign's assignments, outcomes and run by the imported ones, in one
    transaction (``counts``: treated and control users)."""
    from segmint.experiments._outcomes import replace_outcomes

    n_t, n_c = counts
    run_id = f"import-{campaign}"
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
    c = lit(campaign)
    cols = ["campaign", "user_id", "arm", "bucket", "assigned_at", "run_id"]
    with store.staging() as stage:
        staged = stage.table(
            "import_rows",
            "SELECT campaign, user_id, arm, bucket::DOUBLE AS bucket, "
            "assigned_at::TIMESTAMPTZ AS assigned_at, run_id "
            f"FROM {stage.frame('import', rows)}",
        )
        with store.transaction():
            store.execute(f"DELETE FROM campaign_assignments WHERE campaign = {c}")
            store.execute(f"DELETE FROM campaign_runs WHERE campaign = {c}")
            stage.write("campaign_assignments", staged, cols)
            replace_outcomes(store, campaign, f[["user_id", *outcomes]])
            store.execute(
                "INSERT INTO campaign_runs (run_id, campaign, created_at, as_of, segmentation, "
                "segment_run_id, previous_run_id, status, n_eligible, n_treatment, n_control, "
                f"params, funnel) VALUES ({lit(run_id)}, {c}, {ts_lit(now)}, "
                f"{date_lit(first.date())}, '', '', NULL, 'imported', "
                f"{n_t + n_c}, {n_t}, {n_c}, CAST({lit(json.dumps(params))} AS JSON), NULL)"
            )
