"""A deterministic demo shop: raw exports with planted personas, a campaign and defects;
and the demo's campaign step over a whole project (:func:`run_demo_campaigns`)."""

from segmint.demo._campaigns import DemoCampaigns, run_demo_campaigns
from segmint.demo._generate import (
    CAMPAIGN_CONTROL_SHARE,
    CAMPAIGN_NAME,
    CAMPAIGN_WINDOW_DAYS,
    DemoSummary,
    generate_demo,
)

__all__ = [
    "CAMPAIGN_CONTROL_SHARE",
    "CAMPAIGN_NAME",
    "CAMPAIGN_WINDOW_DAYS",
    "DemoCampaigns",
    "DemoSummary",
    "generate_demo",
    "run_demo_campaigns",
]
