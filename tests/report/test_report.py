"""The HTML report on a small demo: sections, stated as-of and runs, offline, size, notes.

The figures are read back from the file itself (the JSON passed to ``Plotly.newPlot``), so
the tests check what a browser would draw, against numbers computed here from the runs.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

import segmint
import segmint.report
from segmint._i18n import language
from segmint.demo import generate_demo
from segmint.errors import NotFoundError
from segmint.report import ReportResult, build_report
from segmint.report._charts import CELL_TEXT, contrast_ratio, relative_luminance, text_color
from segmint.segments import RFM_GRID

#: What a marketer reads first, then the appendix (data quality and how clusters were made).
MARKETER_SECTIONS = [
    "overview",
    "segments",
    "personas",
    "heatmap",
    "rfm",
    "campaigns",
    "retention",
    "migration",
]
APPENDIX_SECTIONS = ["quality", "projection", "kselection", "rules"]
ALL_SECTIONS = MARKETER_SECTIONS + APPENDIX_SECTIONS
#: Per segmentation (rfm, lifecycle, clusters; see conftest.py): sizes, heatmap and Sankey;
#: plus the RFM grid, the projection and the k-selection curves of the one clustering; the
#: campaign forests (conversion and revenue lift across campaigns, lift by segment of the
#: one evaluated campaign; its control arm is too small for the uplift model) and the
#: retention heatmap.
EXPECTED_FIGURES = 3 * 3 + 3 + 3 + 1
MB = 1_000_000


# -- reading the file back ------------------------------------------------------------------


def _section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start : html.index("</section>", start)]


def _array(value: Any) -> np.ndarray:
    """A trace array as plotly wrote it: a plain list or a base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            arr = arr.reshape([int(n) for n in str(value["shape"]).split(",")])
        return arr
    return np.asarray(value)


_FIGURE = re.compile(
    r'<script type="application/json" class="segmint-figure" data-div="([^"]+)">(.*?)</script>',
    re.DOTALL,
)


def _specs(html: str) -> dict[str, dict[str, Any]]:
    """div id -> the figure the page draws: {"data", "layout", "config"}."""
    return {m.group(1): json.loads(m.group(2)) for m in _FIGURE.finditer(html)}


def _figures(html: str) -> dict[str, list[dict[str, Any]]]:
    """div id -> the traces passed to Plotly.newPlot."""
    return {div: spec["data"] for div, spec in _specs(html).items()}


def _embedded_plotly(html: str) -> str:
    m = re.search(r'<script type="application/octet-stream" id="plotly-js-gz"[^>]*>([^<]*)<', html)
    assert m is not None, "no embedded plotly.js"
    return gzip.decompress(base64.b64decode(m.group(1))).decode("utf-8")


def _header(html: str) -> str:
    return html[html.index("<header") : html.index("</header>")]


# -- tests ----------------------------------------------------------------------------------


def test_public_surface() -> None:
    assert segmint.report.__all__ == ["ReportResult", "build_report"]


def test_pooled_arm_label_is_public() -> None:
    # the campaign section tells the pooled comparison from the arms by this public name
    from segmint.campaigns import POOLED as defined
    from segmint.experiments import POOLED

    assert POOLED == defined == "any treatment"


def test_every_section_shows_data(demo_report: ReportResult, demo_html: str) -> None:
    assert demo_report.sections == ALL_SECTIONS
    for sid in ALL_SECTIONS:
        assert f'<section id="{sid}"' in demo_html
    assert "data-note=" not in demo_html


def test_states_as_of_and_the_runs_shown(
    demo_project: segmint.Project, demo_report: ReportResult, demo_html: str
) -> None:
    latest = demo_project.segment_runs().drop_duplicates("segmentation")
    assert sorted(demo_report.run_ids) == sorted(latest["run_id"])
    assert pd.Timestamp(demo_report.as_of) == latest["as_of"].max()
    header = _header(demo_html)
    day = language("en").date(demo_report.as_of.date())  # e.g. "Nov 1, 2026"
    assert f"Data as of <strong>{day}</strong>" in header
    assert f'<meta name="segmint-as-of" content="{demo_report.as_of:%Y-%m-%d}">' in demo_html
    for run_id in demo_report.run_ids:
        assert f"<code>{run_id}</code>" in header
    meta = re.search(r'<meta name="segmint-runs" content="([^"]*)">', demo_html)
    assert meta is not None and meta.group(1).split() == demo_report.run_ids


