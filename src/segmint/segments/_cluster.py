"""Clustering estimators for per-user features: k-means with automatic k, Ward, density,
Gaussian mixtures, and factor reduction.

All estimators take the *scaled* features (see :class:`~segmint.segments._scaling.FeatureScaler`)
as a DataFrame or array without NaN, and follow the scikit-learn contract: ``__init__`` only
stores parameters, ``fit`` validates and returns ``self``, fitted state ends in ``_``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from segmint.segments._evaluate import NOISE_LABEL, silhouette_many

log = logging.getLogger(__name__)

__all__ = [
    "NOISE_LABEL",
    "AutoKMeans",
    "DensityClustering",
    "FactorReducer",
    "MixtureClustering",
    "WardClustering",
    "choose_k",
    "elbow_k",
]

DECISION_RULE = (
    "rank each k by silhouette (higher is better), Calinski-Harabasz (higher) and "
    "Davies-Bouldin (lower); choose the best mean rank; ties go to the higher silhouette, "
    "then to the k nearest the inertia elbow, then to the smaller k"
)


# --------------------------------------------------------------------------- helpers


def _seed(random_state: Any) -> int:
    """An int seed from an int or None (None draws a fresh seed: not reproducible)."""
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise ValueError(f"random_state must be an int or None, got {random_state!r}")
    return int(random_state)


def _sample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted indices of a uniform sample without replacement, or None for all rows."""
    if size is None or size >= n:
        return None
    if size < 2:
        raise ValueError(f"a sample needs at least 2 rows, got {size}")
    return np.sort(rng.choice(n, size, replace=False))


def _k_range(n_clusters: Any, k_min: int, k_max: int, n_rows: int) -> list[int]:
    if n_clusters == "auto":
        if not 2 <= k_min <= k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
        top = min(k_max, n_rows - 1)
        if top < k_min:
            raise ValueError(f"{n_rows} rows are too few for k_min={k_min} clusters")
        return list(range(k_min, top + 1))
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise ValueError(f"n_clusters must be 'auto' or an int >= 2, got {n_clusters!r}")
    if not 2 <= n_clusters <= n_rows - 1:
        raise ValueError(f"n_clusters={n_clusters} needs 2 <= n_clusters < n_rows={n_rows}")
    return [int(n_clusters)]


def elbow_k(ks: list[int], inertia: list[float]) -> int | None:
    """Kneedle elbow: the k farthest from the chord of the normalised inertia curve.

    Both axes are scaled to [0, 1]; the chord joins the first and last points; the elbow is
    the k with the largest distance to it. None when fewer than 3 k were tried or the
    curve is flat.
    """
    if len(ks) < 3:
        return None
    x = np.asarray(ks, dtype=float)
    y = np.asarray(inertia, dtype=float)
    span_y = y.max() - y.min()
    if not span_y > 0:
        return None
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y.min()) / span_y
    dx, dy = 1.0, yn[-1] - yn[0]
    distance = np.abs(dy * xn - dx * (yn - yn[0])) / np.hypot(dx, dy)
    return int(ks[int(np.argmax(distance))])


