"""Power at design time: the smallest effect an experiment of given sizes can detect, and
the users it needs to detect a given one.

The formulas (normal approximation for proportions, the exact pooled t-test for means)
and their agreement with statsmodels are described in :mod:`segmint.experiments._power`,
which applies them to an evaluation's effects; the campaign plan uses them to warn when a
control group is too small to show anything. scipy is loaded on first use, so planning
configuration stays light.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segmint.errors import ConfigError

__all__ = ["mde_mean", "mde_proportion", "users_needed_mean", "users_needed_proportion"]


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {alpha})")
    if not 0 < power < 1:
        raise ConfigError(f"power must be between 0 and 1 (got {power})")


def _z(alpha: float, power: float) -> float:
    from scipy import stats

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
    from scipy import stats

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
    from scipy import optimize

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
