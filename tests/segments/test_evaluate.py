"""evaluate_clustering against scikit-learn and hand-computed values."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from threadpoolctl import threadpool_limits

from segmint.segments._evaluate import evaluate_clustering, silhouette_many


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 500)
    return 6.0 * np.eye(4, 5)[truth] + rng.normal(size=(2_000, 5)), truth


def test_silhouette_equals_sklearn_when_the_sample_covers_all_rows(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    X, truth = blobs
    result = evaluate_clustering(X, truth, sample_size=len(X))
    assert result["silhouette"] == pytest.approx(silhouette_score(X, truth), abs=1e-12)
    assert result["silhouette_sample_size"] == len(X)


def test_sampled_silhouette_is_close_to_the_full_one(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, truth = blobs
    result = evaluate_clustering(X, truth, sample_size=500)
    assert result["silhouette_sample_size"] == 500
    assert result["silhouette"] == pytest.approx(silhouette_score(X, truth), abs=0.03)


def test_silhouette_of_many_labelings_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    labelings = [rng.integers(0, k, 300) for k in (2, 3, 7)]
    labelings.append(np.r_[np.zeros(299, dtype=int), 1])  # a cluster of one user
    got = silhouette_many(X, labelings, chunk_rows=64)
    for value, labels in zip(got, labelings, strict=True):
        assert value == pytest.approx(silhouette_score(X, labels), abs=1e-12)
    assert silhouette_many(X, [np.zeros(300)]) == [None]


def test_sse_equals_kmeans_inertia(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = blobs
    model = KMeans(n_clusters=4, n_init=1, random_state=0, tol=0.0).fit(X)
    result = evaluate_clustering(X, model.labels_)
    assert result["sse"] == pytest.approx(model.inertia_, rel=1e-9)


def test_calinski_harabasz_and_davies_bouldin_equal_sklearn(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    X, truth = blobs
    result = evaluate_clustering(X, truth)
    assert result["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(X, truth))
    assert result["davies_bouldin"] == pytest.approx(davies_bouldin_score(X, truth))


def test_stability_is_high_on_blobs_and_low_on_uniform_noise(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    X, _ = blobs
    model = KMeans(n_clusters=4, n_init=1, random_state=0)

    def refit(data: np.ndarray) -> KMeans:
        return clone(model).fit(data)

    on_blobs = evaluate_clustering(X, model.fit_predict(X), refit=refit, n_bootstrap=5)
    uniform = np.random.default_rng(2).uniform(size=X.shape)
    on_noise = evaluate_clustering(uniform, model.fit_predict(uniform), refit=refit, n_bootstrap=5)
    assert on_blobs["stability"] > 0.98
    assert len(on_blobs["stability_ari"]) == 5
    assert on_noise["stability"] < on_blobs["stability"] - 0.2


def test_without_refit_stability_is_none(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, truth = blobs
    assert evaluate_clustering(X, truth)["stability"] is None


def test_refit_must_return_a_model_with_predict(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, truth = blobs
    with pytest.raises(TypeError, match="predict"):
        evaluate_clustering(X, truth, refit=lambda data: None, n_bootstrap=1)


def test_sizes_shares_balance_and_revenue_by_hand() -> None:
    X = np.array([[0.0], [0.1], [5.0], [5.1], [9.0], [9.2], [9.1], [9.3]])
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    revenue = np.array([10.0, 10.0, 5.0, 5.0, 5.0, 5.0, 10.0, np.nan])  # NaN counts as 0
    result = evaluate_clustering(X, labels, revenue=revenue)
    assert result["sizes"] == {2: 4, 0: 2, 1: 2}
    assert result["shares"] == {2: 0.5, 0: 0.25, 1: 0.25}
    assert result["size_ratio"] == 0.5
    entropy = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)) / np.log(3)
    assert result["size_entropy"] == pytest.approx(entropy)
    assert result["revenue_share"] == pytest.approx({0: 0.4, 1: 0.2, 2: 0.4})
    assert sum(result["revenue_share"].values()) == pytest.approx(1.0)


def test_noise_is_left_out_of_the_scores_and_reported_apart(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    X, truth = blobs
    labels = truth.copy()
    labels[::10] = -1
    kept = labels != -1
    result = evaluate_clustering(X, labels, sample_size=len(X))
    assert result["n_clusters"] == 4
    assert result["n_noise"] == 200
    assert result["noise_share"] == pytest.approx(0.1)
    assert result["sizes"][-1] == 200
    assert result["silhouette"] == pytest.approx(silhouette_score(X[kept], labels[kept]))
    assert result["calinski_harabasz"] == pytest.approx(
        calinski_harabasz_score(X[kept], labels[kept])
    )


def test_a_single_cluster_has_no_separation_scores() -> None:
    X = np.random.default_rng(0).normal(size=(50, 2))
    result = evaluate_clustering(X, np.zeros(50, dtype=int))
    assert result["silhouette"] is None and result["davies_bouldin"] is None
    assert result["size_entropy"] == 1.0


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="one label per user"):
        evaluate_clustering(np.zeros((5, 2)), np.zeros(4))
