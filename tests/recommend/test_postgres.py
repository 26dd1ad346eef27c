"""The same interactions, lists, runs and evaluation on PostgreSQL as on DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmint.config import RecommendConfig
from segmint.recommend import (
    build_interactions,
    evaluate_models,
    load_recommendations,
    recommend_all,
    recommend_for_user,
)
from segmint.store import Store

pytestmark = pytest.mark.postgres
CONFIG = RecommendConfig(segmentation="tiers", half_life_days=7.0)


def test_interactions_are_the_same(pg_store: Store, tiny_store: Store) -> None:
    kwargs = {"half_life_days": 7.0, "segmentation": "tiers", "before": "2025-06-30"}
    pg = build_interactions(pg_store, **kwargs)
    duck = build_interactions(tiny_store, **kwargs)
    assert list(pg.user_ids) == list(duck.user_ids)
    assert list(pg.item_ids) == list(duck.item_ids)
    np.testing.assert_allclose(pg.matrix.toarray(), duck.matrix.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(pg.purchases.toarray(), duck.purchases.toarray())
    pd.testing.assert_series_equal(pg.segments, duck.segments)
    pd.testing.assert_frame_equal(pg.items, duck.items)


def test_runs_and_lookups_are_the_same(pg_store: Store, tiny_store: Store) -> None:
    for store in (pg_store, tiny_store):
        recommend_all(store, "hybrid", n=3, config=CONFIG)
    pg = load_recommendations(pg_store).drop(columns="run_id")
    duck = load_recommendations(tiny_store).drop(columns="run_id")
    pd.testing.assert_frame_equal(pg, duck, check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(
        recommend_for_user(pg_store, "u3", 2), recommend_for_user(tiny_store, "u3", 2)
    )
    for store in (pg_store, tiny_store):
        store.execute("INSERT INTO users (user_id) VALUES ('u9')")
    pd.testing.assert_frame_equal(
        recommend_for_user(pg_store, "u9", 3), recommend_for_user(tiny_store, "u9", 3)
    )


def test_evaluation_is_the_same(pg_store: Store, tiny_store: Store) -> None:
    args = {"cut": "2025-06-05", "test_days": 10, "config": CONFIG}
    models = ["popularity", "segment_popularity", "item_knn", "content"]
    pg = evaluate_models(pg_store, models=models, **args)
    duck = evaluate_models(tiny_store, models=models, **args)
    cols = [c for c in pg.table.columns if not c.endswith("_s")]
    pd.testing.assert_frame_equal(pg.table[cols], duck.table[cols])
    assert pg.best == duck.best