def choose_k(scores: pd.DataFrame) -> tuple[int, pd.DataFrame, str]:
    """Pick k from internal scores by mean rank (see ``DECISION_RULE``).

    Parameters
    ----------
    scores : pandas.DataFrame
        Index k; columns ``silhouette``, ``calinski_harabasz``, ``davies_bouldin``,
        ``inertia``.

    Returns
    -------
    k : int
    table : pandas.DataFrame
        ``scores`` plus ``silhouette_rank``, ``calinski_harabasz_rank``,
        ``davies_bouldin_rank``, ``mean_rank`` and the boolean ``elbow`` and ``chosen``.
    decision : str
        Why this k, in one or two sentences.
    """
    table = scores.copy()
    for column, ascending in (
        ("silhouette", False),
        ("calinski_harabasz", False),
        ("davies_bouldin", True),
    ):
        table[f"{column}_rank"] = table[column].rank(
            ascending=ascending, method="min", na_option="bottom"
        )
    table["mean_rank"] = table[
        ["silhouette_rank", "calinski_harabasz_rank", "davies_bouldin_rank"]
    ].mean(axis=1)
    ks = [int(k) for k in table.index]
    elbow = elbow_k(ks, table["inertia"].tolist())
    table["elbow"] = [k == elbow for k in ks]
    records: dict[int, dict[str, float]] = {
        k: {str(c): float(v) for c, v in row.items() if not isinstance(v, bool | np.bool_)}
        for k, (_, row) in zip(ks, table.iterrows(), strict=True)
    }
    order = sorted(
        ks,
        key=lambda k: (
            records[k]["mean_rank"],
            -np.nan_to_num(records[k]["silhouette"], nan=-np.inf),
            abs(k - elbow) if elbow is not None else 0,
            k,
        ),
    )
    k = order[0]
    table["chosen"] = [kk == k for kk in ks]
    row = records[k]
    if len(ks) == 1:
        decision = f"k={k} fixed by n_clusters (silhouette {row['silhouette']:.3f})"
        return k, table, decision
    tie = ""
    if records[order[1]]["mean_rank"] == row["mean_rank"]:
        tie = f" (tied on mean rank with k={order[1]}, broken by silhouette/elbow)"
    elbow_text = f"inertia elbow at k={elbow}" if elbow is not None else "no inertia elbow"
    decision = (
        f"k={k}: best mean rank {row['mean_rank']:.2f}{tie} over k={ks[0]}..{ks[-1]} - "
        f"silhouette {row['silhouette']:.3f} (rank {row['silhouette_rank']:.0f}), "
        f"Calinski-Harabasz {row['calinski_harabasz']:.4g} "
        f"(rank {row['calinski_harabasz_rank']:.0f}), "
        f"Davies-Bouldin {row['davies_bouldin']:.3f} (rank {row['davies_bouldin_rank']:.0f}); "
        f"{elbow_text}. Rule: {DECISION_RULE}."
    )
    return k, table, decision


