"""A small demo project with two runs of rfm, lifecycle and clusters, and its report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import segmint
from segmint.demo import generate_demo
from segmint.report import ReportResult, build_report

#: Segmentations run (twice) on the demo; every one of them gets a migration Sankey.
SEGMENTATIONS = ["rfm", "lifecycle", "clusters"]
CAMPAIGN = "spring_reactivation_2026"


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    out = tmp_path_factory.mktemp("report-demo")
    generate_demo(out, n_users=2_000, seed=5)
    p = segmint.open_project(out)
    p.ingest()
    p.segment(SEGMENTATIONS)
    p.segment(SEGMENTATIONS)
    # the planted past campaign, evaluated by lifecycle segment (the report shows it)
    p.import_campaign(
        CAMPAIGN, f"campaigns/{CAMPAIGN}.csv", control_share=0.2, columns={"user_id": "customer_id"}
    )
    p.evaluate(CAMPAIGN, segmentation="lifecycle", n_resamples=500)
    yield p
    p.close()


@pytest.fixture(scope="session")
def demo_report(
    demo_project: segmint.Project, tmp_path_factory: pytest.TempPathFactory
) -> ReportResult:
    return build_report(demo_project, tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="session")
def demo_html(demo_report: ReportResult) -> str:
    return Path(demo_report.path).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def zh_report(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """A small demo shop with ``locale: zh-CN`` and ``currency: CNY``."""
    root = tmp_path_factory.mktemp("report-zh")
    generate_demo(root, n_users=300, seed=2)
    config = root / "segmint.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("currency: EUR\n", "currency: CNY\nlocale: zh-CN\n"), encoding="utf-8"
    )
    with segmint.open_project(root) as p:
        assert p.config.locale == "zh-CN"
        p.ingest()
        p.segment(SEGMENTATIONS)
        p.segment(SEGMENTATIONS)
        return build_report(p, root / "report.html")
