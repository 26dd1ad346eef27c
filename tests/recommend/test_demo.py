"""On the generated demo shop (planted category affinity), personalised models must beat
global popularity on a time split by at least 20% relative NDCG@10."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import segmint
from segmint.config import RecommendConfig
from segmint.demo import generate_demo
from segmint.recommend import (
    EvaluationResult,
    evaluate_models,
    load_recommendations,
    recommend_all,
    recommend_for_user,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    root: Path = tmp_path_factory.mktemp("demo-rec")
    generate_demo(root, n_users=3000, seed=7)
    project = segmint.open_project(root)
    project.ingest()
    project.segment(["rfm", "clusters"])
    yield project
    project.close()


@pytest.fixture(scope="module")
def evaluation(demo: segmint.Project) -> EvaluationResult:
    return evaluate_models(demo.store, config=RecommendConfig(segmentation="clusters"))


def test_personalised_models_beat_popularity_by_20_percent(evaluation: EvaluationResult) -> None:
    table = evaluation.table
    print(f"\n{evaluation.n_users} users, cut {evaluation.cut:%Y-%m-%d}\n{table.round(4)}")
    print(
        f"best {evaluation.best}, NDCG@10 gain over popularity {evaluation.gain_over_popularity:+.1%}"
    )
    assert set(table.index) == {
        "popularity",
        "segment_popularity",
        "item_knn",
        "als",
        "content",
        "hybrid",
    }
    assert evaluation.n_users > 500
    assert evaluation.gain_over_popularity is not None
    assert evaluation.gain_over_popularity >= 0.20
    assert evaluation.best not in ("popularity", "segment_popularity")
    # every personalised model learns the planted affinity, not only the best one
    for model in ("item_knn", "als", "content", "hybrid"):
        assert table.loc[model, "ndcg@10"] > 1.2 * table.loc["popularity", "ndcg@10"], model
    assert table.loc["item_knn", "coverage"] > 5 * table.loc["popularity", "coverage"]


def test_every_user_gets_a_stored_list_with_reasons(
    demo: segmint.Project, evaluation: EvaluationResult
) -> None:
    config = RecommendConfig(segmentation="clusters", category_cap=3)
    run = recommend_all(demo.store, "best", config=config)
    assert run.model == evaluation.best
    assert run.n_users == demo.store.count("users") == 3000
    stored = load_recommendations(demo.store, run.run_id)
    assert len(stored) == 3000 * 10
    assert stored.groupby("user_id").size().eq(10).all()
    # the category cap holds in every list
    cats = demo.store.query("SELECT item_id, category FROM items")
    per_cat = stored.merge(cats, on="item_id").groupby(["user_id", "category"]).size()
    assert per_cat.max() <= 3
    # nobody gets an item they already bought, or one that is sold out
    bought = demo.store.query(
        "SELECT DISTINCT o.user_id, oi.item_id FROM order_items oi "
        "JOIN orders o ON o.order_id = oi.order_id WHERE o.status = 'completed'"
    )
    assert stored.merge(bought, on=["user_id", "item_id"]).empty
    sold_out = set(demo.store.query("SELECT item_id FROM items WHERE NOT in_stock")["item_id"])
    assert not set(stored["item_id"]) & sold_out
    assert stored["reason"].str.startswith("because you bought").any()
    mine = recommend_for_user(demo.store, "C000042", 5)
    assert len(mine) == 5 and mine["title"].notna().all()
