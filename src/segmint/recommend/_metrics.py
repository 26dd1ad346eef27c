"""Ranking metrics for top-k recommendations, vectorised over users.

Every function takes the recommended item indices as an ``n_users x k`` integer matrix
(best first, ``-1`` for an empty slot) and the relevant (held-out) items as a CSR matrix
with the same rows. Users without a relevant item must be removed by the caller: they
have no defined recall, NDCG or AP.

Definitions (binary relevance; ``hits_u`` the relevant items in user u's top k; ``R_u``
their number; ``k`` the list length):

* precision@k  ``mean_u hits_u / k``
* recall@k     ``mean_u hits_u / R_u``
* hit rate@k   ``mean_u [hits_u > 0]``
* NDCG@k       ``mean_u DCG_u / IDCG_u`` with ``DCG_u = sum_{hit at rank r} 1 / log2(r + 1)``
  and ``IDCG_u`` the DCG of ``min(k, R_u)`` hits at ranks 1..min(k, R_u) — the same as
  ``implicit.evaluation.ndcg_at_k`` and, for binary gains, ``sklearn.metrics.ndcg_score``
* MAP@k        ``mean_u (sum_{hit at rank r} precision@r) / min(k, R_u)`` — the same as
  ``implicit.evaluation.mean_average_precision_at_k``

``implicit.evaluation.precision_at_k`` is a different, pooled quantity:
``sum_u hits_u / sum_u min(k, R_u)``; :func:`ranking_metrics` reports it too as
``precision_pooled``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "catalogue_coverage",
    "hit_matrix",
    "hit_rate_at_k",
    "map_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]


def _check(recommended: np.ndarray, relevant: Any) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be a 2-D (users x k) array, got shape {rec.shape}")
    if relevant.shape[0] != rec.shape[0]:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {relevant.shape[0]}"
        )
    return rec.astype(np.int64, copy=False)


def hit_matrix(recommended: np.ndarray, relevant: Any) -> np.ndarray:
    """Boolean ``n_users x k``: is the item at each rank relevant for its user?

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items``; any stored non-zero entry is a relevant item.

    Returns
    -------
    numpy.ndarray
        Boolean hits, same shape as ``recommended``.
    """
    rec = _check(recommended, relevant)
    rel = relevant.tocsr()
    rel.sort_indices()
    n_items = rel.shape[1]
    # a relevant (user, item) pair as one sorted int64 key; look every recommendation up
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    if rel.nnz and rel.data.size:
        keys = keys[rel.data != 0]
    want = np.arange(rec.shape[0], dtype=np.int64)[:, None] * n_items + rec
    pos = np.searchsorted(keys, want)
    found = np.zeros(rec.shape, dtype=bool)
    if keys.size:
        found = keys[np.minimum(pos, keys.size - 1)] == want
    return found & (rec >= 0)


def _n_relevant(relevant: Any) -> np.ndarray:
    rel = relevant.tocsr()
    counts = np.diff(rel.indptr)
    if rel.nnz:
        counts = np.bincount(
            np.repeat(np.arange(rel.shape[0]), np.diff(rel.indptr))[rel.data != 0],
            minlength=rel.shape[0],
        )
    if np.any(counts == 0):
        raise ValueError(
            "every user must have at least one relevant item; drop users without test items"
        )
    return counts.astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def precision_at_k(recommended: np.ndarray, relevant: Any) -> float:
    """Mean over users of (relevant items in the top k) / k.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    float
    """
    hits = hit_matrix(recommended, relevant)
    _n_relevant(relevant)
    return float(hits.sum(axis=1).mean() / hits.shape[1])


def recall_at_k(recommended: np.ndarray, relevant: Any) -> float:
    """Mean over users of (relevant items in the top k) / (relevant items).

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    float
    """
    hits = hit_matrix(recommended, relevant)
    return float((hits.sum(axis=1) / _n_relevant(relevant)).mean())


def hit_rate_at_k(recommended: np.ndarray, relevant: Any) -> float:
    """Share of users with at least one relevant item in their top k.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    float
    """
    hits = hit_matrix(recommended, relevant)
    _n_relevant(relevant)
    return float(hits.any(axis=1).mean())


def ndcg_at_k(recommended: np.ndarray, relevant: Any) -> float:
    """Mean over users of binary-gain DCG@k / ideal DCG@k.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    float
    """
    return float(_per_user(recommended, relevant)["ndcg"].mean())


def map_at_k(recommended: np.ndarray, relevant: Any) -> float:
    """Mean average precision at k (AP normalised by ``min(k, relevant items)``).

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    float
    """
    return float(_per_user(recommended, relevant)["ap"].mean())


def _per_user(recommended: np.ndarray, relevant: Any) -> dict[str, np.ndarray]:
    hits = hit_matrix(recommended, relevant)
    n_rel = _n_relevant(relevant)
    k = hits.shape[1]
    disc = _discounts(k)
    ideal_n = np.minimum(n_rel, k).astype(np.int64)
    idcg = np.cumsum(disc)[ideal_n - 1]
    dcg = (hits * disc).sum(axis=1)
    cum_hits = np.cumsum(hits, axis=1)
    prec_at_r = cum_hits / np.arange(1, k + 1)
    ap = (prec_at_r * hits).sum(axis=1) / ideal_n
    n_hits = hits.sum(axis=1).astype(np.float64)
    return {
        "hits": n_hits,
        "n_relevant": n_rel,
        "precision": n_hits / k,
        "recall": n_hits / n_rel,
        "hit": (n_hits > 0).astype(np.float64),
        "ndcg": dcg / idcg,
        "ap": ap,
        "ideal_n": ideal_n.astype(np.float64),
    }


def ranking_metrics(recommended: np.ndarray, relevant: Any) -> dict[str, float]:
    """Every ranking metric in one pass.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices, best first; ``-1`` marks an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``n_users x n_items`` held-out relevant items; every user needs at least one.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate`` (means over users),
        ``precision_pooled`` (implicit's precision: total hits / sum of min(k, R_u)) and
        ``n_users``.
    """
    per = _per_user(recommended, relevant)
    return {
        "precision": float(per["precision"].mean()),
        "recall": float(per["recall"].mean()),
        "ndcg": float(per["ndcg"].mean()),
        "map": float(per["ap"].mean()),
        "hit_rate": float(per["hit"].mean()),
        "precision_pooled": float(per["hits"].sum() / per["ideal_n"].sum()),
        "n_users": float(per["hits"].size),
    }


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one list.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices; ``-1`` marks an empty slot.
    n_items : int
        Size of the catalogue.

    Returns
    -------
    float
    """
    rec = np.asarray(recommended)
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    return float(np.unique(rec[rec >= 0]).size / n_items)


def novelty(recommended: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2(p_i)`` of the recommended items.

    ``p_i`` is the share of the ``n_users`` training users who interacted with item i
    (items nobody touched count as one user, so that the value stays finite).

    Parameters
    ----------
    recommended : numpy.ndarray
        ``n_users x k`` item indices; ``-1`` marks an empty slot.
    popularity : numpy.ndarray
        Number of training users per item.
    n_users : int
        Number of training users.

    Returns
    -------
    float
        Bits; higher means less popular (more novel) recommendations.
    """
    rec = np.asarray(recommended)
    items = rec[rec >= 0]
    if items.size == 0:
        return float("nan")
    p = np.maximum(np.asarray(popularity, dtype=np.float64)[items], 1.0) / float(n_users)
    return float(np.mean(-np.log2(p)))
