"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

Every chart must render (an SVG with drawn marks, non-zero size), with no console error,
no page error and no request that leaves file://; tick labels stay inside their chart and
text on coloured cells keeps WCAG AA contrast with the pixels under it. On a 390 x 844
phone viewport nothing is wider than the screen (outside a scrollable table wrapper), the
menu is one short bar, and chart text is at least 11 px. Full-page screenshots (desktop,
phone, and a zh-CN phone) are saved in the test's tmp dir and their paths printed
(``pytest -s`` shows them); ``docs/img/report-phone.png`` is the top of the phone one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from segmint.report import ReportResult
from segmint.report._charts import contrast_ratio

ROOT = Path(__file__).resolve().parents[2]
DOCS_PHONE = ROOT / "docs" / "img" / "report-phone.png"
#: The top of the phone screenshot kept for the docs (two and a half screens).
DOCS_PHONE_HEIGHT = 2200
PHONE = {"width": 390, "height": 844}

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


#: Every tick label's box against its chart's SVG box (a clipped label sticks out).
TICKS_JS = """() => [...document.querySelectorAll('.plotly-graph-div')].flatMap(d => {
    const svg = d.querySelector('.main-svg').getBoundingClientRect();
    return [...d.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')]
        .filter(t => t.textContent.trim())
        .map(t => {
            const b = t.getBoundingClientRect();
            return {id: d.id, text: t.textContent, inside: b.left >= svg.left - 1 &&
                    b.right <= svg.right + 1 && b.top >= svg.top - 1 &&
                    b.bottom <= svg.bottom + 1};
        });
})"""

#: The text colour of each heatmap cell label and the pixel of the heatmap image
#: under the centre of the text (the image plotly painted, read back through a canvas).
CELLS_JS = """async () => {
    const out = [];
    for (const d of document.querySelectorAll('.plotly-graph-div')) {
        const img = d.querySelector('.hm image');
        if (!img) continue;
        const box = img.getBoundingClientRect();
        const picture = new Image();
        picture.src = img.getAttribute('href') || img.getAttribute('xlink:href');
        await picture.decode();
        const canvas = document.createElement('canvas');
        canvas.width = Math.round(box.width);
        canvas.height = Math.round(box.height);
        const ctx = canvas.getContext('2d');
        ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
        for (const t of d.querySelectorAll('.heatmap-label text')) {
            const b = t.getBoundingClientRect();
            const x = Math.floor(b.left + b.width / 2 - box.left);
            const y = Math.floor(b.top + b.height / 2 - box.top);
            if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) continue;
            const [r, g, bl] = ctx.getImageData(x, y, 1, 1).data;
            out.push({id: d.id, text: t.textContent, fill: getComputedStyle(t).fill,
                      size: parseFloat(getComputedStyle(t).fontSize),
                      cell: `rgb(${r}, ${g}, ${bl})`});
        }
    }
    return out;
}"""

#: Elements wider than the viewport: HTML elements and each chart's SVG (not the marks
#: inside it, which plotly clips), except inside a scrollable table wrapper.
OVERFLOW_JS = """() => [...document.querySelectorAll('body *:not(svg *), svg.main-svg')]
    .filter(e => !e.closest('.scroll') && e.getClientRects().length)
    .map(e => ({tag: e.tagName, cls: String(e.getAttribute('class') || ''),
                section: (e.closest('section') || {}).id || '',
                right: e.getBoundingClientRect().right}))
    .filter(e => e.right > window.innerWidth + 0.5)"""

#: Font sizes of every text drawn in the charts.
FONTS_JS = """() => [...document.querySelectorAll('.plotly-graph-div svg text')]
    .filter(t => t.textContent.trim() && t.getClientRects().length)
    .map(t => ({id: t.closest('.plotly-graph-div').id, text: t.textContent,
                size: parseFloat(getComputedStyle(t).fontSize)}))"""


def _open(browser: Any, path: Path, viewport: dict[str, int]) -> tuple[Any, dict[str, list[str]]]:
    """A page with the report loaded and every chart drawn; console errors, page errors and
    requests are collected."""
    seen: dict[str, list[str]] = {"console": [], "page": [], "requests": []}
    page = browser.new_page(viewport=viewport, device_scale_factor=1)
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["page"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    # plotly.js is unpacked first (DecompressionStream), then every figure drawn
    page.wait_for_function("() => document.documentElement.dataset.charts", timeout=60_000)
    assert page.evaluate("document.documentElement.dataset.charts") == "drawn", seen
    return page, seen


def test_report_renders_offline_in_chromium(
    browser: Any, demo_report: ReportResult, tmp_path: Path
) -> None:
    url = Path(demo_report.path).resolve().as_uri()
    page, seen = _open(browser, demo_report.path, {"width": 1280, "height": 900})
    rendered = page.evaluate(RENDERED_JS)
    ticks = page.evaluate(TICKS_JS)
    cells = page.evaluate(CELLS_JS)
    shot = tmp_path / "report-desktop.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\ndesktop screenshot: {shot}")
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
    assert seen["console"] == []
    assert seen["page"] == []
    assert [u for u in seen["requests"] if not u.startswith("file://")] == []
    assert seen["requests"] == [url]
    assert shot.stat().st_size > 100_000
    # axis labels are never clipped
    assert len(ticks) > 100
    assert [t for t in ticks if not t["inside"]] == []
    # text on coloured cells: AA contrast with the painted pixel under it
    _assert_cells_readable(cells)


