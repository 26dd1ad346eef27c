"""K-means on Spark: k chosen on a driver sample exactly as :class:`AutoKMeans` chooses it,
then one MLlib fit on all rows, started from the sample's centres."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sklearn.base import BaseEstimator, ClusterMixin

from segmint.segments._cluster import AutoKMeans, _Fitted

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

log = logging.getLogger(__name__)


class SparkKMeans(_Fitted, ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """K-means whose final fit runs on Spark MLlib.

    **How k is chosen.** On at most ``scan_sample`` rows (drawn with ``random_state``, the
    same rows as ``engine: duckdb`` draws), :class:`AutoKMeans` scans ``k_min..k_max`` and chooses k by the mean rank of the
    silhouette, Calinski-Harabasz and Davies-Bouldin indices: the same criterion, the same
    code as ``engine: duckdb``. **The fit.** MLlib's k-means then runs on all rows in
    Spark, started from the centres found on the sample (so the clusters found on the
    sample keep their numbers), and labels every row.

    Parameters
    ----------
    engine : SparkEngine
        Where the fit on all rows runs.
    n_clusters : 'auto' or int, default='auto'
    k_min, k_max : int, default=2, 10
    sample_size : int, default=10_000
        Rows for the silhouette in the k-scan.
    scan_sample : int or None, default=100_000
        Rows of the k-scan (AutoKMeans's default: the same sample as ``engine: duckdb``).
    max_iter : int, default=300
        MLlib iterations at most.
    tol : float, default=1e-6
        MLlib stops when no centre moves farther than this.
    random_state : int or None, default=0

    Attributes
    ----------
    n_clusters_, labels_, cluster_centers_, inertia_, k_scores_, elbow_k_, decision_,
    scan_size_ : as :class:`AutoKMeans` (labels and centres from the Spark fit)
    master_ : str
        The Spark master the fit ran on.
    """

    def __init__(
        self,
        engine: SparkEngine,
        n_clusters: int | str = "auto",
        *,
        k_min: int = 2,
        k_max: int = 10,
        sample_size: int = 10_000,
        scan_sample: int | None = 100_000,
        max_iter: int = 300,
        tol: float = 1e-6,
        random_state: int | None = 0,
    ) -> None:
        self.engine = engine
        self.n_clusters = n_clusters
        self.k_min = k_min
        self.k_max = k_max
        self.sample_size = sample_size
        self.scan_sample = scan_sample
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> SparkKMeans:
        """Choose k on a sample, fit MLlib k-means on all rows, label them.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Scaled features without NaN.
        y : ignored

        Returns
        -------
        self : SparkKMeans
        """
        data = self._validate_fit(X)
        seed = 0 if self.random_state is None else int(self.random_state)
        started = time.perf_counter()
        # the k-scan of engine: duckdb, on the same sample drawn the same way
        scan = AutoKMeans(
            self.n_clusters,
            k_min=self.k_min,
            k_max=self.k_max,
            sample_size=self.sample_size,
            scan_sample=self.scan_sample,
            random_state=self.random_state,
        ).scan(data)
        scanned = time.perf_counter()
        labels, centers, inertia = self._fit_on_spark(data, scan.scan_centers_, seed)
        log.debug(
            "k-means: k=%d chosen on %d rows in %.1fs, MLlib fit on %d rows in %.1fs",
            scan.n_clusters_,
            scan.scan_size_,
            scanned - started,
            data.shape[0],
            time.perf_counter() - scanned,
        )
        self.n_clusters_ = int(scan.n_clusters_)
        self.labels_ = labels
        self.cluster_centers_ = centers
        self.inertia_ = inertia
        self.k_scores_ = scan.k_scores_
        self.elbow_k_ = scan.elbow_k_
        self.decision_ = scan.decision_
        self.scan_size_ = int(scan.scan_size_)
        self.master_ = str(self.engine.session.sparkContext.master)
        return self

    def _fit_on_spark(
        self, data: np.ndarray, init: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """MLlib k-means on all rows from ``init``: (labels, centres, inertia)."""
        from pyspark.mllib.clustering import KMeans, KMeansModel
        from pyspark.mllib.linalg import DenseVector

        session = self.engine.session
        table = pa.table({f"x{j}": data[:, j] for j in range(data.shape[1])})
        frame = session.createDataFrame(table)
        vectors = frame.rdd.map(lambda row: DenseVector(list(row))).cache()
        try:
            # the DataFrame API's KMeans takes no initial centres; the RDD API does
            model = KMeans.train(
                vectors,
                int(init.shape[0]),
                maxIterations=self.max_iter,
                seed=seed,
                epsilon=self.tol,
                initialModel=KMeansModel([DenseVector(c) for c in init]),
            )
            labels = np.asarray(model.predict(vectors).collect(), dtype=np.intp)
            inertia = float(model.computeCost(vectors))
        finally:
            vectors.unpersist()
        centers = np.asarray([np.asarray(c) for c in model.clusterCenters], dtype="float64")
        return labels, centers, inertia

    def describe(self) -> dict[str, Any]:
        """Where and how the fit ran, for the run's details."""
        return {
            "engine": "spark",
            "master": self.master_,
            "k_scan_rows": self.scan_size_,
            "fit_rows": int(self.labels_.shape[0]),
            "init": "k-scan centres",
        }
