"""The arms of an experiment, defined by the campaign layer (:mod:`segmint.campaigns`,
which writes the design into ``campaign_runs.params``) and re-exported here for the
modules that measure it."""

from __future__ import annotations

from segmint.campaigns import (
    DEFAULT_CONTROL,
    DEFAULT_TREATMENT,
    POOLED,
    Design,
    campaign_control,
    campaign_design,
    design_from_params,
    make_design,
    normalize_arm,
    run_designs,
)

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_TREATMENT",
    "POOLED",
    "Design",
    "campaign_control",
    "campaign_design",
    "design_from_params",
    "make_design",
    "normalize_arm",
    "run_designs",
]