def _assert_cells_readable(cells: list[dict[str, Any]], *, at_least: int = 100) -> None:
    assert len(cells) >= at_least
    for c in cells:
        assert contrast_ratio(c["fill"], c["cell"]) >= 4.5, c
        assert c["size"] >= 11, c


def _phone_checks(page: Any) -> None:
    width = PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(OVERFLOW_JS) == []
    # tables wider than the phone scroll inside their own wrapper, never the page
    assert page.evaluate("[...document.querySelectorAll('table')].every(t => t.closest('.scroll'))")
    nav = page.evaluate("document.querySelector('nav.toc').getBoundingClientRect().height")
    assert nav <= PHONE["height"] / 4 and nav <= 60, nav  # one bar, not a quarter
    assert page.evaluate("getComputedStyle(document.querySelector('nav.toc .links')).display") == (
        "none"
    )
    fonts = page.evaluate(FONTS_JS)
    assert fonts and min(f["size"] for f in fonts) >= 11, min(fonts, key=lambda f: f["size"])
    ticks = page.evaluate(TICKS_JS)
    assert [t for t in ticks if not t["inside"]] == []
    # legends sit below or above the plot, never beside it eating the width
    for d in page.evaluate(
        "[...document.querySelectorAll('.plotly-graph-div')].map(d => "
        "({id: d.id, o: (d._fullLayout.legend || {}).orientation, "
        "show: d._fullLayout.showlegend}))"
    ):
        assert not d["show"] or d["o"] == "h", d
    # the menu opens on tap and lists every section
    page.click("nav.toc details.menu > summary")
    n_links = page.evaluate("document.querySelectorAll('nav.toc details.menu a').length")
    assert n_links == page.evaluate("document.querySelectorAll('section.card').length")
    page.click("nav.toc details.menu > summary")


def _save_phone(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as im:
        assert im.width == PHONE["width"]
        assert im.height > 5 * PHONE["height"]
    print(f"\nphone screenshot: {path}")


def test_report_reads_on_a_phone(browser: Any, demo_report: ReportResult, tmp_path: Path) -> None:
    page, seen = _open(browser, demo_report.path, PHONE)
    _phone_checks(page)
    rendered = page.evaluate(RENDERED_JS)
    assert len(rendered) == EXPECTED_FIGURES
    for fig in rendered:
        assert fig["marks"] > 0 and fig["width"] <= PHONE["width"], fig
    # the phone keeps the RFM grid's counts (25 cells); the wide heatmaps and the
    # retention grid leave their values to the colour and the hover
    _assert_cells_readable(page.evaluate(CELLS_JS), at_least=25)
    shot = tmp_path / "report-phone.png"
    _save_phone(page, shot)
    page.close()
    assert seen["console"] == [] and seen["page"] == []
    # the docs keep the top of this screenshot (same width, same layout)
    top = tmp_path / "report-phone-top.png"
    with Image.open(shot) as im:
        im.crop((0, 0, PHONE["width"], DOCS_PHONE_HEIGHT)).convert("RGB").quantize(colors=128).save(
            top, optimize=True
        )
    print(f"docs crop: {top} (copy to {DOCS_PHONE} after a layout change)")
    with Image.open(DOCS_PHONE) as kept:
        assert kept.size == (PHONE["width"], DOCS_PHONE_HEIGHT)
    assert DOCS_PHONE.stat().st_size < 500_000


def test_chinese_report_reads_on_a_phone(
    browser: Any, zh_report: ReportResult, tmp_path: Path
) -> None:
    page, seen = _open(browser, zh_report.path, PHONE)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    _phone_checks(page)
    assert page.evaluate("document.querySelector('nav.toc summary').textContent") == "目录"
    _save_phone(page, tmp_path / "report-phone-zh.png")
    page.close()
    assert seen["console"] == [] and seen["page"] == []


def test_charts_say_so_when_the_browser_cannot_unpack_them(
    browser: Any, demo_report: ReportResult
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script("delete window.DecompressionStream")
    page.goto(Path(demo_report.path).resolve().as_uri(), wait_until="load")
    page.wait_for_function("() => document.documentElement.dataset.charts", timeout=30_000)
    assert page.evaluate("document.documentElement.dataset.charts") == "failed"
    notes = page.evaluate(
        "[...document.querySelectorAll('.plotly-graph-div .chart-fallback')].map(p => p.textContent)"
    )
    page.close()
    assert len(notes) == EXPECTED_FIGURES
    assert all("DecompressionStream" in n and "Safari 16.4" in n for n in notes)
