"""Quality of a clustering: separation, compactness, stability, balance and revenue."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
)

log = logging.getLogger(__name__)

__all__ = ["NOISE_LABEL", "evaluate_clustering", "silhouette_many"]

#: Label of users a density clustering leaves unassigned; reported as the group "noise".
NOISE_LABEL = -1

_STABILITY_ROWS = 20_000


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer codes 0..K-1 and the size of each code."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return codes.ravel(), counts


def silhouette_many(
    X: np.ndarray, labelings: Sequence[np.ndarray], *, chunk_rows: int = 512
) -> list[float | None]:
    """Mean silhouette of several labelings of the same rows, from one pass over distances.

    Equals :func:`sklearn.metrics.silhouette_score` (Euclidean) for each labeling, but the
    O(n^2) pairwise distances are computed once and shared: distances of a chunk of rows
    to all rows are multiplied by the one-hot membership matrix of every labeling, which
    gives each row's summed distance to each cluster. Use it on a sample of rows.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    labelings : sequence of ndarray of shape (n_rows,)
    chunk_rows : int, default=512
        Rows per block of the distance matrix (memory is ``chunk_rows * n_rows`` floats).

    Returns
    -------
    list of float or None
        One mean silhouette per labeling; None where it is undefined (fewer than 2 or more
        than n_rows - 1 clusters).
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    coded = [_codes(np.asarray(lab)) for lab in labelings]
    valid = [2 <= len(counts) <= n - 1 for _, counts in coded]
    results: list[float | None] = [None] * len(coded)
    if not any(valid):
        return results
    offsets = np.cumsum([0] + [len(counts) for _, counts in coded])
    onehot = np.zeros((n, int(offsets[-1])))
    for i, (codes, _) in enumerate(coded):
        onehot[np.arange(n), offsets[i] + codes] = 1.0
    totals = [0.0] * len(coded)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        sums = cdist(X[start:stop], X) @ onehot
        for i, (codes, counts) in enumerate(coded):
            if not valid[i]:
                continue
            part = sums[:, offsets[i] : offsets[i + 1]]
            own = codes[start:stop]
            rows = np.arange(stop - start)
            own_count = counts[own]
            with np.errstate(divide="ignore", invalid="ignore"):
                a = part[rows, own] / (own_count - 1)
                mean_other = part / counts[None, :]
            mean_other[rows, own] = np.inf
            b = mean_other.min(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (b - a) / np.maximum(a, b)
            s = np.where(own_count > 1, np.nan_to_num(s), 0.0)
            totals[i] += float(s.sum())
    for i in range(len(coded)):
        if valid[i]:
            results[i] = totals[i] / n
    return results


def _sse(X: np.ndarray, codes: np.ndarray, n_codes: int) -> float:
    counts = np.bincount(codes, minlength=n_codes).astype(float)
    sums = np.zeros((n_codes, X.shape[1]))
    for j in range(X.shape[1]):
        sums[:, j] = np.bincount(codes, weights=X[:, j], minlength=n_codes)
    means = sums / np.maximum(counts, 1.0)[:, None]
    return float(((X - means[codes]) ** 2).sum())


def _stability(
    X: np.ndarray,
    labels: np.ndarray,
    refit: Callable[[np.ndarray], Any],
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> list[float]:
    n = X.shape[0]
    if n > _STABILITY_ROWS:
        idx = np.sort(rng.choice(n, _STABILITY_ROWS, replace=False))
        X, labels = X[idx], labels[idx]
        n = _STABILITY_ROWS
    scores = []
    for _ in range(n_bootstrap):
        boot = rng.integers(0, n, n)
        model = refit(X[boot])
        if not hasattr(model, "predict"):
            raise TypeError(
                "refit must return a fitted model with a predict method, "
                f"got {type(model).__name__}; e.g. refit=lambda X: clone(model).fit(X)"
            )
        predicted = np.asarray(model.predict(X))
        scores.append(float(adjusted_rand_score(labels, predicted)))
    return scores


def _key(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def evaluate_clustering(
    X_scaled: Any,
    labels: Any,
    *,
    revenue: Any = None,
    sample_size: int = 10_000,
    n_bootstrap: int = 10,
    refit: Callable[[np.ndarray], Any] | None = None,
    random_state: int = 0,
) -> dict[str, Any]:
    """Measure a clustering: separation, compactness, stability, balance and revenue.

    Users labelled ``-1`` (noise of a density clustering) are left out of the silhouette,
    SSE, Calinski-Harabasz and Davies-Bouldin scores and of the size balance, and are
    reported separately as ``n_noise`` and ``noise_share``; they keep their own entry in
    ``sizes``, ``shares`` and ``revenue_share``.

    Parameters
    ----------
    X_scaled : array-like of shape (n_users, n_features)
        The features the clustering saw (scaled, no NaN).
    labels : array-like of shape (n_users,)
        Segment of each user.
    revenue : array-like of shape (n_users,), optional
        Revenue per user (for instance ``monetary``); NaN counts as 0.
    sample_size : int, default=10_000
        Rows for the silhouette (O(n^2)); all rows when ``n_users <= sample_size``.
    n_bootstrap : int, default=10
        Bootstrap refits for the stability score.
    refit : callable, optional
        ``refit(X) -> fitted model with predict``; for instance
        ``lambda X: sklearn.base.clone(model).fit(X)``. Stability is computed on up to
        20,000 rows: each refit sees a bootstrap sample of them and predicts all of them;
        the score is the mean adjusted Rand index against ``labels``. Without ``refit``
        stability is None.
    random_state : int, default=0
        Seed for the silhouette sample, the stability rows and the bootstrap samples.

    Returns
    -------
    dict
        ``n_users``, ``n_clusters`` (noise excluded), ``silhouette``,
        ``silhouette_sample_size``, ``sse`` (within-cluster sum of squares),
        ``calinski_harabasz``, ``davies_bouldin``, ``stability`` and ``stability_ari``
        (the ARI of each refit), ``size_ratio`` (smallest / largest cluster),
        ``size_entropy`` (entropy of the cluster shares divided by its maximum, 1 =
        perfectly balanced), ``sizes`` and ``shares`` per segment (largest first),
        ``n_noise``, ``noise_share`` and, with ``revenue``, ``revenue_share`` per segment.
        Scores that are undefined (a single cluster) are None.
    """
    started = time.perf_counter()
    X, labels_arr = _check_inputs(X_scaled, labels)
    rng = np.random.default_rng(random_state)
    n = X.shape[0]
    is_noise = _is_noise(labels_arr)
    Xc, lc = X[~is_noise], labels_arr[~is_noise]
    codes, counts = _codes(lc) if lc.size else (np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    n_clusters = len(counts)

    result: dict[str, Any] = {"n_users": int(n), "n_clusters": int(n_clusters)}
    result.update(_separation(Xc, lc, codes, n_clusters, sample_size, rng))
    result["sse"] = _sse(Xc, codes, n_clusters) if n_clusters else 0.0

    if refit is not None and n_bootstrap > 0:
        aris = _stability(X, labels_arr, refit, n_bootstrap=n_bootstrap, rng=rng)
        result["stability"] = float(np.mean(aris))
        result["stability_ari"] = aris
    else:
        result["stability"] = None
        result["stability_ari"] = []
    result.update(_balance(counts))
    result.update(_sizes_and_revenue(labels_arr, is_noise, revenue))
    log.debug(
        "evaluated %d users in %d clusters in %.2fs",
        n,
        n_clusters,
        time.perf_counter() - started,
    )
    return result


def _is_noise(labels_arr: np.ndarray) -> np.ndarray:
    """True for the users labelled as noise (-1; only numeric labels can be noise)."""
    if labels_arr.dtype.kind in "iuf":
        return labels_arr == NOISE_LABEL
    return np.zeros(labels_arr.shape[0], dtype=bool)


def _check_inputs(X_scaled: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The features as a finite 2-D float array and one label per row, or a ValueError."""
    X = np.asarray(X_scaled, dtype=float)
    labels_arr = np.asarray(labels)
    if X.ndim != 2:
        raise ValueError(f"X_scaled must be 2-D (users x features), got shape {X.shape}")
    if labels_arr.shape != (X.shape[0],):
        raise ValueError(
            f"labels has shape {labels_arr.shape} but X_scaled has {X.shape[0]} rows; "
            "pass one label per user"
        )
    if not np.isfinite(X).all():
        raise ValueError("X_scaled contains NaN or infinite values; scale with FeatureScaler first")
    return X, labels_arr


def _separation(
    Xc: np.ndarray,
    lc: np.ndarray,
    codes: np.ndarray,
    n_clusters: int,
    sample_size: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Silhouette (on a sample of ``sample_size`` rows at most), Calinski-Harabasz and
    Davies-Bouldin of the clustered (not noise) users; None where undefined."""
    if not 2 <= n_clusters <= len(lc) - 1:
        return {
            "silhouette": None,
            "silhouette_sample_size": 0,
            "calinski_harabasz": None,
            "davies_bouldin": None,
        }
    out: dict[str, Any] = {}
    if len(lc) > sample_size:
        idx = np.sort(rng.choice(len(lc), sample_size, replace=False))
        out["silhouette"] = silhouette_many(Xc[idx], [lc[idx]])[0]
        out["silhouette_sample_size"] = int(sample_size)
    else:
        out["silhouette"] = silhouette_many(Xc, [lc])[0]
        out["silhouette_sample_size"] = int(len(lc))
    out["calinski_harabasz"] = float(calinski_harabasz_score(Xc, codes))
    out["davies_bouldin"] = float(davies_bouldin_score(Xc, codes))
    return out


def _balance(counts: np.ndarray) -> dict[str, Any]:
    """Smallest / largest cluster and the normalised entropy of the cluster shares."""
    n_clusters = len(counts)
    if not n_clusters:
        return {"size_ratio": None, "size_entropy": None}
    shares = counts / counts.sum()
    entropy = float(-(shares * np.log(shares)).sum())
    return {
        "size_ratio": float(counts.min() / counts.max()),
        "size_entropy": entropy / float(np.log(n_clusters)) if n_clusters > 1 else 1.0,
    }


def _sizes_and_revenue(
    labels_arr: np.ndarray, is_noise: np.ndarray, revenue: Any
) -> dict[str, Any]:
    """Sizes and shares per label (largest first), the noise, and each label's revenue
    share when ``revenue`` is given."""
    n = labels_arr.shape[0]
    groups, group_codes, group_counts = np.unique(
        labels_arr, return_inverse=True, return_counts=True
    )
    order = np.argsort(-group_counts, kind="stable")
    result: dict[str, Any] = {
        "sizes": {_key(groups[i]): int(group_counts[i]) for i in order},
        "shares": {_key(groups[i]): float(group_counts[i] / n) for i in order},
        "n_noise": int(is_noise.sum()),
        "noise_share": float(is_noise.mean()) if n else 0.0,
    }
    if revenue is not None:
        money = np.nan_to_num(np.asarray(revenue, dtype=float).ravel())
        if money.shape != (n,):
            raise ValueError(f"revenue has {money.shape[0]} values but there are {n} users")
        per_group = np.bincount(group_codes.ravel(), weights=money, minlength=len(groups))
        total = float(per_group.sum())
        result["revenue_share"] = {
            _key(groups[i]): float(per_group[i] / total) if total else 0.0 for i in order
        }
    return result