def test_opens_offline_with_plotly_js_embedded_once_compressed(demo_html: str) -> None:
    js = get_plotlyjs()
    assert _embedded_plotly(demo_html) == js  # the whole library, byte for byte
    assert demo_html.count('id="plotly-js-gz"') == 1
    assert js[:2000] not in demo_html  # not also in clear
    assert "DecompressionStream" in demo_html
    rest = re.sub(r'(id="plotly-js-gz"[^>]*>)[^<]*', r"\1", demo_html)
    assert not re.search(r"<script[^>]*\bsrc\s*=", rest, re.IGNORECASE)
    assert not re.search(r"<link\b", rest, re.IGNORECASE)
    assert "http://" not in rest and "https://" not in rest
    assert "cdn" not in rest.lower()
    assert "@import" not in rest and "@font-face" not in rest


def test_figure_count_and_size(demo_report: ReportResult, demo_html: str) -> None:
    figures = _figures(demo_html)
    assert len(figures) == EXPECTED_FIGURES
    assert demo_html.count('class="plotly-graph-div"') == EXPECTED_FIGURES
    assert f'<meta name="segmint-figures" content="{EXPECTED_FIGURES}">' in demo_html
    assert demo_report.size_bytes == Path(demo_report.path).stat().st_size
    # plotly.js (4.8 MB) travels gzip-compressed in base64: about 2 MB
    packed = len(segmint.report._build.plotly_js_gzip_base64())
    assert packed < 0.45 * len(get_plotlyjs().encode())
    assert demo_report.size_bytes < 3 * MB
    # everything but the library is aggregated: well under a megabyte at 2,000 users
    assert demo_report.size_bytes - packed < 1 * MB


def test_projection_draws_a_sample_of_at_most_sample_users(
    demo_project: segmint.Project, tmp_path: Path
) -> None:
    res = build_report(demo_project, tmp_path / "r.html", runs=["clusters"], sample=300)
    html = res.path.read_text(encoding="utf-8")
    (traces,) = _figures(_section(html, "projection")).values()
    points = [t for t in traces if t["type"] == "scatter"]
    run = demo_project.segment_run("clusters")
    assert sum(len(_array(t["x"])) for t in points) == 300
    assert {t["name"] for t in points} <= set(run.assignments["segment"])
    n_users = len(run.assignments)
    assert f"300 of {n_users:,} users drawn at random" in html
    # the grey backdrop counts every user (a 2-D histogram, clipped to the 0.5-99.5 pct box)
    (backdrop,) = [t for t in traces if t["type"] == "heatmap"]
    shade = np.nan_to_num(_array(backdrop["z"]).astype(float))
    assert 0.95 * n_users <= np.expm1(shade).sum() <= n_users + 1e-6


def test_rfm_grid_puts_each_buyer_in_the_cell_of_their_segment(
    demo_project: segmint.Project, demo_html: str
) -> None:
    a = demo_project.segment_run("rfm").assignments
    buyers = a[a["detail"].notna()]
    r = buyers["detail"].str[0].astype(int)
    fm = (buyers["detail"].str[1].astype(int) + buyers["detail"].str[2].astype(int) + 1) // 2
    # the grid's naming agrees with the segment stored for every buyer
    named = [RFM_GRID[int(i)][int(j) - 1] for i, j in zip(r, fm, strict=True)]
    assert (buyers["segment"].to_numpy() == np.asarray(named)).all()
    (traces,) = _figures(_section(demo_html, "rfm")).values()
    grid = traces[0]  # then the two text layers
    assert [t["name"] for t in traces[1:]] == [CELL_TEXT, CELL_TEXT]
    z = _array(grid["z"]).astype(int)
    want = pd.crosstab(r, fm).reindex(index=[5, 4, 3, 2, 1], columns=[1, 2, 3, 4, 5]).fillna(0)
    assert (z == want.to_numpy().astype(int)).all()
    assert grid["y"][0] == "R 5" and grid["x"][0] == "FM 1"
    assert grid["text"][0][4].startswith("<b>Champions</b>")


