"""The experiment statistics equal their reference implementations (scipy, statsmodels)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from segmint.experiments._stats import (
    benjamini_hochberg,
    bootstrap_diff_interval,
    bootstrap_means,
    cuped,
    holm,
    mean_interval,
    newcombe_interval,
    nps_interval,
    percentile_interval,
    psi,
    psi_labels,
    ratio_interval,
    srm_test,
    two_proportion_ztest,
    welch_batch,
    welch_from_moments,
    welch_ttest,
    wilson_interval,
)

TOL = 1e-9
# (x1, n1, x0, n0): typical, small, rare, extreme rates and unequal arms
PAIRS = [
    (120, 2000, 100, 2100),
    (7, 50, 3, 40),
    (1, 10_000, 5, 9_000),
    (0, 30, 4, 30),
    (25, 25, 20, 30),
    (480, 500, 2, 500),
]


# --------------------------------------------------------------------------- proportions


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
@pytest.mark.parametrize(("x", "n"), [(0, 10), (3, 10), (10, 10), (1, 1), (57, 1234)])
def test_wilson_equals_statsmodels(x: int, n: int, alpha: float) -> None:
    lo, hi = wilson_interval(x, n, alpha)
    ref = proportion_confint(x, n, alpha=alpha, method="wilson")
    assert isinstance(lo, float) and isinstance(hi, float)
    assert lo == pytest.approx(ref[0], abs=TOL) and hi == pytest.approx(ref[1], abs=TOL)


def test_wilson_is_vectorised() -> None:
    x, n = np.array([0, 3, 10, 57]), np.array([10, 10, 10, 1234])
    lo, hi = wilson_interval(x, n)
    ref_lo, ref_hi = proportion_confint(x, n, method="wilson")
    np.testing.assert_allclose(lo, ref_lo, atol=TOL)
    np.testing.assert_allclose(hi, ref_hi, atol=TOL)


def test_wilson_without_users_is_nan() -> None:
    lo, hi = wilson_interval(np.array([0, 2]), np.array([0, 4]))
    assert np.isnan(np.asarray(lo)[0]) and np.isnan(np.asarray(hi)[0])
    assert not np.isnan(np.asarray(lo)[1])


def test_wilson_refuses_more_successes_than_users() -> None:
    with pytest.raises(ValueError, match="successes must be between 0 and"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), PAIRS)
def test_newcombe_equals_statsmodels(x1: int, n1: int, x0: int, n0: int) -> None:
    lo, hi = newcombe_interval(x1, n1, x0, n0)
    ref = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff")
    assert lo == pytest.approx(ref[0], abs=TOL) and hi == pytest.approx(ref[1], abs=TOL)


def test_newcombe_is_vectorised_with_alpha() -> None:
    x1, n1, x0, n0 = (np.array(c) for c in zip(*PAIRS, strict=True))
    lo, hi = newcombe_interval(x1, n1, x0, n0, alpha=0.1)
    ref = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=0.1)
    np.testing.assert_allclose(lo, ref[0], atol=TOL)
    np.testing.assert_allclose(hi, ref[1], atol=TOL)


def test_newcombe_with_an_empty_arm_is_nan() -> None:
    lo, hi = newcombe_interval(3, 10, 0, 0)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), PAIRS)
def test_ztest_equals_statsmodels(x1: int, n1: int, x0: int, n0: int) -> None:
    z, p = two_proportion_ztest(x1, n1, x0, n0)
    ref_z, ref_p = proportions_ztest([x1, x0], [n1, n0])
    assert z == pytest.approx(ref_z, abs=TOL) and p == pytest.approx(ref_p, abs=TOL)


def test_ztest_is_vectorised() -> None:
    x1, n1, x0, n0 = (np.array(c) for c in zip(*PAIRS, strict=True))
    z, p = two_proportion_ztest(x1, n1, x0, n0)
    for i, pair in enumerate(PAIRS):
        assert (np.asarray(z)[i], np.asarray(p)[i]) == pytest.approx(
            two_proportion_ztest(*pair), abs=TOL
        )


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(0, 100, 0, 100), (100, 100, 50, 50)])
def test_ztest_without_variance_is_nan(x1: int, n1: int, x0: int, n0: int) -> None:
    z, p = two_proportion_ztest(x1, n1, x0, n0)
    assert math.isnan(z) and math.isnan(p)


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [p for p in PAIRS if p[0] and p[2]])
def test_ratio_interval_equals_statsmodels_log(x1: int, n1: int, x0: int, n0: int) -> None:
    lo, hi = ratio_interval(x1, n1, x0, n0)
    ref = confint_proportions_2indep(x1, n1, x0, n0, compare="ratio", method="log")
    assert lo == pytest.approx(ref[0], rel=TOL) and hi == pytest.approx(ref[1], rel=TOL)


def test_ratio_interval_is_nan_without_conversions() -> None:
    lo, hi = ratio_interval(np.array([0, 5, 5]), 100, np.array([5, 0, 5]), 100)
    assert np.isnan(lo[:2]).all() and np.isnan(hi[:2]).all()
    assert lo[2] < 1 < hi[2]


# --------------------------------------------------------------------------- means


def _samples() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    revenue = np.where(rng.random(400) < 0.1, rng.lognormal(3, 1, 400), 0.0)
    return [
        (rng.normal(1.0, 2.0, 50), rng.normal(0.0, 1.0, 70)),
        (rng.exponential(5.0, 10), rng.exponential(4.0, 3)),
        (revenue[:150], revenue[150:]),
        (np.array([1.0, 2.0]), np.array([5.0, 5.0, 5.0])),
    ]


@pytest.mark.parametrize("alpha", [0.05, 0.2])
@pytest.mark.parametrize("case", range(4))
def test_welch_equals_scipy(case: int, alpha: float) -> None:
    a, b = _samples()[case]
    r = welch_ttest(a, b, alpha)
    with warnings.catch_warnings():  # scipy warns on the zero-variance arm of case 3
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert r.t == pytest.approx(ref.statistic, abs=TOL)
    assert r.p == pytest.approx(ref.pvalue, abs=TOL)
    assert r.df == pytest.approx(ref.df, abs=TOL)
    assert (r.lo, r.hi) == pytest.approx((ci.low, ci.high), abs=TOL)
    assert r.diff == pytest.approx(a.mean() - b.mean(), abs=TOL)
    assert (r.mean1, r.mean0) == pytest.approx((a.mean(), b.mean()), abs=TOL)


def test_welch_from_moments_equals_welch_ttest() -> None:
    a, b = _samples()[0]
    r = welch_from_moments(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    assert r == welch_ttest(a, b)


def test_welch_batch_equals_one_at_a_time() -> None:
    samples = _samples()
    m = {
        k: np.array([f(s[i]) for s in samples])
        for k, i, f in [
            ("m1", 0, np.mean),
            ("v1", 0, lambda v: v.var(ddof=1)),
            ("n1", 0, len),
            ("m0", 1, np.mean),
            ("v0", 1, lambda v: v.var(ddof=1)),
            ("n0", 1, len),
        ]
    }
    batch = welch_batch(m["m1"], m["v1"], m["n1"], m["m0"], m["v0"], m["n0"], alpha=0.1)
    for i, (a, b) in enumerate(samples):
        single = welch_ttest(a, b, alpha=0.1)
        for field in ("diff", "se", "df", "t", "p", "lo", "hi", "mean1", "mean0"):
            assert batch[field][i] == pytest.approx(getattr(single, field), abs=TOL)


@pytest.mark.parametrize(
    ("a", "b"),
    [([3.0, 3.0, 3.0], [1.0, 1.0]), ([1.0], [1.0, 2.0, 3.0]), ([], [1.0, 2.0])],
    ids=["zero-variance", "one-user", "empty"],
)
def test_welch_undefined_is_nan(a: list[float], b: list[float]) -> None:
    r = welch_ttest(a, b)
    assert all(math.isnan(v) for v in (r.t, r.p, r.df, r.lo, r.hi))


def test_welch_zero_variance_keeps_the_difference() -> None:
    r = welch_ttest([3.0, 3.0, 3.0], [1.0, 1.0])
    assert (r.diff, r.mean1, r.mean0, r.se) == (2.0, 3.0, 1.0, 0.0)


def test_welch_to_dict_is_json_with_nan_as_none() -> None:
    d = welch_ttest([3.0, 3.0], [1.0, 1.0]).to_dict()
    assert d["p"] is None and d["diff"] == 2.0
    json.dumps(d)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_mean_interval_equals_scipy(alpha: float) -> None:
    x = np.random.default_rng(3).gamma(2.0, 3.0, 40)
    mean, lo, hi = mean_interval(x, alpha)
    ref = stats.t.interval(1 - alpha, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean(), abs=TOL)
    assert (lo, hi) == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize(
    ("x", "mean"), [([], math.nan), ([4.0], 4.0), ([2.0, 2.0], 2.0)], ids=["empty", "one", "flat"]
)
def test_mean_interval_undefined_is_nan(x: list[float], mean: float) -> None:
    m, lo, hi = mean_interval(x)
    assert (math.isnan(m) and math.isnan(mean)) or m == mean
    assert math.isnan(lo) and math.isnan(hi)


# --------------------------------------------------------------------------- bootstrap


def _revenue(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.1, rng.lognormal(3, 1, n), 0.0)


def test_bootstrap_is_deterministic_with_a_seed() -> None:
    x = _revenue(500, 1)
    np.testing.assert_array_equal(bootstrap_means(x, 300, 5), bootstrap_means(x, 300, 5))
    assert not np.array_equal(bootstrap_means(x, 300, 5), bootstrap_means(x, 300, 6))
    assert bootstrap_diff_interval(x, x[::-1] * 1.1, 300, rng=2) == bootstrap_diff_interval(
        x, x[::-1] * 1.1, 300, rng=2
    )


def test_bootstrap_without_zeros_equals_plain_resampling() -> None:
    x = np.random.default_rng(0).normal(10, 2, 200)
    idx = np.random.default_rng(9).integers(0, x.size, size=50 * x.size)
    naive = x[idx].reshape(50, x.size).mean(axis=1)
    np.testing.assert_allclose(bootstrap_means(x, 50, 9), naive, rtol=1e-12)


def test_bootstrap_of_zero_inflated_values_has_the_resampling_distribution() -> None:
    # the shortcut (draw only the non-zero picks) must keep the mean and the spread of the
    # replicate means: mean(x) and sd(x, ddof=0)/sqrt(n)
    x = _revenue(2000, 2)
    reps = bootstrap_means(x, 4000, 3)
    se = x.std() / math.sqrt(x.size)
    assert reps.shape == (4000,)
    assert abs(reps.mean() - x.mean()) < 4 * se / math.sqrt(reps.size)
    assert reps.std() == pytest.approx(se, rel=0.05)


def test_bootstrap_edge_cases() -> None:
    assert np.isnan(bootstrap_means([], 10)).all()
    np.testing.assert_array_equal(bootstrap_means([0.0, 0.0], 10), np.zeros(10))
    assert all(math.isnan(v) for v in bootstrap_diff_interval([], [1.0, 2.0], 10))


def test_percentile_interval_is_the_quantiles() -> None:
    reps = np.random.default_rng(1).normal(size=999)
    lo, hi = percentile_interval(reps, alpha=0.1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(reps, [0.05, 0.95])), abs=TOL)
    assert all(math.isnan(v) for v in percentile_interval([]))


def test_bootstrap_diff_interval_is_close_to_welch_on_large_samples() -> None:
    a, b = _revenue(5000, 3) * 1.2, _revenue(5000, 4)
    lo, hi = bootstrap_diff_interval(a, b, 2000, rng=0)
    w = welch_ttest(a, b)
    assert lo == pytest.approx(w.lo, abs=0.1 * (w.hi - w.lo))
    assert hi == pytest.approx(w.hi, abs=0.1 * (w.hi - w.lo))


# --------------------------------------------------------------------------- CUPED


def _cuped_data(n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(50, 10, n)
    treated = rng.random(n) < 0.5
    y = 0.8 * x + rng.normal(0, 5, n) + 2.0 * treated
    return y, x, treated


def test_cuped_with_a_constant_covariate_is_plain_welch() -> None:
    y, _, treated = _cuped_data()
    r = cuped(y, np.full(y.size, 7.0), treated)
    w = welch_ttest(y[treated], y[~treated])
    assert r.theta == 0.0 and r.variance_reduction == 0.0
    assert (r.diff, r.se, r.lo, r.hi, r.p) == (w.diff, w.se, w.lo, w.hi, w.p)


def test_cuped_reduces_variance_on_correlated_data() -> None:
    y, x, treated = _cuped_data()
    r = cuped(y, x, treated)
    w = welch_ttest(y[treated], y[~treated])
    rho = np.corrcoef(y, x)[0, 1]
    assert r.variance_reduction == pytest.approx(rho**2, abs=1e-9)
    # the standard error shrinks by about sqrt(1 - corr²)
    assert r.se == pytest.approx(w.se * math.sqrt(1 - rho**2), rel=0.05)
    assert r.lo < 2.0 < r.hi
    assert (r.mean1, r.mean0) == pytest.approx((y[treated].mean(), y[~treated].mean()))


def test_cuped_is_welch_on_the_adjusted_metric() -> None:
    y, x, treated = _cuped_data()
    theta = np.cov(y, x)[0, 1] / x.var(ddof=1)
    adjusted = y - theta * (x - x.mean())
    r = cuped(y, x, treated, alpha=0.1)
    w = welch_ttest(adjusted[treated], adjusted[~treated], alpha=0.1)
    assert r.theta == pytest.approx(theta, abs=TOL)
    assert (r.diff, r.se, r.lo, r.hi, r.p) == pytest.approx((w.diff, w.se, w.lo, w.hi, w.p))


def test_cuped_refuses_non_boolean_arms() -> None:
    y, x, _ = _cuped_data(10)
    with pytest.raises(ValueError, match="treated must be a boolean array"):
        cuped(y, x, np.arange(10) % 2)


# --------------------------------------------------------------------------- SRM


@pytest.mark.parametrize(
    ("observed", "shares"),
    [([5000, 5100], [0.5, 0.5]), ([9100, 900], [0.9, 0.1]), ([330, 310, 360], [1, 1, 1])],
)
def test_srm_equals_scipy_chisquare(observed: list[int], shares: list[float]) -> None:
    r = srm_test(observed, shares)
    expected = np.sum(observed) * np.asarray(shares, float) / np.sum(shares)
    ref = stats.chisquare(observed, expected)
    assert r.chi2 == pytest.approx(ref.statistic, abs=TOL)
    assert r.p == pytest.approx(ref.pvalue, abs=TOL)
    assert r.df == len(observed) - 1
    assert r.expected == pytest.approx(tuple(expected))


def test_srm_flags_a_broken_split() -> None:
    assert srm_test([5000, 4500], [50, 50]).flagged
    assert not srm_test([5000, 4950], [50, 50]).flagged
    assert srm_test([90, 10], [90, 10]) == srm_test([90, 10], [0.9, 0.1])


def test_srm_without_users_is_nan_and_not_flagged() -> None:
    r = srm_test([0, 0], [0.5, 0.5])
    assert math.isnan(r.chi2) and not r.flagged
    assert r.to_dict()["p"] is None


def test_srm_refuses_mismatched_arms() -> None:
    with pytest.raises(ValueError, match="one entry per arm"):
        srm_test([10, 20, 30], [0.5, 0.5])


# --------------------------------------------------------------------------- many tests


def _pvalues() -> np.ndarray:
    rng = np.random.default_rng(5)
    p = np.r_[rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 14), [0.01, 0.01, 1.0]]
    return rng.permutation(p)


@pytest.mark.parametrize(("ours", "method"), [(holm, "holm"), (benjamini_hochberg, "fdr_bh")])
def test_adjusted_pvalues_equal_statsmodels(ours: object, method: str) -> None:
    p = _pvalues()
    np.testing.assert_allclose(ours(p), multipletests(p, method=method)[1], atol=TOL)  # type: ignore[operator]


@pytest.mark.parametrize(("ours", "method"), [(holm, "holm"), (benjamini_hochberg, "fdr_bh")])
def test_adjusted_pvalues_keep_nan_out(ours: object, method: str) -> None:
    p = _pvalues()
    with_nan = np.insert(p, [0, 5, 5], np.nan)
    out = ours(with_nan)  # type: ignore[operator]
    assert np.isnan(out[[0, 6, 7]]).all()
    np.testing.assert_allclose(out[~np.isnan(with_nan)], multipletests(p, method=method)[1])


def test_adjusted_pvalues_of_nothing() -> None:
    assert holm([]).size == 0 and benjamini_hochberg([]).size == 0
    assert np.isnan(holm([np.nan])).all() and np.isnan(benjamini_hochberg([np.nan])).all()


def test_adjusted_pvalues_refuse_values_outside_0_1() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        holm([0.1, 1.5])


# --------------------------------------------------------------------------- PSI, NPS


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([50, 30, 20], [500, 300, 200]) == 0.0


def test_psi_by_hand() -> None:
    # shares 0.5/0.3/0.2 -> 0.4/0.3/0.3:
    # (0.4-0.5)·ln(0.4/0.5) + 0 + (0.3-0.2)·ln(0.3/0.2) = 0.1·ln(1.25) + 0.1·ln(1.5)
    assert psi([50, 30, 20], [40, 30, 30]) == pytest.approx(
        0.1 * math.log(1.25) + 0.1 * math.log(1.5), abs=1e-12
    )


def test_psi_floors_empty_bins_at_eps() -> None:
    # expected shares 1/0 -> floored 1/1e-4; actual 0.5/0.5:
    # (0.5-1)·ln(0.5/1) + (0.5-1e-4)·ln(0.5/1e-4)
    want = -0.5 * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([10, 0], [5, 5]) == pytest.approx(want, abs=1e-12)
    assert math.isnan(psi([0, 0], [5, 5]))


def test_psi_labels_counts_the_union_of_labels() -> None:
    before = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    after = ["a"] * 4 + ["b"] * 3 + ["d"] * 3
    assert psi_labels(before, after) == pytest.approx(psi([5, 3, 2, 0], [4, 3, 0, 3]))
    assert psi_labels(before, list(reversed(before))) == 0.0


def test_nps_interval_by_hand() -> None:
    scores = [10, 9, 8, 7, 6, 0, 10, 10, 3, 9]
    # promoters (9-10): 5 -> 0.5; detractors (0-6): 3 -> 0.3; NPS = 100·(0.5-0.3) = 20
    # var = (0.5 + 0.3 - 0.2²)/10 = 0.076; half-width = 100·1.959964·sqrt(0.076)
    nps, lo, hi = nps_interval(scores)
    half = 100 * stats.norm.isf(0.025) * math.sqrt(0.076)
    assert nps == pytest.approx(20.0)
    assert (lo, hi) == pytest.approx((20.0 - half, 20.0 + half), abs=1e-9)


def test_nps_interval_edge_cases() -> None:
    assert all(math.isnan(v) for v in nps_interval([]))
    nps, lo, hi = nps_interval([10, 9, 10])
    assert nps == 100.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="whole numbers from 0 to 10"):
        nps_interval([11, 5])


def test_alpha_is_checked() -> None:
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        wilson_interval(1, 10, alpha=5)
