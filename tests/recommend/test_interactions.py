"""Interactions from order lines and item events, aggregated in the store."""

from __future__ import annotations

import numpy as np
import pytest

from segmint.errors import ConfigError
from segmint.recommend import Interactions, build_interactions, purchases_between
from segmint.store import Store


def _cell(it: Interactions, user: str, item: str) -> float:
    return float(it.matrix[it.user_index([user])[0], it.item_index([item])[0]])


def test_default_weights_view_cart_purchase(tiny_store: Store) -> None:
    it = build_interactions(tiny_store)
    # sorted axes: every catalogue item (A4 was never touched), users with activity
    assert list(it.item_ids) == ["A1", "A2", "A3", "A4", "B1", "B2", "C1", "D1"]
    assert list(it.user_ids) == ["u1", "u2", "u3", "u4", "u5", "u6"]
    assert _cell(it, "u1", "A2") == 10.0  # purchase 5 x quantity 2
    assert _cell(it, "u2", "C1") == 15.0  # 5 x 3
    assert _cell(it, "u3", "A2") == 3.0  # add_to_cart
    assert _cell(it, "u3", "A3") == 1.0  # product_view
    assert _cell(it, "u6", "A3") == 0.0  # cancelled order
    assert _cell(it, "u4", "A1") == 0.0  # a like has no weight by default
    assert it.nnz == 15
    bought = it.purchases.toarray()
    assert bought[it.user_index(["u1"])[0], it.item_index(["A2"])[0]] == 2.0
    assert bought[it.user_index(["u3"])[0], it.item_index(["A2"])[0]] == 0.0  # only carted
    assert it.items.set_index("item_id").loc["D1", "in_stock"] == np.False_


def test_custom_weights_and_quantity_scaling(tiny_store: Store) -> None:
    it = build_interactions(tiny_store, weights={"purchase": 1.0, "like": 2.0}, quantity="log")
    assert _cell(it, "u2", "C1") == pytest.approx(np.log(4.0))
    assert _cell(it, "u4", "A1") == 2.0
    assert _cell(it, "u3", "A3") == 0.0  # views no longer count


def test_recency_half_life(tiny_store: Store) -> None:
    it = build_interactions(tiny_store, as_of="2025-06-11 12:00:00", half_life_days=10.0)
    # u1's A1 was bought on 1 June, ten days (one half-life) before as_of
    assert _cell(it, "u1", "A1") == pytest.approx(5.0 * 0.5, rel=1e-6)
    assert _cell(it, "u5", "D1") == pytest.approx(1.0, rel=1e-6)  # viewed at as_of


def test_time_window(tiny_store: Store) -> None:
    it = build_interactions(tiny_store, before="2025-06-04")
    assert list(it.user_ids) == ["u1", "u2", "u3"]
    it = build_interactions(tiny_store, since="2025-06-06")
    assert list(it.user_ids) == ["u1", "u3", "u5", "u6"]
    test = purchases_between(tiny_store, since="2025-06-05", before="2025-06-07")
    assert sorted(zip(test["user_id"], test["item_id"], strict=True)) == [
        ("u5", "B1"),
        ("u6", "B2"),
        ("u6", "C1"),
    ]


def test_segments_are_attached(tiny_store: Store) -> None:
    it = build_interactions(tiny_store, segmentation="tiers")
    assert it.segments["u7"] == "S2"  # also users without interactions
    assert "u8" not in it.segments.index


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"purchase": -1.0}}, "must be >= 0"),
        ({"weights": {"purchase": 0.0}}, "every interaction weight is 0"),
        ({"half_life_days": 0.0}, "half_life_days must be positive"),
        ({"quantity": "cubic"}, "quantity must be"),
        ({"before": "not a date"}, "not a date or timestamp"),
    ],
)
def test_bad_arguments(tiny_store: Store, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_interactions(tiny_store, **kwargs)


def test_from_matrix_checks_its_ids() -> None:
    m = np.eye(3)
    it = Interactions.from_matrix(m)
    assert it.n_users == 3 and it.n_items == 3
    with pytest.raises(ConfigError, match="sorted"):
        Interactions.from_matrix(m, user_ids=["b", "a", "c"])


def test_from_matrix_fills_catalogue_columns_the_items_frame_lacks() -> None:
    """A plain catalogue with only category and price is enough (docs/api.md)."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from segmint.recommend import ContentRecommender, Interactions

    m = sp.csr_matrix(np.eye(3, 4))
    items = pd.DataFrame({"category": ["a", "a", "b", "b"], "price": [1.0, 2.0, 3.0, 4.0]})
    data = Interactions.from_matrix(m, items=items)
    assert list(data.items.columns) == [
        "category",
        "price",
        "item_id",
        "title",
        "in_stock",
        "attributes",
    ]
    assert data.items["in_stock"].all()
    assert list(data.items["category"]) == ["a", "a", "b", "b"]
    top = ContentRecommender().fit(data).recommend(data.user_ids[0], n=1)
    assert top["item_id"].tolist() == ["i0000001"]  # same category as its purchase i0000000
