"""Top-n selection equals a full sort; the category cap keeps score order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from segmint.recommend._select import PairLookup, top_n, top_n_capped


def _brute(scores: np.ndarray, n: int) -> np.ndarray:
    out = np.full((scores.shape[0], n), -1)
    for r, row in enumerate(scores):  # the reference: a plain loop and a full sort
        fin = np.flatnonzero(np.isfinite(row))
        order = fin[np.argsort(-row[fin], kind="stable")][:n]
        out[r, : order.size] = order
    return out


@pytest.mark.parametrize(("n_items", "n"), [(5, 3), (40, 10), (3000, 10), (20000, 25)])
def test_top_n_equals_a_full_sort(n_items: int, n: int) -> None:
    rng = np.random.default_rng(n_items)
    scores = rng.standard_normal((50, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, :] = -np.inf  # nothing to recommend
    scores[1, :] = -np.inf
    scores[1, :2] = [1.0, 2.0]  # fewer than n
    items, values = top_n(scores, n)
    np.testing.assert_array_equal(items, _brute(scores, n))
    assert np.all(np.isneginf(values[items < 0]))


def test_top_n_with_a_few_blocks_holding_everything() -> None:
    scores = np.full((2, 10_000), -np.inf, dtype=np.float32)
    scores[0, 5000:5300] = np.linspace(0, 1, 300)  # one block's worth of finite scores
    scores[1, 17] = 3.0
    items, _ = top_n(scores, 10)
    np.testing.assert_array_equal(items, _brute(scores, 10))


def test_category_cap_keeps_the_best_of_each_category_in_order() -> None:
    scores = np.array([[9, 8, 7, 6, 5, 4, 3]], dtype=np.float32)
    cats = np.array([0, 0, 0, 1, 1, 2, -1])  # -1: no category, never capped
    items, _ = top_n_capped(scores, 5, cats, 1)
    np.testing.assert_array_equal(items, [[0, 3, 5, 6, -1]])
    items, _ = top_n_capped(scores, 5, cats, 2)
    np.testing.assert_array_equal(items, [[0, 1, 3, 4, 5]])


def test_category_cap_widens_when_the_top_is_one_category() -> None:
    rng = np.random.default_rng(0)
    n_items = 5000
    scores = rng.random((3, n_items)).astype(np.float32)
    cats = np.where(np.arange(n_items) < 4900, 0, np.arange(n_items) - 4899)
    scores[:, :4900] += 10.0  # the best 4,900 items all share category 0
    items, _ = top_n_capped(scores, 10, cats, 2)
    assert np.all(items >= 0)
    assert np.all((cats[items] == 0).sum(axis=1) == 2)
    # beyond the two of category 0: the best of the others, in score order
    rest = items[:, 2:]
    assert np.all(np.diff(np.take_along_axis(scores, rest, axis=1), axis=1) <= 0)


def test_pair_lookup() -> None:
    m = sp.csr_matrix(np.array([[0, 2.0, 0], [1.0, 0, 3.0]]))
    look = PairLookup(m)
    got = look(np.array([0, 0, 1, 1, -1]), np.array([1, 2, 0, 2, 1]))
    np.testing.assert_array_equal(got, [2.0, 0.0, 1.0, 3.0, 0.0])
