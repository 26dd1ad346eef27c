"""Ties in top-N: equal scores rank the smaller item id first, whatever the batch size.

A model whose scores are small integers has exact ties everywhere, so the documented
order can be computed by hand with a stable sort; a real ALS model checks that a user's
list does not depend on how many users are scored with them (one user, 7, 64, all).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from segmint.recommend import (
    ALSRecommender,
    BPRRecommender,
    Filters,
    HybridRecommender,
    Interactions,
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    ranking_metrics,
)

N_USERS, N_ITEMS, N = 150, 3000, 10


class TiedScores(Recommender):
    """Score of (user, item) = (user + item // 100) % 3: 1,000 items share each value."""

    name = "tied"

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        pass

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        items = np.arange(self.interactions_.n_items)
        return ((rows[:, None] + items[None, :] // 100) % 3).astype(np.float32)


def _data() -> Interactions:
    m = sp.random(N_USERS, N_ITEMS, density=0.004, random_state=3, format="csr")
    m.data[:] = 1.0
    return Interactions.from_matrix(m)


def _expected(data: Interactions) -> np.ndarray:
    """Stable sort of the tied scores, bought items removed: the documented order."""
    rows = np.arange(N_USERS)
    scores = ((rows[:, None] + np.arange(N_ITEMS)[None, :] // 100) % 3).astype(np.float64)
    bought = data.purchases.tocoo()
    scores[bought.row, bought.col] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :N]


def _all_paths(model: Recommender, ids: np.ndarray) -> dict[str, np.ndarray]:
    out = {f"batch {size}": model.recommend_items(ids, N, batch_size=size) for size in (1, 7, 64)}
    out["all at once"] = model.recommend_items(ids, N, batch_size=ids.size)
    index = pd.Index(model.interactions_.item_ids)
    single = [model.recommend(str(u), N)["item_id"] for u in ids]
    out["single user"] = np.vstack([index.get_indexer(s) for s in single])
    return out


def test_exact_ties_follow_the_item_order_in_every_path() -> None:
    data = _data()
    model = TiedScores().fit(data)
    expected = _expected(data)
    for path, items in _all_paths(model, data.user_ids).items():
        np.testing.assert_array_equal(items, expected, err_msg=path)


def test_ties_are_cut_by_item_order_under_a_category_cap() -> None:
    data = _data()
    model = TiedScores().fit(data)
    # no categories: the cap changes nothing, but the capped path must keep the order
    capped = Filters(category_cap=2)
    for size in (1, 7, N_USERS):
        np.testing.assert_array_equal(
            model.recommend_items(data.user_ids, N, filters=capped, batch_size=size),
            _expected(data),
        )


MODELS: dict[str, Callable[[], Recommender]] = {
    "als": lambda: ALSRecommender(factors=64, iterations=3),
    "bpr": lambda: BPRRecommender(factors=64, iterations=5),
    "item_knn": lambda: ItemKNNRecommender(neighbours=20),
    "hybrid": lambda: HybridRecommender(
        components={"item_knn": ItemKNNRecommender(), "als": ALSRecommender(factors=64)}
    ),
    "popularity": PopularityRecommender,
}


@pytest.mark.parametrize("name", MODELS)
def test_lists_and_metrics_do_not_depend_on_the_batch_size(name: str) -> None:
    data = _data()
    model = MODELS[name]().fit(data)
    paths = _all_paths(model, data.user_ids)
    reference = paths.pop("all at once")
    relevant = sp.random(N_USERS, N_ITEMS, density=0.01, random_state=4, format="csr")
    relevant.data[:] = 1.0
    expected = ranking_metrics(reference, relevant)
    for path, items in paths.items():
        np.testing.assert_array_equal(items, reference, err_msg=path)
        assert ranking_metrics(items, relevant) == expected, path


def test_als_single_user_frames_equal_the_batch_frame() -> None:
    data = _data()
    model = ALSRecommender(factors=64, iterations=3).fit(data)
    ids = data.user_ids[:40]
    single = pd.concat([model.recommend(str(u), N) for u in ids], ignore_index=True)
    pd.testing.assert_frame_equal(model.recommend(ids, N), single)
