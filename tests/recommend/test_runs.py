"""Batch runs written to the store and read back; evaluations recorded and reused."""

from __future__ import annotations

import pandas as pd
import pytest

from segmint.config import RecommendConfig
from segmint.errors import NotFoundError
from segmint.recommend import (
    ItemKNNRecommender,
    build_interactions,
    evaluate_models,
    list_recommendation_runs,
    load_recommendations,
    load_run_record,
    recommend_all,
    recommend_for_user,
)
from segmint.store import Store

CONFIG = RecommendConfig(segmentation="tiers")


def test_a_run_is_stored_and_reloaded(tiny_store: Store) -> None:
    run = recommend_all(tiny_store, "item_knn", n=3, config=CONFIG)
    assert run.kind == "batch" and run.model == "item_knn" and run.n_users == 8
    stored = load_recommendations(tiny_store)
    assert len(stored) == 8 * 3 == run.metrics["n_rows"]
    assert set(stored["run_id"]) == {run.run_id}
    # the same lists as asking the model directly
    it = build_interactions(tiny_store, segmentation="tiers")
    users = [f"u{k}" for k in range(1, 9)]
    direct = ItemKNNRecommender().fit(it).recommend(users, 3)
    pd.testing.assert_frame_equal(
        stored.drop(columns="run_id").reset_index(drop=True),
        direct[["user_id", "rank", "item_id", "score", "model", "reason"]].astype(
            {"rank": "int64", "user_id": str, "item_id": str, "model": str, "reason": str}
        ),
        check_dtype=False,
    )
    record = load_run_record(tiny_store, run.run_id)
    assert record.params["filters"]["exclude_purchased"] is True
    assert record.metrics["n_rows"] == 24


def test_one_users_list_from_the_latest_run(tiny_store: Store) -> None:
    recommend_all(tiny_store, "popularity", n=3, config=CONFIG)
    latest = recommend_all(tiny_store, "item_knn", n=3, config=CONFIG)
    mine = recommend_for_user(tiny_store, "u3", 2)
    assert list(mine.columns) == ["rank", "item_id", "title", "score", "reason", "model"]
    assert list(mine["item_id"]) == ["A2", "A3"]
    assert mine.iloc[0]["title"] == "Blue Novel"
    assert mine.iloc[0]["reason"] == "because you bought Red Novel"
    assert list(load_recommendations(tiny_store, user_id="u3")["run_id"].unique()) == [
        latest.run_id
    ]
    assert len(list_recommendation_runs(tiny_store, "batch")) == 2


def test_a_user_added_after_the_run_gets_what_is_popular_now(tiny_store: Store) -> None:
    recommend_all(tiny_store, "item_knn", n=3, config=CONFIG)
    tiny_store.execute("INSERT INTO users (user_id) VALUES ('u9')")
    late = recommend_for_user(tiny_store, "u9", 2)
    # completed orders in the 30 days before the newest activity: A1, C1 (3 buyers each)
    assert list(late["item_id"]) == ["A1", "C1"]
    assert set(late["reason"]) == {"popular now"}
    with pytest.raises(NotFoundError, match="not in the store"):
        recommend_for_user(tiny_store, "nobody", 2)


def test_missing_runs_say_what_to_do(tiny_store: Store) -> None:
    with pytest.raises(NotFoundError, match="segmint recommend"):
        recommend_for_user(tiny_store, "u1")
    with pytest.raises(NotFoundError, match="recommend evaluate"):
        recommend_all(tiny_store, "best", config=CONFIG)
    with pytest.raises(NotFoundError, match="not found"):
        load_recommendations(tiny_store, run_id="r-nope")


def test_evaluation_is_recorded_and_best_is_used(tiny_store: Store) -> None:
    result = evaluate_models(
        tiny_store,
        cut="2025-06-05",
        test_days=10,
        models=["popularity", "segment_popularity", "item_knn"],
        config=CONFIG,
        filters=None,
    )
    assert list(result.table.index) == ["popularity", "segment_popularity", "item_knn"]
    assert {"ndcg@10", "map@10", "coverage", "novelty"} <= set(result.table.columns)
    assert result.best == result.table["ndcg@10"].idxmax()
    # train: orders of 1-4 June (u1..u4). Test buyers: u1 (C1 on 8 June, new to them),
    # u5 and u6 (unknown before the cut: cold, not evaluated)
    assert (result.n_users, result.n_cold_users) == (1, 2)
    ndcg = result.table["ndcg@10"]
    # popularity before the cut: A1 3, A2 2, then B1 B2 C1 1 each -> C1 third for u1
    assert ndcg["popularity"] == pytest.approx(0.5)
    assert ndcg["segment_popularity"] == pytest.approx(1.0)  # S1 bought C1 (u2)
    assert ndcg["item_knn"] == pytest.approx(1.0)  # u2 bought C1 with A1 and A2
    assert result.gain_over_popularity == pytest.approx(1.0)
    record = load_run_record(tiny_store, kind="evaluation")
    assert record.model == result.best
    assert [row["model"] for row in record.metrics["table"]] == list(result.table.index)
    run = recommend_all(tiny_store, "best", n=2, config=CONFIG)
    assert run.model == result.best
