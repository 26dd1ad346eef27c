"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

Every chart must render (an SVG with drawn marks, non-zero size), with no console error,
no page error and no request that leaves file://. A full-page screenshot is saved in the
test's tmp dir and its path printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from segmint.report import ReportResult

CHROMIUM = "/usr/bin/chromium"
#: Per segmentation (rfm, lifecycle, clusters; see conftest.py): sizes, heatmap and Sankey;
#: plus the RFM grid, the projection and the k-selection curves of the one clustering.
EXPECTED_FIGURES = 3 * 3 + 3 + 3 + 1  # see test_report.py

#: Marks plotly draws for the trace types the report uses: bars and scatter points,
#: heatmap images, k-selection lines, Sankey nodes and links.
MARKS = ".point, .hm image, .js-line, .sankey-node, .sankey-link"

RENDERED_JS = """() => [...document.querySelectorAll('.plotly-graph-div')].map(d => {
    const box = d.getBoundingClientRect();
    return {
        id: d.id,
        section: d.closest('section').id,
        svgs: d.querySelectorAll('.main-svg').length,
        marks: d.querySelectorAll(MARKS).length,
        width: box.width,
        height: box.height,
        points: d.querySelectorAll('.scatterlayer .point').length,
        traces: (d._fullData || []).map(t => ({type: t.type, name: t.name || '',
                                               n: t._length || 0})),
    };
})""".replace("MARKS", repr(MARKS))


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def test_report_renders_offline_in_chromium(
    browser: Any, demo_report: ReportResult, tmp_path: Path
) -> None:
    console_errors: list[str] = []
    page_errors: list[str] = []
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))

    url = Path(demo_report.path).resolve().as_uri()
    page.goto(url, wait_until="load")
    # plotly draws synchronously in newPlot, but wait until every div has its SVG
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-graph-div')]"
        ".every(d => d.querySelector('.main-svg'))",
        timeout=30_000,
    )
    rendered = page.evaluate(RENDERED_JS)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    page.close()

    assert len(rendered) == EXPECTED_FIGURES
    for fig in rendered:
        assert fig["svgs"] >= 1, fig["id"]
        assert fig["marks"] > 0, f"{fig['id']} drew nothing: {fig['traces']}"
        assert fig["width"] > 200 and fig["height"] > 200, fig
    # the projection draws the sample (every user at 2,000 < 5,000) as scatter points
    (projection,) = [f for f in rendered if f["section"] == "projection"]
    assert sum(t["n"] for t in projection["traces"] if t["type"] == "scatter") == 2_000
    assert projection["points"] == 2_000
    assert sorted(f["section"] for f in rendered).count("migration") == 3
    assert console_errors == []
    assert page_errors == []
    assert [u for u in requests if not u.startswith("file://")] == []
    assert requests == [url]
    assert shot.stat().st_size > 100_000
