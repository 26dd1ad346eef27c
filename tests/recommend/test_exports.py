"""segmint.recommend's public surface is deliberate: a change to it must change this test."""

from __future__ import annotations

import segmint.recommend


def test_recommend_exports() -> None:
    assert sorted(segmint.recommend.__all__) == sorted(
        [
            "ALSRecommender",
            "BPRRecommender",
            "ContentRecommender",
            "DEFAULT_WEIGHTS",
            "EvaluationResult",
            "Filters",
            "HybridRecommender",
            "Interactions",
            "ItemKNNRecommender",
            "MODEL_NAMES",
            "NotFittedError",
            "PopularityRecommender",
            "RecommendationRun",
            "Recommender",
            "SegmentPopularityRecommender",
            "SparkALSRecommender",
            "build_interactions",
            "catalogue_coverage",
            "evaluate_models",
            "evaluate_on_split",
            "filters_from_config",
            "hit_rate_at_k",
            "item_content_matrix",
            "list_recommendation_runs",
            "load_recommendations",
            "load_run_record",
            "make_model",
            "map_at_k",
            "ndcg_at_k",
            "novelty",
            "precision_at_k",
            "purchases_between",
            "ranking_metrics",
            "recall_at_k",
            "recommend_all",
            "recommend_for_user",
        ]
    )
    for name in segmint.recommend.__all__:
        assert hasattr(segmint.recommend, name), name


def test_not_fitted_error_is_a_segmint_error() -> None:
    from segmint.errors import SegmintError

    assert issubclass(segmint.recommend.NotFittedError, SegmintError)
