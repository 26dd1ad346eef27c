"""Statistics of randomized experiments: intervals, tests, variance reduction and drift.

Everything takes counts or raw values and returns plain numbers, so a caller can evaluate
many segments or experiments at once: the count-based functions are vectorised (arrays of
counts in, arrays out; a scalar in gives a float out). Undefined results (no users, no
variance, no conversions where a ratio needs them) are NaN, never an exception or a warning.

Every function names its method and reference, and the test suite checks it against
scipy or statsmodels to 1e-9 and its coverage on simulated experiments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "CupedResult",
    "SrmResult",
    "WelchResult",
    "benjamini_hochberg",
    "bootstrap_diff_interval",
    "bootstrap_means",
    "cuped",
    "holm",
    "mean_interval",
    "newcombe_interval",
    "nps_interval",
    "percentile_interval",
    "psi",
    "psi_labels",
    "ratio_interval",
    "srm_test",
    "two_proportion_ztest",
    "wilson_interval",
    "welch_batch",
    "welch_from_moments",
    "welch_ttest",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
#: A float for scalar input, an array of the broadcast shape for array input.
FloatOrArray: TypeAlias = float | FloatArray
SeedLike: TypeAlias = np.random.Generator | int | None

#: Most values drawn at once by the bootstrap (8 bytes each, a few arrays of this size).
_BOOTSTRAP_CHUNK = 1 << 22


# --------------------------------------------------------------------------- helpers


def _float_or_array(a: FloatArray) -> FloatOrArray:
    """A Python float for a 0-d result, else the array."""
    return float(a) if a.ndim == 0 else a


def _z(alpha: float) -> float:
    """Two-sided standard normal critical value z_{1 - alpha/2}."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    return float(stats.norm.isf(alpha / 2.0))


