"""Cleaning rules and the data-quality report."""

from segmint.clean._report import quality_report
from segmint.clean._rules import plan_cleaning

__all__ = ["plan_cleaning", "quality_report"]
