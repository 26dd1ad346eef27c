"""The self-contained HTML report: one file with interactive charts that opens offline.

``build_report(project)`` writes overview KPIs, data quality, segment sizes and revenue
shares, a feature heatmap and persona cards per segmentation, the RFM grid, a PCA
projection, k-selection curves and surrogate-tree rules of each clustering, and a
migration Sankey between runs; marketer sections first, the method in an appendix. Text
follows ``locale:`` and money ``currency:``; the page reads on a phone. plotly.js is
embedded once from the installed package, gzip-compressed (unpacked by the browser).
"""

from segmint.report._build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
