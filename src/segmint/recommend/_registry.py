"""Models and filters from the ``recommend:`` section of segmint.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segmint.config import RecommendConfig
from segmint.errors import ConfigError
from segmint.recommend._base import Filters, Recommender
from segmint.recommend._content import ContentRecommender
from segmint.recommend._models import (
    ALSRecommender,
    BPRRecommender,
    HybridRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    SegmentPopularityRecommender,
)
from segmint.store import Store

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

__all__ = ["MODEL_NAMES", "default_segmentation", "filters_from_config", "make_model"]

MODEL_NAMES = (
    "popularity",
    "segment_popularity",
    "item_knn",
    "als",
    "bpr",
    "content",
    "hybrid",
)


def make_model(
    name: str, config: RecommendConfig | None = None, *, engine: SparkEngine | None = None
) -> Recommender:
    """An unfitted model by name, with the parameters of ``config``.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    config : RecommendConfig, optional
        The ``recommend:`` settings; defaults otherwise.
    engine : SparkEngine, optional
        The project's engine (``engine: spark``): ``als`` is then fitted by Spark MLlib
        (:class:`SparkALSRecommender`), also inside the hybrid. None: the store's machine.

    Returns
    -------
    Recommender

    Raises
    ------
    segmint.errors.ConfigError
        For an unknown name (with the closest known one).
    """
    cfg = config or RecommendConfig()
    if name == "popularity":
        return PopularityRecommender()
    if name == "segment_popularity":
        return SegmentPopularityRecommender()
    if name == "item_knn":
        return ItemKNNRecommender(
            neighbours=cfg.item_knn.neighbours, weighting=cfg.item_knn.weighting
        )
    if name == "als":
        a = cfg.als
        if engine is not None:
            from segmint.recommend._spark_als import SparkALSRecommender

            return SparkALSRecommender(
                engine=engine,
                factors=a.factors,
                iterations=a.iterations,
                regularization=a.regularization,
                alpha=a.alpha,
                weighting=a.weighting,
            )
        return ALSRecommender(
            factors=a.factors,
            iterations=a.iterations,
            regularization=a.regularization,
            alpha=a.alpha,
            weighting=a.weighting,
        )
    if name == "bpr":
        return BPRRecommender()
    if name == "content":
        return ContentRecommender()
    if name == "hybrid":
        h = cfg.hybrid
        return HybridRecommender(
            components={c: make_model(c, cfg, engine=engine) for c in h.components},
            weights={k: v for k, v in h.weights.items() if k in h.components},
            popularity_weight=h.popularity_weight,
        )
    import difflib

    close = difflib.get_close_matches(name, MODEL_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint}; known: {', '.join(MODEL_NAMES)}")


def filters_from_config(config: RecommendConfig | None = None) -> Filters:
    """The business filters of the ``recommend:`` settings."""
    cfg = config or RecommendConfig()
    return Filters(
        exclude_purchased=cfg.exclude_purchased,
        repeat_purchase_categories=tuple(cfg.repeat_purchase_categories),
        in_stock_only=cfg.in_stock_only,
        price_bands={k: (v.min, v.max) for k, v in cfg.price_bands.items()},
        category_cap=cfg.category_cap,
    )


def default_segmentation(store: Store) -> str | None:
    """The segmentation of the newest stored segment run, or None without runs."""
    from segmint.segments import list_runs

    runs = list_runs(store)
    return None if runs.empty else str(runs["segmentation"].iloc[0])
