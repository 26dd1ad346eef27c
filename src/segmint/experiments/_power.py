"""Verdicts and power: is an effect a win, and what could this experiment have seen?

Three questions are answered for every row of an evaluation's effects table:

``verdict``
    ``win`` when the interval lies above 0 and ``p < alpha``, ``loss`` when it lies below 0
    and ``p < alpha``, ``inconclusive`` otherwise (interval and test must agree; a missing
    p-value leaves the decision to the interval). Balance rows (a pre-treatment metric,
    name ending in ``(balance)``) are not effects: they read ``imbalance`` when
    ``p < SRM_ALPHA`` (flagged like a sample-ratio mismatch) and ``balanced`` otherwise.
``mde``
    The minimum detectable effect at the achieved sizes: the smallest true difference a
    two-sided test at ``alpha`` would detect with probability ``power``.

    * proportions (normal approximation, variance at the control's rate ``p0``)::

          mde = (z[1 - alpha/2] + z[power]) * sqrt(p0 (1 - p0) (1/n1 + 1/n0))

      This is statsmodels' ``NormalIndPower`` with effect size ``d = mde / sqrt(p0 (1 -
      p0))`` except that it drops the far rejection tail (probability ``Phi(-z[1-alpha/2]
      - z[1-alpha/2] - z[power])`` = 1.3e-6 at the defaults), so its power is lower by at
      most that much.
    * means: the two-sample t-test with pooled standard deviation (statsmodels'
      ``tt_ind_solve_power``), solved exactly with the noncentral t; for the CUPED row the
      standard deviation is the adjusted outcome's.
``users_needed``
    Users per arm (equal arms) to detect the *observed* difference with probability
    ``power``: ``ceil((z[1-alpha/2] + z[power])^2 * 2 p0 (1 - p0) / diff^2)`` for proportions,
    the t-test solve for means; ``NaN`` when the observed difference is 0 or undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from segmint.campaigns import (
    mde_mean,
    mde_proportion,
    users_needed_mean,
    users_needed_proportion,
)

SRM_ALPHA = 0.01
"""A balance row below this p-value is flagged as an imbalance (the SRM check's alpha)."""

PROPORTION_METRICS = {"conversion": "converted", "visit_rate": "visited"}
MEAN_METRICS = {
    "revenue_per_user": "revenue",
    "orders_per_user": "orders",
    "events_per_user": "events",
    "pre_revenue_per_user (balance)": "pre_revenue",
}
"""Metric name of the effects table -> column of the user table it averages."""

POOLED_ARM = "any treatment"

__all__ = [
    "add_verdicts",
    "imbalance_warnings",
    "mde_mean",
    "mde_proportion",
    "plan_mde",
    "users_needed_mean",
    "users_needed_proportion",
    "verdict",
]


def _check(alpha: float, power: float) -> None:
    """The same argument check as the formulas' (an empty effects table calls none)."""
    from segmint.errors import ConfigError

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {alpha})")
    if not 0 < power < 1:
        raise ConfigError(f"power must be between 0 and 1 (got {power})")


def verdict(diff_lo: Any, diff_hi: Any, p: Any, alpha: float = 0.05) -> Any:
    """``win`` / ``loss`` / ``inconclusive`` for each interval and p-value (see the module
    docstring); scalars give a str, arrays an object array."""
    lo, hi, pv = (np.asarray(v, dtype=float) for v in (diff_lo, diff_hi, p))
    significant = np.where(np.isnan(pv), True, pv < alpha)
    out = np.where(
        significant & (lo > 0), "win", np.where(significant & (hi < 0), "loss", "inconclusive")
    ).astype(object)
    return str(out) if out.ndim == 0 else out


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    n1, n0 = a.size, b.size
    if n1 + n0 <= 2:
        return math.nan
    ss = (np.var(a, ddof=1) * (n1 - 1) if n1 > 1 else 0.0) + (
        np.var(b, ddof=1) * (n0 - 1) if n0 > 1 else 0.0
    )
    return float(math.sqrt(ss / (n1 + n0 - 2)))


