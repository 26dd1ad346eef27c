"""Clustering estimators recover planted structure and follow the scikit-learn contract."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from segmint.segments._cluster import (
    AutoKMeans,
    DensityClustering,
    FactorReducer,
    MixtureClustering,
    WardClustering,
    choose_k,
    elbow_k,
)

CENTERS = 6.0 * np.eye(4, 5)  # 4 blobs in 5-D, 6 standard deviations apart on one axis each


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny fits gain nothing from OpenMP threads, and on a busy machine they lose a lot.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def blobs() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 1_000)
    X = CENTERS[truth] + rng.normal(size=(4_000, 5))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    frame.index = pd.Index([f"u{i}" for i in range(4_000)], name="user_id")
    return frame, truth


# --------------------------------------------------------------------------- AutoKMeans


def test_autokmeans_finds_the_planted_k(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, truth = blobs
    model = AutoKMeans(random_state=0).fit(X)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(truth, model.labels_) > 0.95
    assert model.cluster_centers_.shape == (4, 5)
    assert model.algorithm_ == "full"


def test_autokmeans_is_deterministic(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = blobs
    first = AutoKMeans(k_max=6, random_state=3).fit(X)
    second = AutoKMeans(k_max=6, random_state=3).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    pd.testing.assert_frame_equal(first.k_scores_, second.k_scores_)


def test_k_scores_cover_the_range_and_the_decision_names_the_rule(
    blobs: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, _ = blobs
    model = AutoKMeans(k_min=2, k_max=10).fit(X)
    table = model.k_scores_
    assert list(table.index) == list(range(2, 11))
    for column in (
        "silhouette",
        "calinski_harabasz",
        "davies_bouldin",
        "inertia",
        "silhouette_rank",
        "calinski_harabasz_rank",
        "davies_bouldin_rank",
        "mean_rank",
        "elbow",
        "chosen",
    ):
        assert column in table.columns
    assert table["chosen"].sum() == 1 and bool(table.at[4, "chosen"])
    assert model.elbow_k_ == 4
    assert "mean rank" in model.decision_ and "silhouette" in model.decision_
    assert "elbow at k=4" in model.decision_


def test_minibatch_is_used_above_the_threshold(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, truth = blobs
    model = AutoKMeans(k_max=6, scan_sample=2_000, minibatch_threshold=3_000, batch_size=1_024).fit(
        X
    )
    assert model.algorithm_ == "minibatch"
    assert model.scan_size_ == 2_000
    assert len(model.labels_) == 4_000
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(truth, model.labels_) > 0.95
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_fixed_n_clusters_skips_the_choice(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = blobs
    model = AutoKMeans(n_clusters=3).fit(X)
    assert model.n_clusters_ == 3
    assert list(model.k_scores_.index) == [3]
    assert "fixed" in model.decision_


def test_predict_assigns_new_rows_to_the_nearest_centre(
    blobs: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, _ = blobs
    model = AutoKMeans(k_max=5).fit(X)
    expected = np.argmin(
        ((X.to_numpy()[:, None, :] - model.cluster_centers_[None]) ** 2).sum(-1), axis=1
    )
    np.testing.assert_array_equal(model.predict(X), expected)


def test_elbow_is_the_point_farthest_from_the_chord() -> None:
    # normalised: |1 - x - y| is 0, .44, .56, .38, .19, 0 -> k=4
    assert elbow_k([2, 3, 4, 5, 6, 7], [100, 40, 10, 8, 7, 6.5]) == 4
    assert elbow_k([2, 3], [10, 5]) is None


def test_choose_k_takes_the_best_mean_rank_and_breaks_ties_by_silhouette() -> None:
    scores = pd.DataFrame(
        {
            "silhouette": [0.50, 0.60, 0.40],
            "calinski_harabasz": [300.0, 200.0, 100.0],
            "davies_bouldin": [0.9, 0.8, 0.5],
            "inertia": [90.0, 50.0, 40.0],
        },
        index=pd.Index([2, 3, 4], name="k"),
    )
    # ranks: k=2 -> (2, 1, 3) = 2; k=3 -> (1, 2, 2) = 1.67; k=4 -> (3, 3, 1) = 2.33
    k, table, decision = choose_k(scores)
    assert k == 3
    assert table.at[3, "mean_rank"] == pytest.approx(5 / 3)
    tied = scores.assign(davies_bouldin=[0.8, 0.8, 0.5])  # k=2 and k=3 both mean 5/3
    k, _, decision = choose_k(tied)
    assert k == 3  # the higher silhouette
    assert "tied" in decision


def test_too_few_rows_for_k_min_is_an_error() -> None:
    X = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(ValueError, match="too few"):
        AutoKMeans(k_min=5).fit(X)


def test_missing_values_are_rejected_with_a_hint() -> None:
    X = np.random.default_rng(0).normal(size=(50, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AutoKMeans().fit(X)


def test_unknown_algorithm_is_an_error(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="algorithm must be"):
        AutoKMeans(algorithm="elkan").fit(blobs[0])


# --------------------------------------------------------------------------- Ward, density, mixture


@pytest.mark.parametrize("extend", ["centroid", "knn"])
def test_ward_on_a_sample_recovers_the_blobs(
    blobs: tuple[pd.DataFrame, np.ndarray], extend: str
) -> None:
    X, truth = blobs
    model = WardClustering(sample_size=800, extend=extend).fit(X)
    assert model.n_clusters_ == 4
    assert len(model.sample_indices_) == 800
    assert adjusted_rand_score(truth, model.labels_) > 0.9
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_hdbscan_recovers_the_blobs_and_reports_injected_noise(
    blobs: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, truth = blobs
    rng = np.random.default_rng(1)
    noise = pd.DataFrame(rng.uniform(-8, 14, size=(200, 5)), columns=X.columns)
    data = pd.concat([X, noise], ignore_index=True)
    model = DensityClustering(sample_size=2_000).fit(data)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(truth, model.labels_[:4_000]) > 0.9
    assert (model.labels_[4_000:] == -1).mean() > 0.8
    assert model.n_noise_ == int((model.labels_ == -1).sum()) > 0
    assert model.noise_share_ == pytest.approx(model.n_noise_ / 4_200)
    assert model.group_names_[-1] == "noise"
    np.testing.assert_array_equal(model.predict(data), model.labels_)


def test_dbscan_recovers_the_blobs(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, truth = blobs
    model = DensityClustering("dbscan", eps=2.0, sample_size=3_000).fit(X)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(truth, model.labels_) > 0.9


def test_mixture_chooses_k_by_bic_and_gives_probabilities(
    blobs: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, truth = blobs
    model = MixtureClustering(k_max=6).fit(X)
    assert model.n_clusters_ == 4
    assert model.k_scores_["bic"].idxmin() == 4
    assert adjusted_rand_score(truth, model.labels_) > 0.9
    proba = model.predict_proba(X)
    assert proba.shape == (4_000, 4)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(model.probabilities_, proba.max(axis=1))
    assert "BIC" in model.decision_


# --------------------------------------------------------------------------- factor reduction


def test_pca_loadings_and_explained_variance(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = blobs
    model = FactorReducer("pca", n_components=3).fit(X)
    reference = PCA(n_components=3).fit(X.to_numpy())
    assert model.loadings_.shape == (5, 3)
    assert list(model.loadings_.index) == list(X.columns)
    assert list(model.loadings_.columns) == ["PC1", "PC2", "PC3"]
    np.testing.assert_allclose(
        model.explained_variance_ratio_.to_numpy(), reference.explained_variance_ratio_
    )
    scores = model.transform(X)
    assert list(scores.index) == list(X.index)
    assert scores.shape == (4_000, 3)


def test_pca_keeps_enough_components_for_the_variance_target() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2_000, 1))
    X = np.hstack([base + 0.05 * rng.normal(size=(2_000, 1)) for _ in range(4)])
    model = FactorReducer("pca", variance_target=0.9).fit(X)
    assert model.n_components_ == 1


def test_factor_analysis_finds_two_latent_factors() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(3_000, 2))
    weights = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=float)
    X = pd.DataFrame(
        latent @ weights + 0.3 * rng.normal(size=(3_000, 6)),
        columns=["a1", "a2", "a3", "b1", "b2", "b3"],
    )
    model = FactorReducer("factor").fit(X)
    assert model.n_components_ == 2
    strongest = model.loadings_.abs().idxmax(axis=1)
    assert strongest["a1"] == strongest["a2"] == strongest["a3"]
    assert strongest["b1"] == strongest["b2"] == strongest["b3"] != strongest["a1"]


# --------------------------------------------------------------------------- contract

ESTIMATORS = [
    AutoKMeans(k_max=4),
    WardClustering(k_max=4),
    DensityClustering(),
    MixtureClustering(k_max=4),
    FactorReducer(),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_not_fitted_error_before_fit(estimator: object) -> None:
    fresh = clone(estimator)
    method = fresh.transform if isinstance(fresh, FactorReducer) else fresh.predict
    with pytest.raises(NotFittedError):
        method(np.zeros((3, 5)))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_returns_self_and_params_round_trip(
    estimator: object, blobs: tuple[pd.DataFrame, np.ndarray]
) -> None:
    fresh = clone(estimator)
    params = fresh.get_params()
    assert fresh.fit(blobs[0].iloc[:600]) is fresh
    assert clone(fresh).get_params() == params
    assert fresh.n_features_in_ == 5


def test_thread_limit_does_not_change_the_result(blobs: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = blobs
    limited = AutoKMeans(k_max=5, n_threads=1).fit(X)
    with threadpool_limits(limits=2, user_api="openmp"):
        default = AutoKMeans(k_max=5).fit(X)
    np.testing.assert_array_equal(limited.labels_, default.labels_)


def test_hdbscan_when_every_point_is_noise() -> None:
    """Uniform scatter with a cluster size larger than any dense spot: all noise, no crash."""
    X = np.random.default_rng(0).uniform(size=(60, 2))
    model = DensityClustering(min_cluster_size=50).fit(X)
    assert model.n_clusters_ == 0 and model.n_noise_ == 60
    assert (model.predict(X) == -1).all()


def test_the_k_scan_alone_chooses_what_the_fit_chooses_on_the_same_sample() -> None:
    """Spark's k-means fits all rows from AutoKMeans.scan's centres: the scan must be the
    fit's own (same sample rows, same scores, same k), however many rows are sampled."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 6, size=(4, 3))
    X = np.vstack([c + rng.normal(0, 1, size=(900, 3)) for c in centres])
    full = AutoKMeans(k_min=2, k_max=6, scan_sample=1000, sample_size=500, random_state=5).fit(X)
    scan = AutoKMeans(k_min=2, k_max=6, scan_sample=1000, sample_size=500, random_state=5).scan(X)
    assert scan.n_clusters_ == full.n_clusters_ == 4 and scan.scan_size_ == 1000
    pd.testing.assert_frame_equal(scan.k_scores_, full.k_scores_)
    assert scan.decision_ == full.decision_
    assert not hasattr(scan, "labels_")  # no fit on all rows
