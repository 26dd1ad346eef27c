"""Segmentations: business rules (RFM, lifecycle, value tiers, custom), clustering with
automatic k, evaluation, explanation, and versioned runs."""

from segmint.segments._rules import (
    LIFECYCLE_SEGMENTS,
    RFM_GRID,
    RFM_SEGMENTS,
    VALUE_TIERS,
    custom_rules_sql,
    lifecycle_sql,
    rfm_sql,
    value_tiers_sql,
)
from segmint.segments._runs import SegmentResult, diff_runs, list_runs, load_run
from segmint.segments._segment import run_segmentation, run_segmentations, segment_metrics

__all__ = [
    "LIFECYCLE_SEGMENTS",
    "RFM_GRID",
    "RFM_SEGMENTS",
    "VALUE_TIERS",
    "SegmentResult",
    "custom_rules_sql",
    "diff_runs",
    "lifecycle_sql",
    "list_runs",
    "load_run",
    "rfm_sql",
    "run_segmentation",
    "run_segmentations",
    "segment_metrics",
    "value_tiers_sql",
]