def test_heatmap_rows_are_segments_and_cells_are_ratios(
    demo_project: segmint.Project, demo_html: str
) -> None:
    from segmint.profiles import personas

    run = demo_project.segment_run("clusters")
    ps = personas(demo_project.store, run)
    section = _section(demo_html, "heatmap")
    block = section[section.index(run.run_id) :]
    traces = next(iter(_figures(block).values()))
    heat = traces[0]
    assert heat["y"] == [p.segment for p in ps]
    assert heat["x"] == list(ps[0].features.index)
    j = heat["x"].index("monetary")
    ratio = ps[0].features.at["monetary", "ratio"]
    assert heat["text"][0][j] == language("en").number(ratio, 2)


def test_sankey_moves_every_user_between_the_two_runs(
    demo_project: segmint.Project, demo_html: str
) -> None:
    runs = demo_project.segment_runs("lifecycle")
    older, newer = runs["run_id"].iloc[1], runs["run_id"].iloc[0]
    section = _section(demo_html, "migration")
    block = section[section.index(f"{older}</span> → <span") :]
    (sankey,) = next(iter(_figures(block).values()))
    matrix = demo_project.segments_diff(older, newer)
    assert int(_array(sankey["link"]["value"]).sum()) == int(matrix.to_numpy().sum())
    assert sorted(sankey["node"]["label"]) == sorted([*matrix.index, *matrix.columns])


def test_k_selection_marks_the_chosen_k(demo_project: segmint.Project, demo_html: str) -> None:
    run = demo_project.segment_run("clusters")
    (traces,) = _figures(_section(demo_html, "kselection")).values()
    stars = [t for t in traces if str(t.get("name", "")).startswith("chosen k")]
    assert len(stars) == 4  # one per panel
    assert {t["name"] for t in stars} == {f"chosen k = {run.details['n_clusters']}"}


def test_text_is_escaped(demo_html: str) -> None:
    rules = _section(demo_html, "rules")
    assert "&lt;=" in rules  # the surrogate-tree rules hold "<=" comparisons
    assert not re.search(r"<=\s", rules)


def test_sections_without_data_show_a_note(demo_project: segmint.Project, tmp_path: Path) -> None:
    oldest_lifecycle = demo_project.segment_runs("lifecycle")["run_id"].iloc[-1]
    res = build_report(demo_project, tmp_path / "r.html", runs=[oldest_lifecycle])
    html = res.path.read_text(encoding="utf-8")
    assert res.run_ids == [oldest_lifecycle]
    assert res.sections == [
        "overview", "segments", "personas", "heatmap", "campaigns", "retention", "quality",
    ]  # fmt: skip
    for sid in ("rfm", "projection", "kselection", "rules", "migration"):
        section = _section(html, sid)
        assert f'data-note="{sid}"' in section
        assert "plotly-graph-div" not in section
    assert "add <code>rfm: {type: rfm}</code>" in _section(html, "rfm")
    assert "Only one run of each segmentation shown" in _section(html, "migration")


def test_a_project_without_runs_still_gets_overview_and_quality(tmp_path: Path) -> None:
    generate_demo(tmp_path / "d", n_users=200, seed=1)
    with segmint.open_project(tmp_path / "d") as p:
        p.ingest()
        res = build_report(p)
        n_users = int(p.status()["tables"]["users"]["rows"])
    assert res.path == tmp_path / "d" / "report.html"
    assert res.run_ids == [] and res.as_of is None
    assert res.sections == ["overview", "retention", "quality"]  # orders give cohorts
    html = res.path.read_text(encoding="utf-8")
    assert "No segmentation runs shown." in html
    assert f'<div class="value">{n_users:,}</div>' in _section(html, "overview")
    assert html.count('class="note"') == len(ALL_SECTIONS) - 3
    assert "No campaign evaluated yet" in _section(html, "campaigns")
    assert _embedded_plotly(html) == get_plotlyjs()  # the retention heatmap needs it, once


