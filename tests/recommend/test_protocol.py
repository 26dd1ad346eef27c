"""The evaluation protocol on the tiny shop, where every number is known by heart.

Training before 2025-06-06 (orders o1..o5): u1 A1 A2 | u2 A1 A2 C1 | u3 A1 | u4 B1 B2 |
u5 B1. Popularity (users per item): A1 3, A2 2, B1 2, B2 1, C1 1; A3 and A4 nobody; D1 is
out of stock. The test window 2025-06-06 .. 06-09 holds o6 (u6, unknown before the cut)
and o8 (u1 buys C1, new to them).
"""

from __future__ import annotations

import numpy as np
import pytest

from segmint.errors import ConfigError, NotFoundError
from segmint.recommend import Filters, build_interactions, evaluate_models
from segmint.store import Store


def _evaluate(
    store: Store, *, cut: str, test_days: int, filters: Filters | None = None
) -> dict[str, float]:
    res = evaluate_models(
        store,
        models=["popularity"],
        k=3,
        cut=cut,
        test_days=test_days,
        filters=filters,
        save=False,
    )
    row = res.table.loc["popularity"]
    return {"n_users": res.n_users, "n_cold": res.n_cold_users, **row.to_dict()}


def test_cut_and_test_days_give_the_hand_computed_split(tiny_store: Store) -> None:
    got = _evaluate(tiny_store, cut="2025-06-06", test_days=3)
    # u1 is the one user evaluated, relevant {C1}; u6 bought only after the cut.
    # u1's list: A1 A2 bought, so B1 (2), then B2 and C1 tied at 1: B2 first (item order)
    assert (got["n_users"], got["n_cold"]) == (1, 1)
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(1.0)
    assert got["ndcg@3"] == pytest.approx(1 / np.log2(4))  # the hit at rank 3
    assert got["map@3"] == pytest.approx(1 / 3)
    assert got["hit_rate@3"] == pytest.approx(1.0)


def test_the_test_window_ends_after_test_days(tiny_store: Store) -> None:
    # 2 days: [06-06, 06-08) misses o8 (06-08 12:00), so nobody known is left to evaluate
    with pytest.raises(NotFoundError, match="no user bought anything after the cut"):
        _evaluate(tiny_store, cut="2025-06-06", test_days=2)


def test_test_days_must_be_positive(tiny_store: Store) -> None:
    with pytest.raises(ConfigError, match="test_days must be a whole number of days >= 1"):
        _evaluate(tiny_store, cut="2025-06-06", test_days=0)


def _rebuy(store: Store) -> None:
    """u3 buys A1 again on June 9 (they bought it on June 3)."""
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        "('o9', 'u3', CAST('2025-06-09 12:00:00+00' AS TIMESTAMPTZ), 1.0, 'completed')"
    )
    store.execute(
        "INSERT INTO order_items (order_id, line, item_id, quantity, unit_price) "
        "VALUES ('o9', 1, 'A1', 1, 1.0)"
    )


def test_a_rebought_item_is_not_relevant_by_default(tiny_store: Store) -> None:
    _rebuy(tiny_store)
    got = _evaluate(tiny_store, cut="2025-06-06", test_days=5)
    assert got["n_users"] == 1  # u1 only: u3's A1 was bought before the cut


def test_with_repurchases_a_rebought_item_is_a_hit(tiny_store: Store) -> None:
    _rebuy(tiny_store)
    got = _evaluate(
        tiny_store, cut="2025-06-06", test_days=5, filters=Filters(exclude_purchased=False)
    )
    # everyone gets A1 (3), A2 (2), B1 (2): u3's A1 is a hit at rank 1, u1's C1 a miss
    assert got["n_users"] == 2
    assert got["hit_rate@3"] == pytest.approx(0.5)
    assert got["recall@3"] == pytest.approx(0.5)
    assert got["precision@3"] == pytest.approx(1 / 6)
    assert got["ndcg@3"] == pytest.approx(0.5)


def test_binary_weighting_counts_every_pair_once(tiny_store: Store) -> None:
    weighted = build_interactions(tiny_store)
    binary = build_interactions(tiny_store, binary=True)
    u1, u2, u3 = weighted.user_index(["u1", "u2", "u3"])
    a2, c1 = weighted.item_index(["A2", "C1"])
    # purchase weight 5 x quantity: u1 bought A2 x2, u2 C1 x3; u3 put A2 in the cart (3)
    assert weighted.matrix[u1, a2] == 10.0
    assert weighted.matrix[u2, c1] == 15.0
    assert weighted.matrix[u3, a2] == 3.0
    assert binary.matrix[u1, a2] == binary.matrix[u2, c1] == binary.matrix[u3, a2] == 1.0
    assert (binary.matrix != 0).toarray().tolist() == (weighted.matrix != 0).toarray().tolist()
    assert set(binary.matrix.data) == {1.0}
    assert (binary.purchases != weighted.purchases).nnz == 0  # units bought are kept
    assert binary.params["binary"] is True


def test_binary_weighting_refuses_a_recency_decay(tiny_store: Store) -> None:
    with pytest.raises(ConfigError, match="drop half_life_days or binary"):
        build_interactions(tiny_store, binary=True, half_life_days=30)