def _internal_scores(X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Calinski-Harabasz and Davies-Bouldin; NaN when fewer than 2 clusters are non-empty."""
    if len(np.unique(labels)) < 2:
        return float("nan"), float("nan")
    return float(calinski_harabasz_score(X, labels)), float(davies_bouldin_score(X, labels))


def _nearest(centers: np.ndarray, X: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """Index of the nearest centre for each row, in chunks."""
    out = np.empty(X.shape[0], dtype=np.intp)
    c2 = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start : start + chunk_rows]
        out[start : start + chunk_rows] = np.argmin(c2[None, :] - 2.0 * block @ centers.T, axis=1)
    return out


class _Fitted:
    """Mixin: validate input like scikit-learn and check fitted state."""

    def _validate_fit(self, X: Any) -> np.ndarray:
        arr: np.ndarray = validate_data(self, X, dtype=np.float64, ensure_min_samples=3)
        return arr

    def _validate_predict(self, X: Any, attribute: str = "labels_") -> np.ndarray:
        check_is_fitted(self, attribute)
        arr: np.ndarray = validate_data(self, X, dtype=np.float64, reset=False)
        return arr


# --------------------------------------------------------------------------- k-means


class AutoKMeans(_Fitted, ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """K-means that chooses k itself, fast on millions of users.

    **How k is chosen.** For every k in ``k_min..k_max`` k-means is fitted on a scan
    sample (``scan_sample`` rows) and scored by the silhouette (on ``sample_size`` rows of
    the scan sample, the same rows for every k), the Calinski-Harabasz index and the
    Davies-Bouldin index (on the whole scan sample), plus the inertia. Each k is ranked by
    each of the three scores (silhouette high, Calinski-Harabasz high, Davies-Bouldin low)
    and **the k with the best mean rank wins**; ties go to the higher silhouette, then to
    the k nearest the inertia elbow (kneedle: the point farthest from the chord of the
    normalised inertia curve), then to the smaller k. The elbow is always reported. A
    mean of ranks lets no single index dominate: Calinski-Harabasz tends to grow with k on
    weakly structured data and Davies-Bouldin to favour small k, the silhouette sits in
    between. ``decision_`` says in words why k was chosen; ``k_scores_`` has the numbers.

    **Large data.** When there are more rows than ``scan_sample`` the chosen k is refitted
    on all rows, starting from the centres found on the sample. A fit on more than
    ``minibatch_threshold`` rows uses :class:`~sklearn.cluster.MiniBatchKMeans`
    (``algorithm='auto'``); ``'full'`` and ``'minibatch'`` force one or the other.

    Parameters
    ----------
    n_clusters : 'auto' or int, default='auto'
        Number of clusters; an int skips the choice (its scores are still reported).
    k_min, k_max : int, default=2, 10
        Range of k tried when ``n_clusters='auto'``.
    sample_size : int, default=10_000
        Rows for the silhouette (it is O(n^2)).
    scan_sample : int or None, default=100_000
        Rows the k-scan is fitted on; None scans on all rows.
    algorithm : {'auto', 'full', 'minibatch'}, default='auto'
        Lloyd k-means (``'full'``) or mini-batch k-means; ``'auto'`` uses mini-batch for
        fits on more than ``minibatch_threshold`` rows.
    minibatch_threshold : int, default=200_000
        Row count above which ``'auto'`` switches to mini-batch.
    n_init : int, default=3
        k-means++ restarts per k in the scan (the refit on all rows starts once, from the
        scan's centres).
    max_iter : int, default=300
        Maximum Lloyd iterations (mini-batch: passes over the data) per fit.
    batch_size : int, default=65_536
        Mini-batch size; large batches keep the per-step overhead low on millions of rows.
    random_state : int or None, default=0
        Seed for samples and initialisation; the same seed gives the same labels.
    n_threads : int or None, default=1
        OpenMP threads for k-means; None keeps scikit-learn's default (all cores). The
        k-scan's Lloyd iterations are short, so one thread is faster on small machines
        (measured on 2 cores: 1.5 s vs 2.1 s at 50k idle, 8x faster with the other core
        busy; see docs/benchmarks.md).

    Attributes
    ----------
    n_clusters_ : int
        Chosen k.
    labels_ : ndarray of shape (n_users,)
        Cluster of each row, 0..k-1.
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
        Centres in the scaled space.
    inertia_ : float
        Within-cluster sum of squares of the final fit on all rows.
    k_scores_ : pandas.DataFrame
        One row per k tried (index ``k``): ``silhouette``, ``calinski_harabasz``,
        ``davies_bouldin``, ``inertia``, their ranks, ``mean_rank``, ``elbow`` and
        ``chosen``.
    elbow_k_ : int or None
        The inertia elbow.
    decision_ : str
        Why ``n_clusters_`` was chosen.
    algorithm_ : str
        ``'full'`` or ``'minibatch'``: what the final fit used.
    scan_size_ : int
        Rows the k-scan was fitted on.
    estimator_ : KMeans or MiniBatchKMeans
        The final fitted model.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.

    Examples
    --------
    >>> model = AutoKMeans(k_min=2, k_max=8, random_state=0).fit(scaled)  # doctest: +SKIP
    >>> model.n_clusters_, model.decision_  # doctest: +SKIP
    """

    def __init__(
        self,
        n_clusters: int | str = "auto",
        *,
        k_min: int = 2,
        k_max: int = 10,
        sample_size: int = 10_000,
        scan_sample: int | None = 100_000,
        algorithm: str = "auto",
        minibatch_threshold: int = 200_000,
        n_init: int = 3,
        max_iter: int = 300,
        batch_size: int = 65_536,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.n_clusters = n_clusters
        self.k_min = k_min
        self.k_max = k_max
        self.sample_size = sample_size
        self.scan_sample = scan_sample
        self.algorithm = algorithm
        self.minibatch_threshold = minibatch_threshold
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_threads = n_threads

    def _use_minibatch(self, n_rows: int) -> bool:
        if self.algorithm not in ("auto", "full", "minibatch"):
            raise ValueError(
                f"algorithm must be 'auto', 'full' or 'minibatch', got {self.algorithm!r}"
            )
        return self.algorithm == "minibatch" or (
            self.algorithm == "auto" and n_rows > self.minibatch_threshold
        )

    def _model(self, k: int, n_rows: int, seed: int, init: np.ndarray | None) -> Any:
        start: Any = "k-means++" if init is None else init
        n_init = self.n_init if init is None else 1
        if self._use_minibatch(n_rows):
            return MiniBatchKMeans(
                n_clusters=k,
                init=start,
                n_init=n_init,
                max_iter=self.max_iter,
                batch_size=min(self.batch_size, n_rows),
                random_state=seed,
            )
        return KMeans(
            n_clusters=k, init=start, n_init=n_init, max_iter=self.max_iter, random_state=seed
        )

    def fit(self, X: Any, y: Any = None) -> AutoKMeans:
        """Scan k, choose it, and fit k-means on all rows.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : AutoKMeans
        """
        if self.n_threads is None:
            return self._fit(X)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._fit(X)

    def scan(self, X: Any) -> AutoKMeans:
        """Choose k as :meth:`fit` does, without the fit on all rows.

        Sets ``n_clusters_``, ``k_scores_``, ``elbow_k_``, ``decision_``, ``scan_size_`` and
        ``scan_centers_`` (the centres for the chosen k on the scan sample): another engine
        (Spark's MLlib) fits all rows from them and chooses exactly what this one would.
        """
        self._scan(self._validate_fit(X))
        return self

    def _scan(self, data: np.ndarray) -> tuple[np.ndarray | None, Any]:
        """The k-scan: (the scan sample's rows, None for all rows; the model for the
        chosen k on it)."""
        started = time.perf_counter()
        n = data.shape[0]
        ks = _k_range(self.n_clusters, self.k_min, self.k_max, n)
        self._use_minibatch(n)  # validates `algorithm` before any work
        seed = _seed(self.random_state)
        rng = np.random.default_rng(seed)
        scan_idx = _sample(n, self.scan_sample, rng)
        scan = data if scan_idx is None else data[scan_idx]
        sil_idx = _sample(scan.shape[0], self.sample_size, rng)
        models: dict[int, Any] = {}
        rows: list[dict[str, float]] = []
        labelings: list[np.ndarray] = []
        for k in ks:
            model = self._model(k, scan.shape[0], seed, None).fit(scan)
            models[k] = model
            labels = model.labels_
            ch, db = _internal_scores(scan, labels)
            rows.append(
                {"calinski_harabasz": ch, "davies_bouldin": db, "inertia": float(model.inertia_)}
            )
            labelings.append(labels if sil_idx is None else labels[sil_idx])
        sil_rows = scan if sil_idx is None else scan[sil_idx]
        silhouettes = silhouette_many(sil_rows, labelings)
        scores = pd.DataFrame(rows, index=pd.Index(ks, name="k"))
        scores.insert(0, "silhouette", [np.nan if s is None else s for s in silhouettes])
        k, table, decision = choose_k(scores)
        self.n_clusters_ = int(k)
        self.k_scores_ = table
        self.elbow_k_ = elbow_k(ks, scores["inertia"].tolist())
        self.decision_ = decision
        self.scan_size_ = int(scan.shape[0])
        self.scan_centers_ = np.asarray(models[k].cluster_centers_)
        log.debug("AutoKMeans k-scan on %d rows: %.2fs; %s", scan.shape[0], time.perf_counter() - started, decision)  # fmt: skip
        return scan_idx, models[k]

    def _fit(self, X: Any) -> AutoKMeans:
        started = time.perf_counter()
        data = self._validate_fit(X)
        scan_idx, chosen = self._scan(data)
        if scan_idx is None:
            final = chosen
        else:
            seed = _seed(self.random_state)
            final = self._model(self.n_clusters_, data.shape[0], seed, chosen.cluster_centers_)
            final = final.fit(data)
        self.estimator_ = final
        self.labels_ = np.asarray(final.labels_, dtype=np.intp)
        self.cluster_centers_ = np.asarray(final.cluster_centers_)
        self.inertia_ = float(final.inertia_)
        self.algorithm_ = "minibatch" if isinstance(final, MiniBatchKMeans) else "full"
        log.debug("AutoKMeans on %d rows: %s fit, %.2fs in all", data.shape[0], self.algorithm_, time.perf_counter() - started)  # fmt: skip
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Nearest centre for each row.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users,)
        """
        data = self._validate_predict(X)
        return np.asarray(self.estimator_.predict(data), dtype=np.intp)


# --------------------------------------------------------------------------- Ward


class WardClustering(_Fitted, ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """Ward agglomerative clustering on a sample, extended to every user.

    Ward's tree is built on ``sample_size`` random rows (it needs O(n^2) memory); every
    row, sampled or not, is then assigned to the nearest Ward centroid
    (``extend='centroid'``, consistent with Ward's variance criterion) or by a k-nearest-
    neighbour vote among the sampled rows (``extend='knn'``, follows non-convex shapes), so
    that ``predict(X)`` reproduces ``labels_``. With ``n_clusters='auto'`` the tree is cut
    at every k in ``k_min..k_max`` and k is chosen on the sample with the same rule as
    :class:`AutoKMeans` (mean rank of silhouette, Calinski-Harabasz and Davies-Bouldin).

    Parameters
    ----------
    n_clusters : 'auto' or int, default='auto'
    k_min, k_max : int, default=2, 10
    sample_size : int, default=5_000
        Rows the tree is built on.
    extend : {'centroid', 'knn'}, default='centroid'
    n_neighbors : int, default=15
        Neighbours for ``extend='knn'``.
    random_state : int or None, default=0

    Attributes
    ----------
    n_clusters_ : int
    labels_ : ndarray of shape (n_users,)
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
        Centroids of the Ward clusters of the sample.
    sample_indices_ : ndarray
        Rows the tree was built on.
    k_scores_ : pandas.DataFrame
        Scores per k on the sample (as in :class:`AutoKMeans`).
    decision_ : str
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters: int | str = "auto",
        *,
        k_min: int = 2,
        k_max: int = 10,
        sample_size: int = 5_000,
        extend: str = "centroid",
        n_neighbors: int = 15,
        random_state: int | None = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.k_min = k_min
        self.k_max = k_max
        self.sample_size = sample_size
        self.extend = extend
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> WardClustering:
        """Build the Ward tree on a sample, cut it, and assign every row.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : WardClustering
        """
        if self.extend not in ("centroid", "knn"):
            raise ValueError(f"extend must be 'centroid' or 'knn', got {self.extend!r}")
        data = self._validate_fit(X)
        rng = np.random.default_rng(_seed(self.random_state))
        idx = _sample(data.shape[0], self.sample_size, rng)
        sample = data if idx is None else data[idx]
        ks = _k_range(self.n_clusters, self.k_min, self.k_max, sample.shape[0])
        tree = linkage(sample, method="ward")
        cuts = {k: fcluster(tree, k, criterion="maxclust") - 1 for k in ks}
        rows = []
        for k in ks:
            labels = cuts[k]
            ch, db = _internal_scores(sample, labels)
            centers = np.vstack([sample[labels == c].mean(axis=0) for c in np.unique(labels)])
            sse = float(((sample - centers[np.unique(labels, return_inverse=True)[1]]) ** 2).sum())
            rows.append({"calinski_harabasz": ch, "davies_bouldin": db, "inertia": sse})
        silhouettes = silhouette_many(sample, [cuts[k] for k in ks])
        scores = pd.DataFrame(rows, index=pd.Index(ks, name="k"))
        scores.insert(0, "silhouette", [np.nan if s is None else s for s in silhouettes])
        k, table, decision = choose_k(scores)
        labels = np.unique(cuts[k], return_inverse=True)[1].ravel()
        n_found = int(labels.max()) + 1
        self.cluster_centers_ = np.vstack(
            [sample[labels == c].mean(axis=0) for c in range(n_found)]
        )
        if self.extend == "knn":
            knn = KNeighborsClassifier(n_neighbors=min(self.n_neighbors, sample.shape[0]))
            self.knn_ = knn.fit(sample, labels)
        self.n_clusters_ = n_found
        self.sample_indices_ = np.arange(data.shape[0]) if idx is None else idx
        self.k_scores_ = table
        self.decision_ = decision
        self.labels_ = self._assign(data)
        return self

    def _assign(self, data: np.ndarray) -> np.ndarray:
        if self.extend == "knn":
            return np.asarray(self.knn_.predict(data), dtype=np.intp)
        return _nearest(self.cluster_centers_, data)

    def predict(self, X: Any) -> np.ndarray:
        """Cluster of each row (nearest Ward centroid or kNN vote).

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users,)
        """
        return self._assign(self._validate_predict(X))


# --------------------------------------------------------------------------- density


class DensityClustering(_Fitted, ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """HDBSCAN or DBSCAN on a sample, extended to every user; noise is its own group.

    The density clustering runs on ``sample_size`` random rows. Every row is then given
    the cluster of its nearest *core point* if it lies within that point's reach, and is
    noise (label ``-1``, named ``"noise"``) otherwise:

    - DBSCAN: core points are DBSCAN's core samples, the reach is ``eps`` (this is exactly
      DBSCAN's rule for border points);
    - HDBSCAN: core points are the clustered sample rows, the reach of each is its core
      distance (distance to its ``min_samples``-th nearest sampled neighbour).

    Parameters
    ----------
    method : {'hdbscan', 'dbscan'}, default='hdbscan'
    sample_size : int, default=10_000
    min_cluster_size : int or None, default=None
        HDBSCAN's smallest cluster; None = 1 % of the sample (at least 5).
    min_samples : int or None, default=None
        Density parameter (HDBSCAN: None = ``min_cluster_size``; DBSCAN: None = 5).
    eps : float, default=0.5
        DBSCAN's neighbourhood radius in the scaled space.
    random_state : int or None, default=0

    Attributes
    ----------
    labels_ : ndarray of shape (n_users,)
        Cluster 0..k-1, or -1 for noise.
    n_clusters_ : int
        Clusters found, noise not counted.
    n_noise_ : int
    noise_share_ : float
    group_names_ : dict
        ``{-1: "noise"}``: the name of the noise group for reports.
    core_points_ : ndarray
        Core points of the sample (scaled space).
    core_labels_ : ndarray
    core_reach_ : ndarray
        Reach of each core point.
    sample_indices_ : ndarray
    estimator_ : HDBSCAN or DBSCAN
        Fitted on the sample.
    n_features_in_ : int
    """

    def __init__(
        self,
        method: str = "hdbscan",
        *,
        sample_size: int = 10_000,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        eps: float = 0.5,
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.sample_size = sample_size
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.eps = eps
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> DensityClustering:
        """Cluster a sample by density and extend it to all rows.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : DensityClustering
        """
        if self.method not in ("hdbscan", "dbscan"):
            raise ValueError(f"method must be 'hdbscan' or 'dbscan', got {self.method!r}")
        data = self._validate_fit(X)
        rng = np.random.default_rng(_seed(self.random_state))
        idx = _sample(data.shape[0], self.sample_size, rng)
        sample = data if idx is None else data[idx]
        if self.method == "dbscan":
            min_samples = self.min_samples or 5
            model: Any = DBSCAN(eps=self.eps, min_samples=min_samples).fit(sample)
            core = np.asarray(model.core_sample_indices_, dtype=np.intp)
            reach = np.full(core.shape[0], float(self.eps))
        else:
            min_cluster = self.min_cluster_size or max(5, sample.shape[0] // 100)
            min_samples = self.min_samples or min_cluster
            model = HDBSCAN(
                min_cluster_size=min_cluster, min_samples=self.min_samples, copy=True
            ).fit(sample)
            core = np.flatnonzero(model.labels_ >= 0)
            reach = np.zeros(0)
            if core.size:  # every point noise: nothing to measure reach from
                neighbours = NearestNeighbors(n_neighbors=min(min_samples, sample.shape[0]))
                distances, _ = neighbours.fit(sample).kneighbors(sample[core])
                reach = distances[:, -1]
        self.estimator_ = model
        self.core_points_ = sample[core]
        self.core_labels_ = np.asarray(model.labels_, dtype=np.intp)[core]
        self.core_reach_ = reach
        self.sample_indices_ = np.arange(data.shape[0]) if idx is None else idx
        self.group_names_ = {NOISE_LABEL: "noise"}
        labels = self._assign(data)
        self.labels_ = labels
        self.n_clusters_ = int(len(np.unique(labels[labels >= 0])))
        self.n_noise_ = int((labels == NOISE_LABEL).sum())
        self.noise_share_ = float(self.n_noise_ / labels.shape[0])
        if self.n_clusters_ == 0:
            log.warning("%s found no cluster: every user is noise", self.method)
        return self

    def _assign(self, data: np.ndarray) -> np.ndarray:
        labels = np.full(data.shape[0], NOISE_LABEL, dtype=np.intp)
        if self.core_points_.shape[0] == 0:
            return labels
        nearest = NearestNeighbors(n_neighbors=1).fit(self.core_points_)
        distance, which = nearest.kneighbors(data)
        which = which[:, 0]
        inside = distance[:, 0] <= self.core_reach_[which]
        labels[inside] = self.core_labels_[which[inside]]
        return labels

    def predict(self, X: Any) -> np.ndarray:
        """Cluster of each row, or -1 (noise) when no core point reaches it.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users,)
        """
        return self._assign(self._validate_predict(X))


# --------------------------------------------------------------------------- mixture


class MixtureClustering(_Fitted, ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """Gaussian mixture with k chosen by BIC, and membership probabilities.

    For each k in ``k_min..k_max`` a :class:`~sklearn.mixture.GaussianMixture` is fitted on
    ``sample_size`` random rows; the k with the lowest BIC (on that sample) is kept and
    predicts every row.

    Parameters
    ----------
    n_clusters : 'auto' or int, default='auto'
    k_min, k_max : int, default=2, 10
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    sample_size : int or None, default=50_000
        Rows the mixtures are fitted on; None = all rows.
    n_init : int, default=1
    max_iter : int, default=200
    random_state : int or None, default=0

    Attributes
    ----------
    n_clusters_ : int
    labels_ : ndarray of shape (n_users,)
        Most probable component of each row.
    probabilities_ : ndarray of shape (n_users,)
        Probability of that component (the row maximum of ``predict_proba``).
    k_scores_ : pandas.DataFrame
        Index k; ``bic``, ``aic``, ``converged`` and ``chosen``.
    decision_ : str
    estimator_ : GaussianMixture
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters: int | str = "auto",
        *,
        k_min: int = 2,
        k_max: int = 10,
        covariance_type: str = "full",
        sample_size: int | None = 50_000,
        n_init: int = 1,
        max_iter: int = 200,
        random_state: int | None = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.k_min = k_min
        self.k_max = k_max
        self.covariance_type = covariance_type
        self.sample_size = sample_size
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> MixtureClustering:
        """Fit a mixture per k on a sample, keep the lowest BIC, label all rows.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : MixtureClustering
        """
        data = self._validate_fit(X)
        seed = _seed(self.random_state)
        rng = np.random.default_rng(seed)
        idx = _sample(data.shape[0], self.sample_size, rng)
        sample = data if idx is None else data[idx]
        ks = _k_range(self.n_clusters, self.k_min, self.k_max, sample.shape[0])
        models = {}
        rows = []
        for k in ks:
            gm = GaussianMixture(
                n_components=k,
                covariance_type=self.covariance_type,
                n_init=self.n_init,
                max_iter=self.max_iter,
                random_state=seed,
            ).fit(sample)
            models[k] = gm
            rows.append({"bic": gm.bic(sample), "aic": gm.aic(sample), "converged": gm.converged_})
        table = pd.DataFrame(rows, index=pd.Index(ks, name="k"))
        bics = [float(row["bic"]) for row in rows]
        k = ks[int(np.argmin(bics))]
        table["chosen"] = table.index == k
        self.estimator_ = models[k]
        proba = self.estimator_.predict_proba(data)
        self.n_clusters_ = k
        self.labels_ = np.asarray(proba.argmax(axis=1), dtype=np.intp)
        self.probabilities_ = proba.max(axis=1)
        self.k_scores_ = table
        self.decision_ = (
            f"k={k}: lowest BIC ({min(bics):.6g}) over k={ks[0]}..{ks[-1]} "
            f"on {sample.shape[0]} rows"
            if len(ks) > 1
            else f"k={k} fixed by n_clusters"
        )
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each row.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users,)
        """
        data = self._validate_predict(X)
        return np.asarray(self.estimator_.predict(data), dtype=np.intp)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Membership probability of each row in each component.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users, n_clusters_)
            Rows sum to 1.
        """
        data = self._validate_predict(X)
        return np.asarray(self.estimator_.predict_proba(data))


# --------------------------------------------------------------------------- reduction


class FactorReducer(_Fitted, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Reduce correlated features to a few components: PCA or factor analysis.

    Parameters
    ----------
    method : {'pca', 'factor'}, default='pca'
    n_components : int or None, default=None
        None: PCA keeps the fewest components that explain ``variance_target`` of the
        variance; factor analysis keeps as many factors as the correlation matrix has
        eigenvalues above 1 (Kaiser's rule).
    variance_target : float, default=0.9
    rotation : {None, 'varimax', 'quartimax'}, default='varimax'
        Rotation of the factors (factor analysis only).
    random_state : int or None, default=0

    Attributes
    ----------
    n_components_ : int
    loadings_ : pandas.DataFrame
        Features x components. PCA: eigenvector times the square root of its eigenvalue
        (on standardised input, the correlation of feature and component). Factor
        analysis: the factor loadings.
    explained_variance_ratio_ : pandas.Series
        Share of the total variance per component (PCA exactly; factor analysis: sum of
        squared loadings over the total variance).
    component_names_ : list of str
        ``PC1, PC2, ...`` or ``F1, F2, ...``.
    estimator_ : PCA or FactorAnalysis
    n_features_in_ : int
    """

    def __init__(
        self,
        method: str = "pca",
        *,
        n_components: int | None = None,
        variance_target: float = 0.9,
        rotation: str | None = "varimax",
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.n_components = n_components
        self.variance_target = variance_target
        self.rotation = rotation
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> FactorReducer:
        """Fit PCA or factor analysis.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : FactorReducer
        """
        if self.method not in ("pca", "factor"):
            raise ValueError(f"method must be 'pca' or 'factor', got {self.method!r}")
        data = self._validate_fit(X)
        names = (
            [str(c) for c in self.feature_names_in_]
            if hasattr(self, "feature_names_in_")
            else [f"x{i}" for i in range(data.shape[1])]
        )
        seed = _seed(self.random_state)
        total_variance = float(data.var(axis=0, ddof=1).sum())
        if self.method == "pca":
            n_comp: Any = self.n_components or float(self.variance_target)
            pca = PCA(n_components=n_comp, random_state=seed).fit(data)
            loadings = pca.components_.T * np.sqrt(pca.explained_variance_)
            ratio = np.asarray(pca.explained_variance_ratio_)
            prefix, model = "PC", pca
        else:
            n_comp = self.n_components
            if n_comp is None:
                eigen = np.linalg.eigvalsh(np.corrcoef(data, rowvar=False))
                n_comp = max(1, int((eigen > 1.0).sum()))
            fa = FactorAnalysis(n_components=n_comp, rotation=self.rotation, random_state=seed)
            fa.fit(data)
            loadings = fa.components_.T
            ratio = (loadings**2).sum(axis=0) / total_variance
            prefix, model = "F", fa
        self.estimator_ = model
        self.n_components_ = int(loadings.shape[1])
        self.component_names_ = [f"{prefix}{i + 1}" for i in range(self.n_components_)]
        self.loadings_ = pd.DataFrame(loadings, index=names, columns=self.component_names_)
        self.explained_variance_ratio_ = pd.Series(
            ratio, index=self.component_names_, name="explained_variance_ratio"
        )
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        """Component scores of each row.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        pandas.DataFrame
            One column per component, the index of ``X`` when it is a DataFrame.
        """
        data = self._validate_predict(X, "loadings_")
        index = X.index if isinstance(X, pd.DataFrame) else None
        scores = self.estimator_.transform(data)
        return pd.DataFrame(scores, index=index, columns=self.component_names_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Component names."""
        check_is_fitted(self, "loadings_")
        return np.asarray(self.component_names_, dtype=object)
