"""Recommendations: popularity, segment popularity, item-kNN, ALS, BPR, content-based and
a hybrid behind one interface; business filters and cold-start fallbacks; offline
evaluation with a time split; versioned batch runs in the store.

Typical use::

    from segmint.recommend import evaluate_models, recommend_all, recommend_for_user

    result = evaluate_models(store)            # comparison table, best model recorded
    run = recommend_all(store, "best")         # top-10 for every user, stored as a run
    recommend_for_user(store, "C000042", 5)    # one user's items, titles and reasons
"""

from segmint.recommend._api import recommend_all, recommend_for_user
from segmint.recommend._base import Filters, NotFittedError, Recommender
from segmint.recommend._content import ContentRecommender, item_content_matrix
from segmint.recommend._evaluate import EvaluationResult, evaluate_models, evaluate_on_split
from segmint.recommend._interactions import (
    DEFAULT_WEIGHTS,
    Interactions,
    build_interactions,
    purchases_between,
)
from segmint.recommend._metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from segmint.recommend._models import (
    ALSRecommender,
    BPRRecommender,
    HybridRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    SegmentPopularityRecommender,
)
from segmint.recommend._registry import MODEL_NAMES, filters_from_config, make_model
from segmint.recommend._runs import (
    RecommendationRun,
    list_recommendation_runs,
    load_recommendations,
    load_run_record,
)
from segmint.recommend._spark_als import SparkALSRecommender

__all__ = [
    "DEFAULT_WEIGHTS",
    "MODEL_NAMES",
    "ALSRecommender",
    "BPRRecommender",
    "ContentRecommender",
    "EvaluationResult",
    "Filters",
    "HybridRecommender",
    "Interactions",
    "ItemKNNRecommender",
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
