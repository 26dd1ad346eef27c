"""The HTML report on a small demo: sections, stated as-of and runs, offline, size, notes.

The figures are read back from the file itself (the JSON passed to ``Plotly.newPlot``), so
the tests check what a browser would draw, against numbers computed here from the runs.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

import segmint
import segmint.report
from segmint.demo import generate_demo
from segmint.errors import NotFoundError
from segmint.report import ReportResult, build_report
from segmint.segments import RFM_GRID

ALL_SECTIONS = [
    "overview",
    "quality",
    "segments",
    "heatmap",
    "personas",
    "rfm",
    "projection",
    "kselection",
    "rules",
    "migration",
    "campaigns",
    "retention",
]
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


def _figures(html: str) -> dict[str, list[dict[str, Any]]]:
    """div id -> the traces passed to Plotly.newPlot."""
    out: dict[str, list[dict[str, Any]]] = {}
    decoder = json.JSONDecoder()
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', html):
        traces, _ = decoder.raw_decode(html, m.end())
        out[m.group(1)] = traces
    return out


def _header(html: str) -> str:
    return html[html.index("<header") : html.index("</header>")]


# -- tests ----------------------------------------------------------------------------------


def test_public_surface() -> None:
    assert segmint.report.__all__ == ["ReportResult", "build_report"]


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
    assert f"Data as of <strong>{demo_report.as_of:%Y-%m-%d}</strong>" in header
    for run_id in demo_report.run_ids:
        assert f"<code>{run_id}</code>" in header
    meta = re.search(r'<meta name="segmint-runs" content="([^"]*)">', demo_html)
    assert meta is not None and meta.group(1).split() == demo_report.run_ids


def test_opens_offline_with_plotly_js_embedded_once(demo_html: str) -> None:
    js = get_plotlyjs()
    assert demo_html.count(js) == 1
    rest = demo_html.replace(js, "")
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
    assert demo_report.size_bytes < 10 * MB
    # everything but the library is aggregated: well under a megabyte at 2,000 users
    assert demo_report.size_bytes - len(get_plotlyjs().encode()) < 1 * MB


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
    (grid,) = traces
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
    (heat,) = traces
    assert heat["y"] == [p.segment for p in ps]
    assert heat["x"] == list(ps[0].features.index)
    j = heat["x"].index("monetary")
    assert heat["text"][0][j] == f"{ps[0].features.at['monetary', 'ratio']:.2g}"


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
        "overview", "quality", "segments", "heatmap", "personas", "campaigns", "retention",
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
    assert res.sections == ["overview", "quality", "retention"]  # orders give cohorts
    html = res.path.read_text(encoding="utf-8")
    assert "No segmentation runs shown." in html
    assert f'<div class="value">{n_users:,}</div>' in _section(html, "overview")
    assert html.count('class="note"') == len(ALL_SECTIONS) - 3
    assert "No campaign evaluated yet" in _section(html, "campaigns")
    assert html.count(get_plotlyjs()) == 1  # the retention heatmap needs it, once


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