def test_runs_are_named_or_given_by_id(demo_project: segmint.Project, tmp_path: Path) -> None:
    rid = demo_project.segment_runs("rfm")["run_id"].iloc[1]
    res = build_report(demo_project, tmp_path / "r.html", runs=["clusters", rid, "clusters"])
    assert res.run_ids == [demo_project.segment_run("clusters").run_id, rid]
    with pytest.raises(NotFoundError, match="nope"):
        build_report(demo_project, tmp_path / "x.html", runs=["nope"])
    with pytest.raises(ValueError, match="list of names"):
        build_report(demo_project, tmp_path / "x.html", runs="rfm")
    with pytest.raises(ValueError, match="sample"):
        build_report(demo_project, tmp_path / "x.html", sample=0)
    assert not (tmp_path / "x.html").exists()


def test_campaign_results_show_the_stored_evaluation(
    demo_project: segmint.Project, demo_html: str
) -> None:
    from segmint.experiments import latest_evaluations

    (ev,) = latest_evaluations(demo_project.store)
    conv = next(e for e in ev["effects"] if e["metric"] == "conversion")
    section = _section(demo_html, "campaigns")
    figures = list(_figures(section).values())
    assert len(figures) == 3  # conversion forest, revenue forest, lift by segment
    (trace,) = figures[0]
    assert trace["y"] == [ev["campaign"]]
    x = _array(trace["x"])[0] / 100
    assert x == pytest.approx(conv["diff"])
    plus = _array(trace["error_x"]["array"])[0] / 100
    minus = _array(trace["error_x"]["arrayminus"])[0] / 100
    assert x + plus == pytest.approx(conv["diff_hi"]) and x - minus == pytest.approx(
        conv["diff_lo"]
    )
    (seg_trace,) = figures[2]
    assert sorted(seg_trace["y"]) == sorted(s["segment"] for s in ev["segments"])
    assert "Sample ratio check" in section and "CUPED variance reduction" in section


def test_retention_heatmap_matches_the_matrix(
    demo_project: segmint.Project, demo_html: str
) -> None:
    from segmint.experiments import retention_matrix

    wide = retention_matrix(demo_project.store, max_months=12).wide()
    (traces,) = _figures(_section(demo_html, "retention")).values()
    z = _array(traces[0]["z"]).astype(float)
    expected = wide.drop(columns="cohort_size").to_numpy(float)
    np.testing.assert_allclose(z, expected, equal_nan=True)


# -- order, money, contrast ------------------------------------------------------------------


def _headings(html: str) -> list[str]:
    """The h2 headings in document order (section titles and the appendix heading)."""
    return [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html)]


def test_marketer_sections_come_first_then_the_appendix(demo_html: str) -> None:
    from segmint.report._build import SECTIONS

    titles = dict(SECTIONS)
    assert _headings(demo_html) == [
        *(titles[s] for s in MARKETER_SECTIONS),
        "Appendix",
        *(titles[s] for s in APPENDIX_SECTIONS),
    ]
    appendix = demo_html[demo_html.index('<div id="appendix"') :]
    for sid in APPENDIX_SECTIONS:
        assert f'<section id="{sid}"' in appendix
    for sid in MARKETER_SECTIONS:
        assert f'<section id="{sid}"' not in appendix


