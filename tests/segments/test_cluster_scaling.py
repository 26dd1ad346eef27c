"""FeatureScaler: imputation, log1p of money and counts, scaling, and the way back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from segmint.segments._scaling import FeatureScaler


@pytest.fixture()
def features() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 1_000
    frame = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 365, n).astype(float),
            "frequency": rng.poisson(3, n).astype(float),
            "monetary": rng.lognormal(4, 1, n),
            "events_30d": rng.poisson(10, n).astype(float),
            "spend_90d": rng.lognormal(3, 1, n),
            "discount_share": rng.uniform(0, 1, n),
        },
        index=pd.Index([f"u{i}" for i in range(n)], name="user_id"),
    )
    return frame


def test_auto_log1p_picks_money_and_counts_by_name(features: pd.DataFrame) -> None:
    scaler = FeatureScaler().fit(features)
    assert scaler.log1p_columns_ == ["frequency", "monetary", "events_30d", "spend_90d"]


def test_standard_scaling_gives_mean_zero_and_unit_variance(features: pd.DataFrame) -> None:
    scaled = FeatureScaler().fit_transform(features)
    np.testing.assert_allclose(scaled.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(ddof=0), 1.0)
    expected = np.log1p(features["monetary"])
    np.testing.assert_allclose(
        scaled["monetary"], (expected - expected.mean()) / expected.std(ddof=0)
    )
    assert scaled.index.equals(features.index)


def test_robust_scaling_centres_on_the_median_and_divides_by_the_iqr(
    features: pd.DataFrame,
) -> None:
    scaled = FeatureScaler(scaling="robust", log1p=None).fit_transform(features)
    q1, median, q3 = np.percentile(scaled["recency_days"], [25, 50, 75])
    assert median == pytest.approx(0.0)
    assert q3 - q1 == pytest.approx(1.0)


def test_missing_values_are_filled_with_the_median_and_counted(features: pd.DataFrame) -> None:
    data = features.copy()
    data.loc[data.index[:10], "recency_days"] = np.nan
    scaler = FeatureScaler(log1p=None).fit(data)
    median = float(data["recency_days"].median())
    assert scaler.medians_["recency_days"] == pytest.approx(median)
    assert scaler.n_imputed_["recency_days"] == 10
    assert scaler.n_imputed_["monetary"] == 0
    scaled = scaler.transform(data)
    assert not scaled.isna().any().any()
    expected = (median - scaler.center_["recency_days"]) / scaler.scale_["recency_days"]
    np.testing.assert_allclose(scaled["recency_days"].iloc[:10], expected)
    assert "10 imputed" in scaler.describe().at["recency_days", "text"]


def test_inverse_transform_returns_original_units(features: pd.DataFrame) -> None:
    scaler = FeatureScaler(scaling="robust").fit(features)
    back = scaler.inverse_transform(scaler.transform(features))
    pd.testing.assert_frame_equal(back, features, check_exact=False, rtol=1e-9)


def test_column_scaling_override_and_explicit_log1p(features: pd.DataFrame) -> None:
    scaler = FeatureScaler(log1p=["monetary"], column_scaling={"discount_share": "none"})
    scaled = scaler.fit_transform(features)
    assert scaler.log1p_columns_ == ["monetary"]
    np.testing.assert_allclose(scaled["discount_share"], features["discount_share"])
    description = scaler.describe()
    assert description.at["discount_share", "method"] == "none"
    assert bool(description.at["monetary", "log1p"])


def test_negative_money_stays_defined() -> None:
    data = pd.DataFrame({"monetary": [-50.0, 0.0, 10.0, 1_000.0]})
    scaled = FeatureScaler().fit_transform(data)
    assert np.isfinite(scaled.to_numpy()).all()
    assert scaled["monetary"].is_monotonic_increasing


def test_constant_column_is_not_divided_by_zero() -> None:
    data = pd.DataFrame({"recency_days": [5.0] * 4, "tenure_days": [1.0, 2.0, 3.0, 4.0]})
    scaled = FeatureScaler().fit_transform(data)
    np.testing.assert_allclose(scaled["recency_days"], 0.0)


def test_columns_are_matched_by_name(features: pd.DataFrame) -> None:
    scaler = FeatureScaler().fit(features)
    shuffled = features[features.columns[::-1]]
    pd.testing.assert_frame_equal(scaler.transform(shuffled), scaler.transform(features))
    with pytest.raises(ValueError, match="missing now"):
        scaler.transform(features.drop(columns="monetary"))


def test_unknown_columns_and_methods_are_errors(features: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="not in the data"):
        FeatureScaler(log1p=["revenue"]).fit(features)
    with pytest.raises(ValueError, match="unknown scaling"):
        FeatureScaler(scaling="minmax").fit(features)


def test_not_fitted_error_before_fit(features: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        FeatureScaler().transform(features)
