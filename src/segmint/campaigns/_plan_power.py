"""What a planned split can detect: the conversion MDE of every treatment arm, and warnings
when the control group is too small to measure anything.

The baseline is the planned audience's recent conversion rate: the share of the users the
plan placed (any arm) with a completed order in the ``BASELINE_DAYS`` days before the plan
date (``[as_of - 30 days, as_of)``; before the store's newest completed order when the data
ends earlier), computed in the store. The MDE is the normal
approximation of :func:`segmint.experiments._power.mde_proportion` (two-sided ``alpha``
0.05, power 0.8), each treatment arm against the control.

A plan is flagged when the control has fewer than ``MIN_CONTROL`` users, when no planned
user converted recently (no baseline, so no MDE), or when an arm's MDE exceeds
``MAX_MDE_SHARE`` of the baseline: such a test can only see a lift larger than half the
current conversion rate.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.campaigns._arms import design_from_params
from segmint.campaigns._power import mde_proportion
from segmint.store import completed_orders, lit

if TYPE_CHECKING:
    from segmint.campaigns._plan import CampaignPlan
    from segmint.store import Store

BASELINE_DAYS = 30
MIN_CONTROL = 100
MAX_MDE_SHARE = 0.5
ALPHA = 0.05
POWER = 0.8


def plan_power(store: Store, run_id: str) -> dict[str, Any]:
    """``baseline``, ``mde`` (``{treatment arm: absolute MDE}``) and ``warnings`` of a
    stored plan."""
    run = store.query(f"SELECT as_of, params FROM campaign_runs WHERE run_id = {lit(run_id)}")
    params = run["params"].iloc[0] if not run.empty else None
    control = design_from_params(params).control
    as_of = run["as_of"].iloc[0] if not run.empty else None
    day = getattr(as_of, "date", lambda: as_of)() if as_of is not None else None
    end = datetime.combine(day, time(), tzinfo=UTC) if day is not None else datetime.now(UTC)
    newest = store.scalar(completed_orders(columns="max(ts)"))
    if newest is not None and not pd.isna(newest):
        # data that ends before the plan date: the 30 days before its newest order
        newest_ts = pd.Timestamp(newest)
        newest_ts = newest_ts.tz_localize("UTC") if newest_ts.tzinfo is None else newest_ts
        end = min(end, (newest_ts + pd.Timedelta(microseconds=1)).to_pydatetime())
    start = end - timedelta(days=BASELINE_DAYS)
    arms = store.query(
        "SELECT a.arm, count(*) AS n, count(o.user_id) AS converters FROM "
        f"(SELECT DISTINCT user_id, arm FROM campaign_audiences WHERE run_id = {lit(run_id)}) a "
        f"LEFT JOIN ({completed_orders(since=start, before=end, columns='DISTINCT user_id')}) o "
        "ON o.user_id = a.user_id "
        "GROUP BY a.arm ORDER BY a.arm"
    )
    sizes = {str(a): int(n) for a, n in zip(arms["arm"], arms["n"], strict=True)}
    n_all = sum(sizes.values())
    converters = int(arms["converters"].sum()) if n_all else 0
    baseline = converters / n_all if n_all else math.nan
    n_control = sizes.get(control, 0)
    treatments = [a for a in sizes if a != control]
    mde = {
        a: float(mde_proportion(baseline, sizes[a], n_control, alpha=ALPHA, power=POWER))
        for a in treatments
    }
    warnings: list[str] = []
    if n_all and n_control == 0:
        warnings.append(
            "the plan has no control group (holdout 0): the campaign's effect cannot be "
            "measured; set the playbook's holdout (e.g. 0.1)"
        )
    elif n_all and n_control < MIN_CONTROL:
        warnings.append(
            f"the control group has only {n_control:,} users (fewer than {MIN_CONTROL}): the "
            "campaign's effect cannot be measured; raise the playbook's holdout or widen the "
            "audience"
        )
    if n_all and converters == 0:
        warnings.append(
            f"no planned user converted in the {BASELINE_DAYS} days before {end:%Y-%m-%d}: the "
            "detectable effect cannot be estimated"
        )
    elif n_control >= 1:
        for arm, m in mde.items():
            if not math.isfinite(m) or m > MAX_MDE_SHARE * baseline:
                warnings.append(
                    f"{arm}: the smallest detectable change in conversion is "
                    f"±{m:.2%} points, {m / baseline:.0%} of the {baseline:.2%} baseline "
                    f"(more than {MAX_MDE_SHARE:.0%}): this split can only see a very large "
                    "effect; raise the holdout or widen the audience"
                )
    return {
        "baseline": None if not math.isfinite(baseline) else baseline,
        "mde": {a: (m if math.isfinite(m) else None) for a, m in mde.items()},
        "warnings": tuple(warnings),
    }


def with_power(store: Store, plan: CampaignPlan) -> CampaignPlan:
    """``plan`` (a :class:`~segmint.campaigns.CampaignPlan`) with ``baseline``, ``mde`` and
    ``warnings`` filled from its stored audience."""
    power = plan_power(store, plan.run_id)
    return dataclasses.replace(plan, **power)
