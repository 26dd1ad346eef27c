"""Cleaning rules and the data-quality report."""

from segmint.clean._report import quality_report
from segmint.clean._rules import apply_cleaning

__all__ = ["apply_cleaning", "quality_report"]
