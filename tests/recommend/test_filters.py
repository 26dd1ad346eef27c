"""Business filters on the tiny shop, where the popularity order is known by heart.

Users per item: A1 3, A2 3, C1 3, B1 2, B2 2, A3 1, D1 1 (A4 none); ties by item id.
"""

from __future__ import annotations

import pytest

from segmint.errors import ConfigError
from segmint.recommend import (
    Filters,
    Interactions,
    PopularityRecommender,
    SegmentPopularityRecommender,
    build_interactions,
)
from segmint.store import Store


@pytest.fixture()
def popularity(tiny_store: Store) -> PopularityRecommender:
    return PopularityRecommender().fit(build_interactions(tiny_store, segmentation="tiers"))


def _items(model: PopularityRecommender, user: str, n: int, filters: Filters) -> list[str]:
    return list(model.recommend(user, n, filters=filters)["item_id"])


def test_already_bought_items_are_excluded_by_default(popularity: PopularityRecommender) -> None:
    assert _items(popularity, "u6", 4, Filters()) == ["A1", "A2", "B1", "A3"]  # not B2, C1
    keep_all = Filters(exclude_purchased=False)
    assert _items(popularity, "u6", 4, keep_all) == ["A1", "A2", "C1", "B1"]


def test_repeat_purchase_categories_stay(popularity: PopularityRecommender) -> None:
    food_again = Filters(repeat_purchase_categories=("food",))
    assert _items(popularity, "u6", 3, food_again) == ["A1", "A2", "C1"]  # C1 again, B2 not


def test_in_stock_only(popularity: PopularityRecommender) -> None:
    everything = _items(popularity, "u1", 4, Filters(in_stock_only=False))
    assert everything == ["B1", "B2", "A3", "D1"]
    assert _items(popularity, "u1", 4, Filters()) == ["B1", "B2", "A3"]  # D1 is sold out


def test_category_cap(popularity: PopularityRecommender) -> None:
    # u4: A1 A2 C1 A3 D1 without a cap; at most one book, one food, one toy with it
    capped = Filters(category_cap=1, in_stock_only=False)
    assert _items(popularity, "u4", 3, capped) == ["A1", "C1", "D1"]


def test_price_band_per_segment(tiny_store: Store) -> None:
    it: Interactions = build_interactions(tiny_store, segmentation="tiers")
    model = SegmentPopularityRecommender().fit(it)
    bands = Filters(price_bands={"S2": (12.0, 25.0)})
    # u7 (S2): only B1 (15) and A2 (20) are within 12..25; S1 users are not limited
    assert _items(model, "u7", 5, bands) == ["B1", "A2"]
    assert _items(model, "u8", 2, bands) == ["A1", "A2"]  # no segment, no band
    assert _items(model, "u3", 2, bands) == ["A2", "C1"]


def test_filters_are_checked() -> None:
    with pytest.raises(ConfigError, match="category_cap"):
        Filters(category_cap=0)
    with pytest.raises(ConfigError, match="above max"):
        Filters(price_bands={"S1": (10.0, 5.0)})
