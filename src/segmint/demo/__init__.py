"""A deterministic demo shop: raw exports with planted personas, a campaign and defects."""

from segmint.demo._generate import DemoSummary, generate_demo

__all__ = ["DemoSummary", "generate_demo"]
