"""Segmentations: business rules (RFM, lifecycle, value tiers, custom), clustering with
automatic k, evaluation, explanation, and versioned runs.

The estimators (:class:`AutoKMeans`, :class:`WardClustering`, :class:`DensityClustering`,
:class:`MixtureClustering`, :class:`FactorReducer`, :class:`FeatureScaler`,
:class:`SurrogateTree`, :class:`SegmentAssigner`) are scikit-learn estimators that work on a
plain DataFrame or matrix, without a project (examples in docs/api.md). They are imported
on first use, so that ``import segmint.segments`` does not import scikit-learn.
"""

from __future__ import annotations

import importlib
import typing
from typing import Any

from segmint.segments._rules import (
    LIFECYCLE_SEGMENTS,
    RFM_GRID,
    RFM_SEGMENTS,
    VALUE_TIERS,
    custom_rules_sql,
    lifecycle_sql,
    rfm_sql,
    run_sql,
    value_tiers_sql,
)
from segmint.segments._runs import SegmentResult, diff_runs, list_runs, load_run, resolve_run
from segmint.segments._segment import run_segmentation, run_segmentations, segment_metrics

if typing.TYPE_CHECKING:
    from segmint.segments._cluster import (
        NOISE_LABEL,
        AutoKMeans,
        DensityClustering,
        FactorReducer,
        MixtureClustering,
        WardClustering,
        choose_k,
        elbow_k,
    )
    from segmint.segments._clustering import assign_segments
    from segmint.segments._evaluate import evaluate_clustering, silhouette_many
    from segmint.segments._explain import SegmentAssigner, SurrogateTree, name_clusters
    from segmint.segments._scaling import FeatureScaler

# name -> module it is imported from on first use (scikit-learn is slow to import)
_LAZY = {
    "NOISE_LABEL": "segmint.segments._cluster",
    "AutoKMeans": "segmint.segments._cluster",
    "DensityClustering": "segmint.segments._cluster",
    "FactorReducer": "segmint.segments._cluster",
    "MixtureClustering": "segmint.segments._cluster",
    "WardClustering": "segmint.segments._cluster",
    "choose_k": "segmint.segments._cluster",
    "elbow_k": "segmint.segments._cluster",
    "assign_segments": "segmint.segments._clustering",
    "evaluate_clustering": "segmint.segments._evaluate",
    "silhouette_many": "segmint.segments._evaluate",
    "SegmentAssigner": "segmint.segments._explain",
    "SurrogateTree": "segmint.segments._explain",
    "name_clusters": "segmint.segments._explain",
    "FeatureScaler": "segmint.segments._scaling",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LIFECYCLE_SEGMENTS",
    "RFM_GRID",
    "RFM_SEGMENTS",
    "VALUE_TIERS",
    "NOISE_LABEL",
    "AutoKMeans",
    "DensityClustering",
    "FactorReducer",
    "FeatureScaler",
    "MixtureClustering",
    "SegmentAssigner",
    "SegmentResult",
    "SurrogateTree",
    "WardClustering",
    "assign_segments",
    "choose_k",
    "custom_rules_sql",
    "diff_runs",
    "elbow_k",
    "evaluate_clustering",
    "lifecycle_sql",
    "list_runs",
    "load_run",
    "name_clusters",
    "resolve_run",
    "rfm_sql",
    "run_segmentation",
    "run_segmentations",
    "run_sql",
    "segment_metrics",
    "silhouette_many",
    "value_tiers_sql",
]