def _cuped_adjusted(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y - theta (x - mean x)`` with ``theta = cov(y, x) / var(x)`` (pooled arms)."""
    vx = float(np.var(x, ddof=1)) if x.size > 1 else 0.0
    if vx <= 0:
        return y
    theta = float(np.cov(y, x, ddof=1)[0, 1]) / vx
    return y - theta * (x - x.mean())


def add_verdicts(
    effects: pd.DataFrame,
    users: pd.DataFrame,
    *,
    control: str,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """``effects`` with ``verdict``, ``mde``, ``mde_rel``, ``users_needed``, ``n_treatment``
    and ``n_control`` columns (a copy).

    Parameters
    ----------
    effects : DataFrame
        An evaluation's effects: ``metric, method, treatment, control, diff, diff_lo,
        diff_hi, p_value``, and optionally ``arm`` (the treatment arm of each row; a row
        whose arm is not in ``users`` -- the pooled "any treatment" row -- compares every
        non-control user with the control). Without ``arm`` every non-control user is
        treated.
    users : DataFrame
        The evaluation's user table: ``arm`` and the outcome columns (``converted``,
        ``visited``, ``revenue``, ``orders``, ``events``, ``pre_revenue``).
    control : str
        The control arm's label.
    alpha, power : float
        Two-sided level of the verdict and the MDE; power of the MDE and of
        ``users_needed``.
    """
    _check(alpha, power)
    out = effects.copy()
    arm = users["arm"].astype(str).to_numpy()
    is_c = arm == control
    arms = set(arm)
    n = len(out)
    n_t, n_c = np.full(n, np.nan), np.full(n, np.nan)
    mde, needed = np.full(n, np.nan), np.full(n, np.nan)
    metric = out["metric"].astype(str).to_numpy()
    method = out["method"].astype(str).to_numpy() if "method" in out else np.full(n, "")
    row_arm = out["arm"].astype(str).to_numpy() if "arm" in out else np.full(n, POOLED_ARM)
    diff = out["diff"].to_numpy(float)
    base = out["control"].to_numpy(float)
    for i in range(n):  # one pass per effects row (a handful), never per user
        is_t = (arm == row_arm[i]) if row_arm[i] in arms and row_arm[i] != control else ~is_c
        n_t[i], n_c[i] = is_t.sum(), is_c.sum()
        if metric[i] in PROPORTION_METRICS:
            mde[i] = mde_proportion(base[i], n_t[i], n_c[i], alpha=alpha, power=power)
            needed[i] = users_needed_proportion(base[i], diff[i], alpha=alpha, power=power)
        elif metric[i] in MEAN_METRICS and MEAN_METRICS[metric[i]] in users:
            y = users[MEAN_METRICS[metric[i]]].to_numpy(float)
            if method[i] == "cuped" and "pre_revenue" in users:
                sel = is_t | is_c
                y = y.copy()
                y[sel] = _cuped_adjusted(y[sel], users["pre_revenue"].to_numpy(float)[sel])
            sd = _pooled_sd(y[is_t], y[is_c])
            mde[i] = mde_mean(sd, n_t[i], n_c[i], alpha=alpha, power=power)
            needed[i] = users_needed_mean(sd, diff[i], alpha=alpha, power=power)
    balance = np.char.endswith(metric.astype(str), "(balance)")
    p = out["p_value"].to_numpy(float)
    v = verdict(out["diff_lo"].to_numpy(float), out["diff_hi"].to_numpy(float), p, alpha)
    v = np.where(balance, np.where(p < SRM_ALPHA, "imbalance", "balanced"), v)
    mde = np.where(balance, np.nan, mde)
    needed = np.where(balance, np.nan, needed)
    with np.errstate(divide="ignore", invalid="ignore"):
        mde_rel = np.where(base != 0, mde / np.abs(base), np.nan)
    out["verdict"] = v.astype(object)
    out["mde"] = mde
    out["mde_rel"] = mde_rel
    out["users_needed"] = needed
    out["n_treatment"] = n_t
    out["n_control"] = n_c
    return out


def imbalance_warnings(effects: pd.DataFrame) -> list[str]:
    """One warning per balance row flagged ``imbalance`` by :func:`add_verdicts`."""
    if "verdict" not in effects:
        return []
    rows = effects[effects["verdict"] == "imbalance"]
    out = []
    for r in rows.to_dict("records"):
        name = str(r["metric"]).removesuffix("(balance)").strip()
        arm = f" ({r['arm']})" if "arm" in r and pd.notna(r["arm"]) else ""
        out.append(
            f"PRE-PERIOD IMBALANCE{arm}: {name} differs between the arms before the campaign "
            f"(difference {r['diff']:+,.4g}, p = {r['p_value']:.2g} < {SRM_ALPHA}); the "
            "randomisation or the exposure times are suspect, treat the effects below like a "
            "sample ratio mismatch (use CUPED and check the assignment)"
        )
    return out


def plan_mde(
    baseline: float, n_treatments: Sequence[int], n_control: int, *, alpha: float = 0.05,
    power: float = 0.8,
) -> list[float]:  # fmt: skip
    """MDE of conversion for each planned treatment arm against the control."""
    return [
        float(mde_proportion(baseline, n1, n_control, alpha=alpha, power=power))
        for n1 in n_treatments
    ]
