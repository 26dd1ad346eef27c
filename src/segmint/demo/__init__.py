"""A deterministic demo shop: raw exports with planted personas, a campaign and defects;
and the demo's campaign step over a whole project (:func:`run_demo_campaigns`)."""

from segmint.demo._campaigns import DemoCampaigns, run_demo_campaigns
from segmint.demo._generate import DemoSummary, generate_demo

__all__ = ["DemoCampaigns", "DemoSummary", "generate_demo", "run_demo_campaigns"]
