"""The report's "Customer value" section: absent without a prediction run, the CLV part
(parameters with intervals, the holdout chart as in Fader-Hardie-Lee figure 4, CLV by
segment) with a CLV run, the churn part (AUC table, calibration chart) with a churn run;
every figure read back from the file and compared with the stored runs. Then in Chromium
at 390 px and on a desktop: the holdout chart is drawn and its screenshots are saved
(``docs/img/report-holdout*.png`` are copies of them)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.report.test_report import _array, _section, _specs
from tests.value_runs import build_demo

import segmint
from segmint._i18n import language
from segmint.predict import PredictionRun, predict_churn, predict_clv
from segmint.report import ReportResult, build_report

ROOT = Path(__file__).resolve().parents[2]
DOCS = {"desktop": ROOT / "docs/img/report-holdout.png",
        "phone": ROOT / "docs/img/report-holdout-phone.png"}  # fmt: skip
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
#: The segmentation shown (the section's "by segment" part follows the first one)
RUNS = ["rfm"]


class Reports:
    """One demo project and its reports: before any prediction run, with a CLV run, with
    a CLV and a churn run (English), and the last one in Chinese."""

    def __init__(self) -> None:
        self.p: segmint.Project
        self.none: ReportResult
        self.clv_only: ReportResult
        self.both: ReportResult
        self.zh: ReportResult
        self.clv: PredictionRun
        self.churn: PredictionRun


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    root = tmp_path_factory.mktemp("value-report")
    out = tmp_path_factory.mktemp("value-reports")
    r = Reports()
    r.p = build_demo(root / "shop", n_users=3_000, seed=8, segmentations=["rfm", "lifecycle"])
    r.none = build_report(r.p, out / "none.html", runs=RUNS)
    r.clv = predict_clv(r.p.store, r.p.config.predict)
    r.clv_only = build_report(r.p, out / "clv.html", runs=RUNS)
    r.churn = predict_churn(r.p.store, r.p.config.predict)
    r.both = build_report(r.p, out / "both.html", runs=RUNS)
    r.p.close()
    zh_root = root / "shop-zh"
    shutil.copytree(root / "shop", zh_root, ignore=shutil.ignore_patterns("*.wal"))
    config = zh_root / "segmint.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("currency: EUR\n", "currency: CNY\nlocale: zh-CN\n"))
    with segmint.open_project(zh_root) as zh:
        r.zh = build_report(zh, out / "zh.html", runs=RUNS)
    r.p = segmint.open_project(root / "shop", read_only=True)
    yield r
    r.p.close()


def _html(result: ReportResult) -> str:
    return Path(result.path).read_text(encoding="utf-8")


def _table(html: str, name: str) -> list[list[str]]:
    body = re.search(rf'<table class="data" data-table="{name}">(.*?)</table>', html, re.S)
    assert body is not None, name
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1).split("<tbody>")[1], re.S)
    return [[unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]  # fmt: skip


# -- no run, no section -------------------------------------------------------------------
def test_no_prediction_run_no_section(reports: Reports) -> None:
    html = _html(reports.none)
    assert "value" not in reports.none.sections
    assert '<section id="value"' not in html and 'href="#value"' not in html
    assert "Customer value" not in html


def test_the_section_comes_after_the_personas(reports: Reports) -> None:
    assert reports.clv_only.sections == [*reports.none.sections[:3], "value",
                                         *reports.none.sections[3:]]  # fmt: skip
    html = _html(reports.clv_only)
    assert html.index('<section id="personas"') < html.index('<section id="value"')
    assert html.index('<section id="value"') < html.index('<section id="heatmap"')


# -- the CLV part --------------------------------------------------------------------------
def test_holdout_chart_draws_the_stored_holdout_table(reports: Reports) -> None:
    section = _section(_html(reports.clv_only), "value")
    rows = reports.clv.details["holdout"]["by_calibration_purchases"]
    assert [r["purchases"] for r in rows] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    chart = re.search(r'<div class="figure" id="holdout-chart">(.*?)</script>', section, re.S)
    assert chart is not None
    (spec,) = _specs(chart.group(1) + "</script>").values()
    traces = {t["name"]: t for t in spec["data"]}
    assert set(traces) == {"actual", "predicted"}
    for name, trace in traces.items():
        assert list(trace["x"]) == [r["purchases"] for r in rows]
        np.testing.assert_allclose(_array(trace["y"]), [r[name] for r in rows])
    assert spec["layout"]["xaxis"]["title"]["text"] == "repeat purchases in the calibration period"
    assert spec["layout"]["meta"]["phone"]["height"] == 320
    table = _table(section, "holdout")
    assert [r[0] for r in table] == [r["purchases"] for r in rows]
    assert [int(r[1].replace(",", "")) for r in table] == [r["n"] for r in rows]
    h = reports.clv.details["holdout"]
    assert f"{h['total_predicted']:,.0f} purchases predicted, {h['total_actual']:,.0f} made" in (
        section
    )


def test_holdout_value_chart_draws_the_stored_revenue_check(reports: Reports) -> None:
    """The revenue side of the holdout check: ten groups by predicted revenue, the chart's
    lines and the table are the stored figures, the caption its totals."""
    section = _section(_html(reports.clv_only), "value")
    v = reports.clv.details["holdout"]["value"]
    rows = v["by_predicted_decile"]
    assert [r["group"] for r in rows] == list(range(1, 11))
    chart = re.search(r'<div class="figure" id="holdout-value-chart">(.*?)</script>', section, re.S)
    assert chart is not None
    (spec,) = _specs(chart.group(1) + "</script>").values()
    traces = {t["name"]: t for t in spec["data"]}
    for name, trace in traces.items():
        assert list(trace["x"]) == [str(r["group"]) for r in rows]
        np.testing.assert_allclose(_array(trace["y"]), [r[name] for r in rows])
    assert spec["layout"]["yaxis"]["title"]["text"] == "mean revenue (€)"
    table = _table(section, "holdout-value")
    assert [r[0] for r in table] == [str(g) for g in range(10, 0, -1)]  # the top tenth first
    en = language("en")
    assert [r[2] for r in table] == [en.money(r["actual"], "EUR") for r in reversed(rows)]
    assert (
        f"{en.money(v['total_predicted'], 'EUR')} predicted, "
        f"{en.money(v['total_actual'], 'EUR')} made" in unescape(section)
    )
    assert f"ranked highest made {en.percent(v['top_group_share'], 0)} of it" in section


def test_parameters_table_has_estimates_with_intervals(reports: Reports) -> None:
    section = _section(_html(reports.clv_only), "value")
    en = language("en")
    table = {(r[0], r[1]): r for r in _table(section, "parameters")}
    for model, key in (("BG/NBD", "purchase_fit"), ("Gamma-Gamma", "spend_fit")):
        fit = reports.clv.metrics[key]
        for param, value in fit["params"].items():
            row = table[(model, param)]
            lo, hi = fit["intervals"][param]
            assert row[2] == en.number(value, 4)
            assert row[3] == en.number(fit["std_errors"][param], 4)
            assert row[4] == f"{en.number(lo, 4)} – {en.number(hi, 4)}"
            assert lo < value < hi
    assert len(table) == 7  # r, alpha, a, b; p, q, v


def test_clv_by_segment_boxes_are_the_segments_quantiles(reports: Reports) -> None:
    section = _section(_html(reports.clv_only), "value")
    run = reports.p.segment_run("rfm")  # the report's first segmentation
    assert f'<span class="run">{run.run_id}</span>' in section
    m = run.assignments[["user_id", "segment"]].merge(reports.clv.scores, on="user_id")
    boxes = [t for spec in _specs(section).values() for t in spec["data"] if t["type"] == "box"]
    assert {b["name"] for b in boxes} == set(m["segment"])  # English names are the stored ones
    for b in boxes:
        clv = m.loc[m["segment"] == b["name"], "clv"]
        for key, q in (("lowerfence", 0.05), ("q1", 0.25), ("median", 0.5), ("q3", 0.75),
                       ("upperfence", 0.95)):  # fmt: skip
            assert _array(b[key])[0] == pytest.approx(clv.quantile(q)), (b["name"], key)
        assert _array(b["mean"])[0] == pytest.approx(clv.mean())
    en = language("en")
    rows = {r[0]: r for r in _table(section, "value-by-segment")}
    total = m["clv"].sum()
    for segment, g in m.groupby("segment"):
        assert rows[segment][2] == en.money(g["clv"].median(), "EUR")
        assert rows[segment][5] == en.percent(g["clv"].sum() / total, 0)
        assert rows[segment][7] == "–"  # no churn run yet


def test_no_churn_part_without_a_churn_run(reports: Reports) -> None:
    section = _section(_html(reports.clv_only), "value")
    assert 'id="churn"' not in section and 'data-kpi="churn_high"' not in section


# -- the churn part ------------------------------------------------------------------------
def test_churn_part_shows_auc_against_the_baseline_and_calibration(reports: Reports) -> None:
    section = _section(_html(reports.both), "value")
    en = language("en")

    def num(x: float) -> str:
        return en.number(x, 4)

    rows = reports.churn.details["auc_table"]
    assert [r["model"] for r in rows][:2] == ["gradient boosting", "BG/NBD 1 − P(alive)"]
    # the holdout is said once, above the table (not repeated in a column of every row)
    assert _table(section, "auc") == [
        [r["model"], num(r["auc"]), f"{num(r['low'])} – {num(r['high'])}", num(r["brier"])]
        for r in rows
    ]
    m = reports.churn.metrics
    holdout = en.date(pd.Timestamp(m["cutoffs"]["holdout"]).date())
    assert (
        f"On the holdout: {en.integer(m['n_holdout'])} customers at {holdout}, "
        f"{en.percent(m['base_rate'], 0)} of whom made no completed order in the 90 days after."
    ) in unescape(section)
    auc = reports.churn.metrics["auc"]
    said = (
        f"an AUC of {en.number(auc['model'], 3)} (95% CI {en.number(auc['model_low'], 3)} to "
        f"{en.number(auc['model_high'], 3)}); BG/NBD's P(alive) alone reaches "
        f"{en.number(auc['baseline_p_alive'], 3)}, its probability of no purchase in 90 days "
        f"{en.number(auc['baseline_no_purchase'], 3)}."
    )
    assert said in unescape(section)
    assert auc["model_low"] < auc["model"] < auc["model_high"]
    chart = re.search(r'id="calibration-chart">(.*?)</script>', section, re.S)
    assert chart is not None
    (spec,) = _specs(chart.group(1) + "</script>").values()
    model = next(t for t in spec["data"] if t["name"] == "churn model")
    bins = reports.churn.details["calibration"]
    np.testing.assert_allclose(_array(model["x"]), [100 * b["predicted"] for b in bins])
    np.testing.assert_allclose(_array(model["y"]), [100 * b["observed"] for b in bins])
    risk = reports.churn.scores["churn_risk"]
    kpi = re.search(r'data-kpi="churn_high">.*?<div class="value">([^<]+)<', section, re.S)
    assert kpi is not None and kpi.group(1) == language("en").percent((risk >= 0.5).mean(), 0)
    rows = {r[0]: r for r in _table(section, "value-by-segment")}
    members = reports.p.segment_run("rfm").assignments.merge(reports.churn.scores, on="user_id")
    for segment, g in members.groupby("segment"):
        assert rows[segment][7] == en.percent((g["churn_risk"] >= 0.5).mean(), 0)
    assert rows["No Purchase"][7] == "–"  # nobody in it was scored


def test_the_chinese_section_is_in_chinese(reports: Reports) -> None:
    html = _html(reports.zh)
    section = _section(html, "value")
    assert "<h2>客户价值</h2>" in section
    for th in re.findall(r"<th[^>]*>(.*?)</th>", section):
        assert re.search(r"[\u4e00-\u9fff]", th), th
    text = unescape(re.sub(r"<script.*?</script>|<[^>]+>", " ", section, flags=re.S))
    text = re.sub(r"\b[ps]-\d{8}T\d{6}-\w+-[0-9a-f]{6}\b", " ", text)  # run ids
    assert "€" not in text and "¥" in text
    words = set(re.findall(r"[A-Za-z][A-Za-z]+", text)) - {
        "BG", "NBD", "Gamma", "CLV", "AUC", "Brier", "Fader", "Hardie", "Lee", "P", "alive",
        "alpha", "clv", "churn", "rfm",
    }  # fmt: skip
    assert words == set(), words
    holdout = next(iter(_specs(section).values()))
    assert {t["name"] for t in holdout["data"]} == {"实际", "预测"}


# -- in Chromium ---------------------------------------------------------------------------


#: The holdout chart as drawn: its size, the points of each line, tick labels' boxes
#: against the chart's, the smallest font.
HOLDOUT_JS = """(sel) => {
    const d = document.querySelector(sel + ' .plotly-graph-div');
    const svg = d.querySelector('.main-svg').getBoundingClientRect();
    const box = d.getBoundingClientRect();
    const texts = [...d.querySelectorAll('svg text')].filter(t => t.textContent.trim());
    return {
        width: box.width, height: box.height,
        points: [...d.querySelectorAll('.scatterlayer .trace')].map(
            t => t.querySelectorAll('.point').length),
        clipped: [...d.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')]
            .map(t => t.getBoundingClientRect())
            .filter(b => b.left < svg.left - 1 || b.right > svg.right + 1 ||
                         b.top < svg.top - 1 || b.bottom > svg.bottom + 1).length,
        smallest: Math.min(...texts.map(t => parseFloat(getComputedStyle(t).fontSize))),
    };
}"""

#: Elements of the value section wider than the screen, outside a scrolling table wrapper.
OVERFLOW_JS = """() => [...document.querySelectorAll('#value *:not(svg *), #value svg.main-svg')]
    .filter(e => !e.closest('.scroll') && e.getClientRects().length)
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .map(e => e.tagName + '.' + (e.getAttribute('class') || ''))"""


@pytest.mark.parametrize("screen", ["phone", "desktop"])
def test_holdout_chart_renders_and_is_saved_as_png(
    browser: Any, reports: Reports, tmp_path: Path, screen: str
) -> None:
    viewport = PHONE if screen == "phone" else DESKTOP
    errors: list[str] = []
    page = browser.new_page(viewport=viewport, device_scale_factor=1)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(reports.both.path).resolve().as_uri(), wait_until="load")
    page.wait_for_function("() => document.documentElement.dataset.charts", timeout=60_000)
    assert page.evaluate("document.documentElement.dataset.charts") == "drawn"
    drawn = page.evaluate(HOLDOUT_JS, "#holdout-chart")
    assert drawn["points"] == [8, 8], drawn  # actual and predicted, 0 ... 7+
    assert drawn["clipped"] == 0 and drawn["smallest"] >= 11, drawn
    assert drawn["height"] == (320 if screen == "phone" else 360), drawn
    value = page.evaluate(HOLDOUT_JS, "#holdout-value-chart")
    assert value["points"] == [10, 10], value  # actual and predicted, tenths 1 ... 10
    assert value["clipped"] == 0 and value["smallest"] >= 11, value
    assert value["width"] == drawn["width"] and value["height"] == drawn["height"], value
    if screen == "phone":
        assert drawn["width"] <= PHONE["width"] - 20, drawn
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.evaluate(OVERFLOW_JS) == []
    else:
        assert drawn["width"] > 900, drawn
    # the sticky menu bar would cover the top of an element scrolled under it
    page.add_style_tag(content="nav.toc { position: static; }")
    shot = tmp_path / f"report-holdout-{screen}.png"
    page.locator("#holdout-chart").screenshot(path=str(shot))
    section = tmp_path / f"report-value-{screen}.png"
    page.locator("#value").screenshot(path=str(section))
    page.close()
    print(f"\nholdout chart ({screen}): {shot}\nvalue section ({screen}): {section}")
    assert errors == []
    with Image.open(shot) as im:
        size = im.size
        assert abs(im.height - drawn["height"]) <= 2 and abs(im.width - drawn["width"]) <= 2
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16) or []
        assert len(colours) > 50  # lines, markers, text: not a blank box
        blue = sum(n for n, (r, g, b) in colours if b > 140 and r < 110)  # the actual line
        orange = sum(n for n, (r, g, b) in colours if r > 220 and 120 < g < 170 and b < 80)
        assert blue > 100 and orange > 100, (blue, orange)
    print(f"(copy {shot} to {DOCS[screen]} after a layout change)")
    with Image.open(DOCS[screen]) as kept:  # copies of these screenshots for the docs
        assert kept.size == size


def test_the_chinese_section_reads_on_a_phone(browser: Any, reports: Reports) -> None:
    """Chinese wraps between any two characters: without a floor, the tables' segment
    column shrank to one character a line (忠/诚/客/户) so that the numbers fit."""
    page = browser.new_page(viewport=PHONE, device_scale_factor=1)
    page.goto(Path(reports.zh.path).resolve().as_uri(), wait_until="load")
    widths = page.evaluate(
        """() => [...document.querySelectorAll('#value table[data-table="value-by-segment"] td:first-child')]
        .map(td => [td.textContent.trim(), td.getBoundingClientRect().width])"""
    )
    page.close()
    assert len(widths) > 5
    narrow = [(name, w) for name, w in widths if w < 80]  # under five characters
    assert narrow == [], narrow
