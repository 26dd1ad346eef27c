"""Ranking metrics: hand-computed cases, and the same values as implicit and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from segmint.recommend import (
    catalogue_coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# user 0: relevant {2, 7}, hit at rank 2; user 1: relevant {6}, hit at rank 3
RECS = np.array([[1, 2, 3], [4, 5, 6]])
REL = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [2, 7, 6])), shape=(2, 10))


def test_hand_computed_values() -> None:
    d = 1 / math.log2(3)  # discount at rank 2
    assert precision_at_k(RECS, REL) == pytest.approx(1 / 3)
    assert recall_at_k(RECS, REL) == pytest.approx((1 / 2 + 1) / 2)
    assert hit_rate_at_k(RECS, REL) == pytest.approx(1.0)
    # user 0: DCG = 1/log2(3), ideal = 1 + 1/log2(3); user 1: DCG = 1/log2(4), ideal = 1
    assert ndcg_at_k(RECS, REL) == pytest.approx((d / (1 + d) + 0.5) / 2)
    # user 0: precision at the hit 1/2, over min(3, 2) = 2; user 1: 1/3 over 1
    assert map_at_k(RECS, REL) == pytest.approx((0.25 + 1 / 3) / 2)


def test_empty_slots_and_a_perfect_list() -> None:
    recs = np.array([[2, 7, -1]])
    rel = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 7])), shape=(1, 10))
    m = ranking_metrics(recs, rel)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(2 / 3)


def test_users_without_relevant_items_are_refused() -> None:
    rel = sp.csr_matrix(([1.0], ([0], [2])), shape=(2, 10))
    with pytest.raises(ValueError, match="at least one relevant item"):
        ndcg_at_k(RECS, rel)


def test_coverage_and_novelty() -> None:
    assert catalogue_coverage(RECS, 10) == pytest.approx(0.6)
    pop = np.array([8, 4, 2, 1, 0, 8, 8, 8, 8, 8])
    # -log2(p): items 1 (4/8) 1 bit, 2 (2/8) 2 bits, 3 (1/8) 3 bits, 4 (0 -> 1/8) 3 bits
    assert novelty(np.array([[1, 2, 3, 4]]), pop, 8) == pytest.approx((1 + 2 + 3 + 3) / 4)


class _FixedLists:
    """Quacks like an implicit model whose recommend returns precomputed lists."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def recommend(self, userid, user_items, N=10, **kwargs):  # noqa: N803 - implicit's name
        ids = self.ids[np.asarray(userid), :N].astype(np.int32)
        return ids, np.tile(np.arange(N, 0, -1, dtype=np.float32), (len(ids), 1))


def _random_case(seed: int, n_users: int = 300, n_items: int = 60, k: int = 10):
    rng = np.random.default_rng(seed)
    recs = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    dense = rng.random((n_users, n_items)) < rng.uniform(0.02, 0.3, (n_users, 1))
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # >= 1 per user
    return recs, sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_same_values_as_implicit(seed: int) -> None:
    from implicit.evaluation import ranking_metrics_at_k

    recs, rel = _random_case(seed)
    train = sp.csr_matrix(rel.shape, dtype=np.float32)
    ref = ranking_metrics_at_k(_FixedLists(recs), train, rel, K=10, show_progress=False)
    ours = ranking_metrics(recs, rel)
    assert ours["ndcg"] == pytest.approx(ref["ndcg"], rel=1e-12)
    assert ours["map"] == pytest.approx(ref["map"], rel=1e-12)
    assert ours["precision_pooled"] == pytest.approx(ref["precision"], rel=1e-12)


@pytest.mark.parametrize("seed", [2, 3])
def test_same_ndcg_as_scikit_learn(seed: int) -> None:
    from sklearn.metrics import ndcg_score

    recs, rel = _random_case(seed)
    k = recs.shape[1]
    y_score = np.zeros(rel.shape)
    np.put_along_axis(y_score, recs, np.arange(k, 0, -1, dtype=float)[None, :], axis=1)
    ref = ndcg_score(rel.toarray(), y_score, k=k)
    assert ndcg_at_k(recs, rel) == pytest.approx(ref, rel=1e-12)