def test_money_shows_its_currency(demo_project: segmint.Project, demo_html: str) -> None:
    from segmint.experiments import latest_evaluations

    currency = demo_project.config.currency
    assert currency == "EUR"  # the demo shop's
    lang = language("en")
    features = demo_project.features()
    overview = _section(demo_html, "overview")
    revenue = float(features["monetary"].sum())
    aov = revenue / float(features["frequency"].sum())
    assert 'data-kpi="revenue"><div class="label">revenue</div>' in overview
    assert lang.money(revenue, currency) in overview  # "€4,549,172"
    assert lang.money(aov, currency, whole=False) in overview  # "€117.92"
    # the campaign table: revenue per user in euros, conversion in percent
    section = _section(demo_html, "campaigns")
    (ev,) = latest_evaluations(demo_project.store)
    rev = next(e for e in ev["effects"] if e["metric"] == "revenue_per_user")
    row = re.search(r'<tr data-metric="revenue_per_user">(.*?)</tr>', section)
    assert row is not None
    assert lang.money(rev["treatment"], currency, whole=False) in row.group(1)
    conv_row = re.search(r'<tr data-metric="conversion">(.*?)</tr>', section)
    assert conv_row is not None and "€" not in conv_row.group(1) and "%" in conv_row.group(1)
    # the revenue forest: axis title, tick prefix and hover in euros
    specs = list(_specs(section).values())
    revenue_forest = specs[1]
    assert revenue_forest["layout"]["xaxis"]["title"]["text"] == "lift per user (€)"
    assert revenue_forest["layout"]["xaxis"]["tickprefix"] == "€"
    assert "€" in revenue_forest["data"][0]["customdata"][0]
    # money features in the heatmap hover
    heat = next(iter(_figures(_section(demo_html, "heatmap")).values()))[0]
    j = heat["x"].index("monetary")
    assert "segment mean €" in heat["hovertext"][0][j]


def test_contrast_follows_wcag() -> None:
    assert relative_luminance("#ffffff") == pytest.approx(1.0)
    assert relative_luminance("#000000") == pytest.approx(0.0)
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    # WebAIM's reference: #777777 on white is 4.48:1 (just fails AA), #767676 4.54:1
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio("rgb(118, 118, 118)", "#fff") == pytest.approx(4.54, abs=0.01)
    assert text_color("#08306b") == "#ffffff"  # darkest Blues: white text
    assert text_color("#f7fbff") == "#000000"  # lightest Blues: black text
    assert text_color("#777777") == "#000000"  # 4.69 with black beats 4.48 with white
    for grey in range(0, 256, 5):
        bg = f"#{grey:02x}{grey:02x}{grey:02x}"
        assert contrast_ratio(text_color(bg), bg) >= 4.5, bg


def test_text_on_coloured_cells_has_aa_contrast(demo_html: str) -> None:
    from plotly.colors import sample_colorscale

    n_checked = 0
    for sid in ("heatmap", "rfm", "retention"):
        for spec in _specs(_section(demo_html, sid)).values():
            heat = spec["data"][0]
            assert heat["type"] == "heatmap"
            assert "texttemplate" not in heat  # plotly's own colour rule is not WCAG
            z = _array(heat["z"]).astype(float)
            lo, hi = float(heat["zmin"]), float(heat["zmax"])
            scale = [list(x) for x in heat["colorscale"]]
            layers = [t for t in spec["data"][1:] if t.get("name") == CELL_TEXT]
            assert len(layers) == 2
            for layer in layers:
                assert layer["hoverinfo"] == "skip" and layer["textfont"]["size"] >= 11
                assert _array(layer["z"]).shape == z.shape
                for i, row in enumerate(layer["text"]):
                    for j, label in enumerate(row):
                        if not label:
                            continue
                        frac = min(max((z[i, j] - lo) / ((hi - lo) or 1.0), 0.0), 1.0)
                        (bg,) = sample_colorscale(scale, [frac])
                        color = layer["textfont"]["color"]
                        assert contrast_ratio(color, bg) >= 4.5, (sid, label, bg)
                        n_checked += 1
    assert n_checked > 100


# -- language --------------------------------------------------------------------------------


#: Words allowed to stay in Latin letters in a Chinese report: names and ids, not sentences.
PROPER = re.compile(
    r"segmint|RFM|PCA|CUPED|Qini|Welch|BH|Calinski-Harabasz|Davies-Bouldin|IQR|FM|PC\d|"
    r"DecompressionStream|Chrome|Edge|Firefox|Safari|plotly\.js|k|m0|p"
)