def _counts(successes: npt.ArrayLike, n: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Broadcast successes and trials to float arrays and check 0 <= successes <= n."""
    x, m = np.broadcast_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float))
    with np.errstate(invalid="ignore"):
        bad = (x < 0) | (x > m)
    if np.any(bad):
        raise ValueError(
            "successes must be between 0 and the number of users n; "
            f"found {int(np.sum(bad))} pair(s) outside, e.g. successes={x[bad].flat[0]!r}, "
            f"n={m[bad].flat[0]!r}"
        )
    return x, m


def _values(x: npt.ArrayLike, name: str) -> FloatArray:
    """Raw values as a 1-d float array."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _jsonable(value: Any) -> Any:
    """NaN and infinities as None, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _JsonResult:
    """``to_dict()`` for the result dataclasses below."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN as None)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


# --------------------------------------------------------------------------- proportions


def wilson_interval(
    successes: npt.ArrayLike, n: npt.ArrayLike, alpha: float = 0.05
) -> tuple[FloatOrArray, FloatOrArray]:
    """Wilson score interval of a proportion (Wilson, 1927).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes/n`` and
    ``z = z_{1-alpha/2}``, clipped to [0, 1]. Equals statsmodels'
    ``proportion_confint(method="wilson")``.

    Parameters
    ----------
    successes, n : int or array_like of int
        Conversions and users; broadcast against each other.
    alpha : float, default=0.05
        One minus the confidence level.

    Returns
    -------
    lo, hi : float or ndarray
        NaN where ``n == 0``.
    """
    z = _z(alpha)
    x, m = _counts(successes, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / m
        z2 = z * z
        denom = 1.0 + z2 / m
        center = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
    lo = np.clip(center - half, 0.0, 1.0)
    hi = np.clip(center + half, 0.0, 1.0)
    return _float_or_array(lo), _float_or_array(hi)


def newcombe_interval(
    x1: npt.ArrayLike,
    n1: npt.ArrayLike,
    x0: npt.ArrayLike,
    n0: npt.ArrayLike,
    alpha: float = 0.05,
) -> tuple[FloatOrArray, FloatOrArray]:
    """Interval for the difference of two proportions ``p1 - p0`` (Newcombe, 1998, method 10).

    The hybrid score interval built from the Wilson intervals ``[l1, u1]`` and ``[l0, u0]``
    of each arm: ``d - sqrt((p1-l1)² + (u0-p0)²)`` to ``d + sqrt((p0-l0)² + (u1-p1)²)``.
    Equals statsmodels' ``confint_proportions_2indep(compare="diff", method="newcomb")``.

    Parameters
    ----------
    x1, n1 : int or array_like of int
        Conversions and users of the treatment arm.
    x0, n0 : int or array_like of int
        Conversions and users of the control arm.
    alpha : float, default=0.05

    Returns
    -------
    lo, hi : float or ndarray
        NaN where an arm has no users.
    """
    a1, m1 = _counts(x1, n1)
    a0, m0 = _counts(x0, n0)
    l1, u1 = (np.asarray(v) for v in wilson_interval(a1, m1, alpha))
    l0, u0 = (np.asarray(v) for v in wilson_interval(a0, m0, alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p0 = a1 / m1, a0 / m0
    diff = p1 - p0
    lo = diff - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = diff + np.sqrt((p0 - l0) ** 2 + (u1 - p1) ** 2)
    return _float_or_array(lo), _float_or_array(hi)


def two_proportion_ztest(
    x1: npt.ArrayLike, n1: npt.ArrayLike, x0: npt.ArrayLike, n0: npt.ArrayLike
) -> tuple[FloatOrArray, FloatOrArray]:
    """Two-sided z test of ``p1 == p0`` with the pooled variance.

    ``z = (p1 - p0) / sqrt(p(1-p)(1/n1 + 1/n0))`` with the pooled ``p = (x1+x0)/(n1+n0)``
    (e.g. Agresti, 2013, §3.1); ``p-value = 2·Φ(-|z|)``. Equals statsmodels'
    ``proportions_ztest([x1, x0], [n1, n0])``.

    Returns
    -------
    z, p : float or ndarray
        NaN where an arm is empty or nobody (or everybody) converted.
    """
    a1, m1 = _counts(x1, n1)
    a0, m0 = _counts(x0, n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (a1 + a0) / (m1 + m0)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / m1 + 1.0 / m0))
        z = (a1 / m1 - a0 / m0) / se
    z = np.where(se > 0, z, np.nan)
    p = 2.0 * stats.norm.sf(np.abs(z))
    return _float_or_array(np.asarray(z, dtype=float)), _float_or_array(np.asarray(p, dtype=float))


def ratio_interval(
    x1: npt.ArrayLike,
    n1: npt.ArrayLike,
    x0: npt.ArrayLike,
    n0: npt.ArrayLike,
    alpha: float = 0.05,
) -> tuple[FloatOrArray, FloatOrArray]:
    """Interval for the risk ratio ``p1 / p0`` by the log method (Katz et al., 1978).

    ``exp(log(p1/p0) ± z·sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0))``. The relative lift is the
    ratio minus one. Equals statsmodels' ``confint_proportions_2indep(compare="ratio",
    method="log")``.

    Returns
    -------
    lo, hi : float or ndarray
        NaN where either arm has no conversions (the log method is undefined there).
    """
    z = _z(alpha)
    a1, m1 = _counts(x1, n1)
    a0, m0 = _counts(x0, n0)
    ok = (a1 > 0) & (a0 > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.log(a1 / m1) - np.log(a0 / m0)
        half = z * np.sqrt(1.0 / a1 - 1.0 / m1 + 1.0 / a0 - 1.0 / m0)
        lo = np.where(ok, np.exp(log_ratio - half), np.nan)
        hi = np.where(ok, np.exp(log_ratio + half), np.nan)
    return _float_or_array(lo), _float_or_array(hi)


# --------------------------------------------------------------------------- means


@dataclass(frozen=True, slots=True)
class WelchResult(_JsonResult):
    """Welch's t test and interval for ``mean1 - mean0`` (treatment minus control).

    Attributes
    ----------
    diff : float
        ``mean1 - mean0``.
    se : float
        Standard error of the difference, ``sqrt(var1/n1 + var0/n0)``.
    df : float
        Welch–Satterthwaite degrees of freedom.
    t, p : float
        t statistic and two-sided p-value.
    lo, hi : float
        Confidence interval for the difference.
    mean1, mean0 : float
        Treatment and control means.
    """

    diff: float
    se: float
    df: float
    t: float
    p: float
    lo: float
    hi: float
    mean1: float
    mean0: float


def _welch_arrays(
    mean1: npt.ArrayLike,
    var1: npt.ArrayLike,
    n1: npt.ArrayLike,
    mean0: npt.ArrayLike,
    var0: npt.ArrayLike,
    n0: npt.ArrayLike,
    alpha: float,
) -> dict[str, FloatArray]:
    """Vectorised Welch statistics from summary statistics."""
    crit_level = 1.0 - alpha / 2.0
    _z(alpha)  # validates alpha
    m1, v1, k1, m0, v0, k0 = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (mean1, var1, n1, mean0, var0, n0))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        s1, s0 = v1 / k1, v0 / k0
        se2 = s1 + s0
        se = np.sqrt(se2)
        df = se2 * se2 / (s1 * s1 / (k1 - 1.0) + s0 * s0 / (k0 - 1.0))
        diff = m1 - m0
        t = diff / se
    valid = (k1 >= 2) & (k0 >= 2) & (se > 0) & np.isfinite(df)
    nan = np.full(diff.shape, np.nan)
    se = np.where((k1 >= 2) & (k0 >= 2), se, np.nan)
    t = np.where(valid, t, nan)
    df = np.where(valid, df, nan)
    safe_df = np.where(valid, df, 1.0)
    p = np.where(valid, 2.0 * stats.t.sf(np.abs(np.where(valid, t, 0.0)), safe_df), nan)
    half = np.where(valid, stats.t.ppf(crit_level, safe_df) * np.where(valid, se, 0.0), nan)
    diff = np.where((k1 >= 1) & (k0 >= 1), diff, nan)
    return {
        "diff": diff,
        "se": se,
        "df": df,
        "t": t,
        "p": p,
        "lo": diff - half,
        "hi": diff + half,
        "mean1": np.where(k1 >= 1, m1, nan),
        "mean0": np.where(k0 >= 1, m0, nan),
    }


def welch_from_moments(
    mean1: float,
    var1: float,
    n1: float,
    mean0: float,
    var0: float,
    n0: float,
    alpha: float = 0.05,
) -> WelchResult:
    """Welch's unequal-variance t test from summary statistics (Welch, 1947).

    ``t = (mean1 - mean0) / sqrt(var1/n1 + var0/n0)`` with the Welch–Satterthwaite
    ``df = (var1/n1 + var0/n0)² / ((var1/n1)²/(n1-1) + (var0/n0)²/(n0-1))``; the interval is
    ``diff ± t_{1-alpha/2, df}·se``. For many experiments at once use :func:`welch_batch`.

    Parameters
    ----------
    mean1, var1, n1 : float
        Mean, sample variance (``ddof=1``) and size of the treatment arm.
    mean0, var0, n0 : float
        The same for the control arm.
    alpha : float, default=0.05

    Returns
    -------
    WelchResult
        Test statistics NaN when an arm has fewer than 2 users or both variances are 0.
    """
    out = _welch_arrays(mean1, var1, n1, mean0, var0, n0, alpha)
    return WelchResult(**{k: float(v) for k, v in out.items()})


def welch_batch(
    mean1: npt.ArrayLike,
    var1: npt.ArrayLike,
    n1: npt.ArrayLike,
    mean0: npt.ArrayLike,
    var0: npt.ArrayLike,
    n0: npt.ArrayLike,
    alpha: float = 0.05,
) -> dict[str, FloatArray]:
    """:func:`welch_from_moments` for many experiments at once.

    Parameters
    ----------
    mean1, var1, n1, mean0, var0, n0 : array_like
        Summary statistics per experiment, broadcast against each other.
    alpha : float, default=0.05

    Returns
    -------
    dict of str to ndarray
        The fields of :class:`WelchResult` (``diff``, ``se``, ``df``, ``t``, ``p``, ``lo``,
        ``hi``, ``mean1``, ``mean0``), each an array of the broadcast shape; ready for
        ``pandas.DataFrame(...)``.
    """
    return _welch_arrays(mean1, var1, n1, mean0, var0, n0, alpha)


def _moments(x: FloatArray) -> tuple[float, float, float]:
    """Mean, sample variance (ddof=1) and size; NaN where undefined, without warnings."""
    n = x.size
    mean = float(x.mean()) if n else math.nan
    var = float(x.var(ddof=1)) if n >= 2 else math.nan
    return mean, var, float(n)


def welch_ttest(a: npt.ArrayLike, b: npt.ArrayLike, alpha: float = 0.05) -> WelchResult:
    """Welch's t test of ``mean(a) - mean(b)`` from raw values (Welch, 1947).

    Equals ``scipy.stats.ttest_ind(a, b, equal_var=False)`` (statistic, p-value and
    ``confidence_interval(1 - alpha)``); see :func:`welch_from_moments` for the formulas.

    Parameters
    ----------
    a : array_like of shape (n1,)
        Values of the treatment users (e.g. revenue per user, zeros included).
    b : array_like of shape (n0,)
        Values of the control users.
    alpha : float, default=0.05

    Returns
    -------
    WelchResult
    """
    return welch_from_moments(*_moments(_values(a, "a")), *_moments(_values(b, "b")), alpha=alpha)


def mean_interval(x: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean and Student t interval ``mean ± t_{1-alpha/2, n-1}·s/sqrt(n)`` (Student, 1908).

    Equals ``scipy.stats.t.interval(1 - alpha, n - 1, loc=mean, scale=sem)``.

    Returns
    -------
    mean, lo, hi : float
        The bounds are NaN for fewer than 2 values or zero variance; the mean is NaN when
        there are no values.
    """
    _z(alpha)
    values = _values(x, "x")
    mean, var, n = _moments(values)
    if n < 2 or not var > 0:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1.0)) * math.sqrt(var / n)
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------- bootstrap


def bootstrap_means(x: npt.ArrayLike, n_resamples: int = 2000, rng: SeedLike = 0) -> FloatArray:
    """Means of ``n_resamples`` resamples of ``x`` drawn with replacement (Efron, 1979).

    Exact and fast for zero-inflated values such as revenue per user: a resample's sum
    only depends on the draws that hit a non-zero value, so for each replicate the number
    of such draws is drawn from ``Binomial(n, n_nonzero/n)`` and only those draws are made,
    uniformly among the non-zero values. This has the same distribution as resampling all
    ``n`` values. Draws are made in chunks of at most ~4 million values (~100 MB).

    Parameters
    ----------
    x : array_like of shape (n,)
    n_resamples : int, default=2000
    rng : numpy.random.Generator, int or None, default=0
        Seed or generator; the same seed gives the same replicates.

    Returns
    -------
    ndarray of shape (n_resamples,)
        All NaN when ``x`` is empty.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    values = _values(x, "x")
    n = values.size
    if n == 0:
        return np.full(n_resamples, np.nan)
    gen = np.random.default_rng(rng)
    nonzero = values[values != 0]
    k = nonzero.size
    if k == 0:
        return np.zeros(n_resamples)
    picks = (
        np.full(n_resamples, n, dtype=np.int64)
        if k == n
        else gen.binomial(n, k / n, size=n_resamples).astype(np.int64)
    )
    sums = np.empty(n_resamples)
    rows = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_resamples, rows):
        counts = picks[start : start + rows]
        drawn = nonzero[gen.integers(0, k, size=int(counts.sum()))]
        if k == n:  # every draw is kept: equal-length replicates
            sums[start : start + counts.size] = drawn.reshape(counts.size, n).sum(axis=1)
            continue
        replicate = np.repeat(np.arange(counts.size), counts)
        sums[start : start + counts.size] = np.bincount(
            replicate, weights=drawn, minlength=counts.size
        )
    return sums / n


def percentile_interval(replicates: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval: the alpha/2 and 1-alpha/2 quantiles (Efron, 1979).

    Quantiles use numpy's default linear interpolation. NaN when there are no replicates
    or any replicate is NaN.
    """
    _z(alpha)
    reps = _values(replicates, "replicates")
    if reps.size == 0 or np.isnan(reps).any():
        return math.nan, math.nan
    lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_diff_interval(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    rng: SeedLike = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` (Efron & Tibshirani, 1993).

    Each arm is resampled independently (as it was randomized independently), with
    :func:`bootstrap_means`, and the interval is :func:`percentile_interval` of the
    differences of the replicate means.
    """
    gen = np.random.default_rng(rng)
    diffs = bootstrap_means(a, n_resamples, gen) - bootstrap_means(b, n_resamples, gen)
    return percentile_interval(diffs, alpha)


# --------------------------------------------------------------------------- CUPED


@dataclass(frozen=True, slots=True)
class CupedResult(_JsonResult):
    """Treatment effect on a metric adjusted by a pre-experiment covariate (CUPED).

    Attributes
    ----------
    theta : float
        ``cov(y, x) / var(x)`` on the pooled sample (0 when ``x`` is constant).
    diff, se, lo, hi, p : float
        Welch difference of the adjusted means, its standard error, interval and p-value.
    variance_reduction : float
        ``1 - var(y_adj) / var(y)`` on the pooled sample (about ``corr(y, x)²``).
    mean1, mean0 : float
        Unadjusted treatment and control means of ``y``.
    """

    theta: float
    diff: float
    se: float
    lo: float
    hi: float
    p: float
    variance_reduction: float
    mean1: float
    mean0: float


def cuped(
    y: npt.ArrayLike,
    x: npt.ArrayLike,
    treated: npt.ArrayLike,
    alpha: float = 0.05,
) -> CupedResult:
    """CUPED: difference in means after regressing out a pre-period covariate.

    Deng, Xu, Kohavi & Walker (2013): ``theta = cov(y, x) / var(x)`` on the pooled sample,
    ``y_adj = y - theta·(x - mean(x))``, then :func:`welch_ttest` of ``y_adj`` between the
    arms. ``x`` must not be affected by the treatment (measure it before assignment).

    Parameters
    ----------
    y : array_like of shape (n,)
        The metric during the experiment (e.g. revenue per user).
    x : array_like of shape (n,)
        The same metric (or another correlated one) before the experiment.
    treated : array_like of bool, shape (n,)
        True for users in the treatment arm.
    alpha : float, default=0.05

    Returns
    -------
    CupedResult
    """
    yv, xv = _values(y, "y"), _values(x, "x")
    arm = np.asarray(treated)
    if arm.dtype != bool:
        raise ValueError(f"treated must be a boolean array, got dtype {arm.dtype}")
    if not (yv.size == xv.size == arm.size):
        raise ValueError(
            f"y, x and treated must have the same length, got {yv.size}, {xv.size}, {arm.size}"
        )
    if yv.size >= 2:
        var_x = float(xv.var(ddof=1))
        cov_yx = float(np.cov(yv, xv, ddof=1)[0, 1])
        theta = cov_yx / var_x if var_x > 0 else 0.0
        y_adj = yv - theta * (xv - xv.mean()) if theta != 0.0 else yv
        var_y = float(yv.var(ddof=1))
        reduction = 1.0 - float(y_adj.var(ddof=1)) / var_y if var_y > 0 else math.nan
    else:
        theta, y_adj, reduction = math.nan, yv, math.nan
    welch = welch_ttest(y_adj[arm], y_adj[~arm], alpha)
    return CupedResult(
        theta=theta,
        diff=welch.diff,
        se=welch.se,
        lo=welch.lo,
        hi=welch.hi,
        p=welch.p,
        variance_reduction=reduction,
        mean1=_moments(yv[arm])[0],
        mean0=_moments(yv[~arm])[0],
    )


# --------------------------------------------------------------------------- sample ratio


@dataclass(frozen=True, slots=True)
class SrmResult(_JsonResult):
    """Sample ratio mismatch check: do the arm sizes match the designed split?

    Attributes
    ----------
    chi2, p, df : float
        Pearson chi-square statistic, its p-value and degrees of freedom (arms - 1).
    observed : tuple of float
        Users per arm.
    expected : tuple of float
        Users per arm the designed split predicts for the same total.
    flagged : bool
        ``p < alpha``: the assignment or the logging is probably broken; do not trust the
        experiment's effects until the cause is found.
    alpha : float
    """

    chi2: float
    p: float
    df: float
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    flagged: bool
    alpha: float


def srm_test(
    observed_counts: npt.ArrayLike, expected_shares: npt.ArrayLike, alpha: float = 0.01
) -> SrmResult:
    """Chi-square goodness-of-fit test of arm sizes against the designed split.

    Pearson's ``chi2 = sum((O - E)² / E)`` with ``E = total · share`` on ``arms - 1``
    degrees of freedom (Fabijan et al., 2019, "Diagnosing sample ratio mismatch"). Equals
    ``scipy.stats.chisquare(observed, expected)``. A small alpha (0.01 by default) is usual
    because the check runs on every experiment.

    Parameters
    ----------
    observed_counts : array_like of int, shape (n_arms,)
    expected_shares : array_like of float, shape (n_arms,)
        Designed share of each arm; normalised to sum to 1 (so ``[90, 10]`` works too).
    alpha : float, default=0.01

    Returns
    -------
    SrmResult
        ``chi2`` and ``p`` NaN (and not flagged) when there are no users.
    """
    _z(alpha)
    observed = np.asarray(observed_counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if observed.ndim != 1 or observed.shape != shares.shape or observed.size < 2:
        raise ValueError(
            "observed_counts and expected_shares must be 1-d with one entry per arm "
            f"(at least 2); got shapes {observed.shape} and {shares.shape}"
        )
    if np.any(shares <= 0) or np.any(observed < 0):
        raise ValueError(
            "expected_shares must be positive and observed_counts non-negative; "
            f"got shares {shares.tolist()} and counts {observed.tolist()}"
        )
    total = float(observed.sum())
    expected = total * shares / shares.sum()
    df = float(observed.size - 1)
    if total == 0:
        chi2 = p = math.nan
    else:
        chi2 = float(np.sum((observed - expected) ** 2 / expected))
        p = float(stats.chi2.sf(chi2, df))
    return SrmResult(
        chi2=chi2,
        p=p,
        df=df,
        observed=tuple(float(v) for v in observed),
        expected=tuple(float(v) for v in expected),
        flagged=bool(p < alpha),
        alpha=float(alpha),
    )


# --------------------------------------------------------------------------- many tests


def _pvalues(pvalues: npt.ArrayLike) -> FloatArray:
    p = _values(pvalues, "pvalues")
    with np.errstate(invalid="ignore"):
        bad = (p < 0) | (p > 1)
    if np.any(bad):
        raise ValueError(f"p-values must be between 0 and 1, found {p[bad][:3].tolist()}")
    return p


def holm(pvalues: npt.ArrayLike) -> FloatArray:
    """Holm (1979) step-down adjusted p-values (family-wise error rate).

    With the ``m`` non-NaN p-values sorted ascending, ``p_adj(i) = max_{j<=i} min(1,
    (m - j + 1)·p(j))``. Equals statsmodels' ``multipletests(method="holm")[1]``. NaNs stay
    NaN and do not count in ``m``.
    """
    p = _pvalues(pvalues)
    out = np.full(p.shape, np.nan)
    keep = np.flatnonzero(~np.isnan(p))
    m = keep.size
    if m:
        order = np.argsort(p[keep], kind="mergesort")
        ranked = p[keep][order] * np.arange(m, 0, -1)
        out[keep[order]] = np.minimum(np.maximum.accumulate(ranked), 1.0)
    return out


def benjamini_hochberg(pvalues: npt.ArrayLike) -> FloatArray:
    """Benjamini & Hochberg (1995) adjusted p-values (false discovery rate).

    With the ``m`` non-NaN p-values sorted ascending, ``q(i) = min_{j>=i} min(1,
    m·p(j)/j)``. Equals statsmodels' ``multipletests(method="fdr_bh")[1]``. NaNs stay NaN and
    do not count in ``m``.
    """
    p = _pvalues(pvalues)
    out = np.full(p.shape, np.nan)
    keep = np.flatnonzero(~np.isnan(p))
    m = keep.size
    if m:
        order = np.argsort(p[keep], kind="mergesort")
        ranked = p[keep][order] * m / np.arange(1, m + 1)
        out[keep[order]] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


# --------------------------------------------------------------------------- drift and NPS


def psi(expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike, eps: float = 1e-4) -> float:
    """Population stability index between two distributions over the same bins.

    ``PSI = sum((a - e)·ln(a / e))`` over bins, where ``e`` and ``a`` are the shares of each
    bin (counts divided by their total), each floored at ``eps`` so that an empty bin gives
    a large but finite term; floored shares are not renormalised (Siddiqi, 2006, ch. 8;
    Yurdakul, 2018). Rules of thumb: < 0.1 stable, 0.1–0.25 some shift, > 0.25 large shift.

    Parameters
    ----------
    expected_counts, actual_counts : array_like of shape (n_bins,)
        Counts (or shares) per bin, e.g. users per segment before and after.
    eps : float, default=1e-4

    Returns
    -------
    float
        NaN when either side has no users.
    """
    e = _values(expected_counts, "expected_counts")
    a = _values(actual_counts, "actual_counts")
    if e.shape != a.shape:
        raise ValueError(f"expected and actual need the same bins, got {e.size} and {a.size}")
    if np.any(e < 0) or np.any(a < 0):
        raise ValueError("counts must be non-negative")
    te, ta = float(e.sum()), float(a.sum())
    if te <= 0 or ta <= 0:
        return math.nan
    es = np.maximum(e / te, eps)
    as_ = np.maximum(a / ta, eps)
    return float(np.sum((as_ - es) * np.log(as_ / es)))


def psi_labels(before: Sequence[str], after: Sequence[str], eps: float = 1e-4) -> float:
    """:func:`psi` of the label distributions of two populations (e.g. segment of each user).

    Bins are the union of the labels seen on either side; a label missing on one side
    counts 0 there (floored at ``eps`` as in :func:`psi`).
    """
    labels = sorted(set(before) | set(after))
    index = {label: i for i, label in enumerate(labels)}
    e = np.bincount([index[v] for v in before], minlength=len(labels)).astype(float)
    a = np.bincount([index[v] for v in after], minlength=len(labels)).astype(float)
    return psi(e, a, eps)


def nps_interval(scores: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """Net Promoter Score with a Wald interval (trinomial variance; Rocks, 2016).

    ``NPS = 100·(p_promoters - p_detractors)`` where promoters score 9–10 and detractors
    0–6; the variance of the difference of the two multinomial shares is
    ``(p_p + p_d - (p_p - p_d)²) / n``, and the interval is ``NPS ± 100·z·sqrt(var)``
    (Rocks, B. 2016, "Interval estimation for the 'net promoter score'", The American
    Statistician 70(4)).

    Parameters
    ----------
    scores : array_like of int in 0..10

    Returns
    -------
    nps, lo, hi : float
        NaN without scores; the bounds are NaN when the variance is 0 (all answers in
        one group).
    """
    z = _z(alpha)
    s = _values(scores, "scores")
    if np.any((s < 0) | (s > 10) | (s != np.round(s))):
        raise ValueError("NPS scores must be whole numbers from 0 to 10")
    n = s.size
    if n == 0:
        return math.nan, math.nan, math.nan
    pp = float(np.mean(s >= 9))
    pd_ = float(np.mean(s <= 6))
    nps = 100.0 * (pp - pd_)
    var = (pp + pd_ - (pp - pd_) ** 2) / n
    if not var > 0:
        return nps, math.nan, math.nan
    half = 100.0 * z * math.sqrt(var)
    return nps, max(nps - half, -100.0), min(nps + half, 100.0)  # the Wald bounds, clipped
