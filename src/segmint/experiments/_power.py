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
from scipy import optimize, stats

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


def _check(alpha: float, power: float) -> None:
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


def _z(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def mde_proportion(p0: Any, n1: Any, n0: Any, *, alpha: float = 0.05, power: float = 0.8) -> Any:
    """Minimum detectable absolute difference of two proportions (normal approximation,
    variance at the baseline ``p0``); NaN where an arm is empty or ``p0`` is 0 or 1."""
    _check(alpha, power)
    p0, n1, n0 = (np.asarray(v, dtype=float) for v in (p0, n1, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = p0 * (1 - p0) * (1 / n1 + 1 / n0)
        out = np.where((n1 > 0) & (n0 > 0) & (var > 0), _z(alpha, power) * np.sqrt(var), np.nan)
    return float(out) if out.ndim == 0 else out


def users_needed_proportion(p0: Any, diff: Any, *, alpha: float = 0.05, power: float = 0.8) -> Any:
    """Users per arm (equal arms) to detect ``diff`` from the baseline ``p0``."""
    _check(alpha, power)
    p0, diff = np.asarray(p0, dtype=float), np.asarray(diff, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = _z(alpha, power) ** 2 * 2 * p0 * (1 - p0) / diff**2
        out = np.where(np.isfinite(n) & (n > 0), np.ceil(n), np.nan)
    return float(out) if out.ndim == 0 else out


def _t_power(d: float, n1: float, n0: float, alpha: float) -> float:
    """Two-sided power of the pooled two-sample t-test at standardised effect ``d``."""
    df = n1 + n0 - 2
    nc = d * math.sqrt(n1 * n0 / (n1 + n0))
    crit = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(all="ignore"):
        out = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if not math.isfinite(out):  # far out in nc scipy's nct gives NaN: the normal limit
        out = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return out


def _bracket(f: Any, lo: float, hi: float) -> float:
    """Root of the increasing ``f`` on ``[lo, hi]``, ``hi`` doubled until ``f(hi) > 0``."""
    for _ in range(200):
        if f(hi) > 0:
            break
        hi *= 2
    return float(optimize.brentq(f, lo, hi, xtol=1e-14, rtol=1e-13))


def _solve_d(n1: float, n0: float, alpha: float, power: float) -> float:
    """The standardised effect the t-test detects with ``power`` at sizes ``n1, n0``."""
    if not (n1 >= 1 and n0 >= 1 and n1 + n0 > 2 and math.isfinite(n1 + n0)):
        return math.nan
    guess = _z(alpha, power) * math.sqrt(1 / n1 + 1 / n0)
    return _bracket(lambda d: _t_power(d, n1, n0, alpha) - power, 1e-12, guess * 2)


def mde_mean(sd: Any, n1: Any, n0: Any, *, alpha: float = 0.05, power: float = 0.8) -> Any:
    """Minimum detectable difference of two means (pooled-sd t-test, exact solve)."""
    _check(alpha, power)
    sd, n1, n0 = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (sd, n1, n0)))
    d = np.array(
        [_solve_d(a, b, alpha, power) for a, b in zip(n1.ravel(), n0.ravel(), strict=True)]
    )
    out = (d.reshape(sd.shape) * sd).astype(float)
    out = np.where(sd > 0, out, np.nan)
    return float(out) if out.ndim == 0 else out


def _solve_n(d: float, alpha: float, power: float) -> float:
    if not (math.isfinite(d) and d != 0):
        return math.nan
    d = abs(d)

    def f(n: float) -> float:
        return _t_power(d, n, n, alpha) - power

    if f(2.0) >= 0:  # an effect this large needs the smallest possible test
        return 2.0
    guess = 2 * (_z(alpha, power) / d) ** 2
    return float(math.ceil(_bracket(f, 2.0, max(guess * 2, 4.0)) - 1e-9))


def users_needed_mean(sd: Any, diff: Any, *, alpha: float = 0.05, power: float = 0.8) -> Any:
    """Users per arm (equal arms) for the pooled t-test to detect ``diff``."""
    _check(alpha, power)
    sd, diff = np.broadcast_arrays(np.asarray(sd, dtype=float), np.asarray(diff, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = diff / sd
    out = np.array([_solve_n(v, alpha, power) for v in d.ravel()]).reshape(d.shape)
    return float(out) if out.ndim == 0 else out


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