def test_a_chinese_report_is_in_chinese(zh_report: ReportResult) -> None:
    html = zh_report.path.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html
    headings = _headings(html)
    assert len(headings) == len(ALL_SECTIONS) + 1
    for h in headings:
        assert re.search(r"[\u4e00-\u9fff]", h), h
        latin = re.findall(r"[A-Za-z][A-Za-z.\-]*", h)
        assert all(PROPER.fullmatch(w) for w in latin), (h, latin)
    assert "附录" in headings and "概览" in headings
    # money in yuan, formatted by CLDR's zh rules
    overview = _section(html, "overview")
    kpi = re.search(r'data-kpi="revenue">.*?<div class="value">([^<]+)</div>', overview)
    assert kpi is not None and kpi.group(1).startswith("¥"), kpi
    assert "€" not in html and "$" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)
    # the lead paragraphs and table headers are translated too
    for lead in re.findall(r'<p class="lead">(.*?)</p>', html, flags=re.S):
        assert re.search(r"[\u4e00-\u9fff]", lead), lead
    for th in re.findall(r"<th[^>]*>(.*?)</th>", html):
        assert th in {"p"} or re.search(r"[\u4e00-\u9fff]", th), th
    # plurals and numbers through Babel
    assert re.search(r"\d+ 位用户", html)
    zh = language("zh-CN")
    assert zh.date(zh_report.as_of.date()) in _header(html)
    # chart text: section-size legend and axis titles
    sizes = next(iter(_specs(_section(html, "segments")).values()))
    assert {t["name"] for t in sizes["data"]} == {"用户占比", "收入占比"}
    assert sizes["layout"]["xaxis"]["title"]["text"] == "占全部的 %"
    # persona sentences and segment names are in Chinese too (names through the catalog)
    personas = _section(html, "personas")
    assert "共有" in personas and " is " not in re.sub(r"<[^>]+>", " ", personas)
    y_labels = [str(y) for t in sizes["data"] for y in t.get("y", [])]
    assert y_labels and all(re.search(r"[\u4e00-\u9fff]", y) for y in y_labels), y_labels


def test_plurals_in_the_report_are_right(demo_html: str) -> None:
    lang = language("en")
    assert lang.n("{n} user", "{n} users", 1) == "1 user"
    # persona cards say "1 user" / "N users"; no "1 users" anywhere
    assert not re.search(r"\b1 users\b", demo_html)
    assert re.search(r"<summary>clusters \(kmeans\) · \d+ segments", demo_html)


def _report_message_ids() -> set[str]:
    """Every English message id the report passes to ``t(...)`` (template and code)."""
    import ast

    root = Path(segmint.report.__file__).parent
    ids: set[str] = set()
    template = (root / "templates" / "report.html.j2").read_text(encoding="utf-8")
    for m in re.finditer(r"""\bt\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", template):
        ids.add(ast.literal_eval(m.group(1)))
    for name in ("_build.py", "_charts.py", "_value.py"):
        for node in ast.walk(ast.parse((root / name).read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "t"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                ids.add(str(node.args[0].value))
    from segmint.report._build import METRIC_WORDS, ROI_WORDS, SECTIONS
    from segmint.report._charts import K_METRICS

    ids |= {t for _, t in SECTIONS} | set(METRIC_WORDS.values()) | set(ROI_WORDS.values())
    ids |= {t for _, t in K_METRICS}
    return ids


def test_every_report_text_has_a_chinese_translation() -> None:
    zh = language("zh-CN")
    ids = _report_message_ids()
    assert len(ids) > 150
    missing = sorted(i for i in ids if zh.t(i) == i)
    assert missing == []
    for singular, plural in [("{n} user", "{n} users"), ("{n} segment", "{n} segments"),
                             ("{n} buyer", "{n} buyers")]:  # fmt: skip
        assert re.fullmatch(r"1 \S+", zh.n(singular, plural, 1)), singular


def test_times_are_shown_in_the_projects_time_zone() -> None:
    from segmint._i18n import language
    from segmint.report._build import _Text

    noon_utc = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    berlin = _Text(language("en"), "EUR", "Europe/Berlin").stamp(noon_utc)
    assert "2:00:00" in berlin and berlin.endswith("CEST"), berlin
    assert _Text(language("en"), "EUR").stamp(noon_utc).endswith("UTC")
