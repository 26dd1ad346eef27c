"""A campaign's results page: the verdict in words with the MDE and the users still
needed, lift per metric with intervals, the per-segment forest plots, SRM, balance, ROI;
the Evaluate button (editors only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.web.conftest import (
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

import segmint

MEASURED = "spring_reactivation_2026"
"""The demo's imported campaign, evaluated over its whole window."""
WAITING = "active_recommendations"
"""A demo campaign evaluated right after its send (no outcome observed yet)."""


def test_the_results_read_like_a_verdict_with_what_the_test_could_detect(ws_demo: Path) -> None:
    with segmint.open_project(ws_demo, read_only=True) as p:
        ev = p.store.query(
            "SELECT result FROM campaign_evaluations WHERE campaign = ? "
            "ORDER BY created_at DESC LIMIT 1",
            [MEASURED],
        )
    assert not ev.empty
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get(f"/campaigns/{MEASURED}/results")
        assert r.status_code == 200
        html = r.text
        verdict = html.split('id="h-verdict"')[1].split("</section>")[0]
        assert any(w in verdict for w in ("Win:", "Loss:", "Inconclusive:"))
        assert "Minimum detectable effect:" in verdict and "pts" in verdict
        assert "each group needs" in verdict
        assert "Lift per metric" in html and "Newcombe interval" in html
        assert html.count('<figure class="chart">') == 2  # conversion and revenue by segment
        assert (
            "Conversion lift (percentage points)" in html and "Revenue per user lift (EUR)" in html
        )
        assert "Group sizes (sample ratio)" in html and "Balance before the send" in html
        assert "incremental revenue" in html and "€" in html  # ROI with its currency
        assert "/evaluate" not in html  # a viewer cannot measure
        zh = c.get(f"/campaigns/{MEASURED}/results?lang=zh-CN").text
        assert "最小可检测效应" in zh and "样本比例" in zh


def test_a_campaign_without_outcomes_yet_shows_only_the_design_checks(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        html = c.get(f"/campaigns/{WAITING}/results").text
        assert "Waiting for outcomes" in html
        assert "Lift per metric" not in html and "Group sizes (sample ratio)" in html
        assert c.get("/campaigns/nope/results").status_code == 404


def test_evaluate_measures_and_stores_a_campaign(ws_project: Path) -> None:
    with served_ws(ws_project) as s:
        r = httpx.post(f"{s.url}/campaigns/winback_at_risk/evaluate", data={"csrf_token": "x"})
        assert r.status_code == 401
        with sign_in(s.url, "vic") as c:
            r = c.post("/campaigns/winback_at_risk/evaluate", data={"csrf_token": c.csrf})
            assert r.status_code == 403
        with sign_in(s.url, "ana") as c:
            assert c.post("/campaigns/winback_at_risk/evaluate", data={}).status_code == 403
            before = c.get("/campaigns/winback_at_risk/results").text
            assert "Not measured yet" in before and "Measure now" in before
            r = c.post("/campaigns/winback_at_risk/evaluate", data={"csrf_token": c.csrf})
            assert r.status_code == 303
            assert r.headers["location"] == "/campaigns/winback_at_risk/results"
            assert "Verdict" in c.get(r.headers["location"]).text
    with segmint.open_project(ws_project, read_only=True) as p:
        assert p.store.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'campaign.evaluate' AND actor = 'ana'"
        )


def test_the_results_page_reads_on_a_desktop_and_a_phone(
    ws_demo: Path, browser: Any, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for width, device in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "vic", width=width, locale=locale)
                code = "zh-CN" if lang == "zh" else "en"
                page.goto(f"{s.url}/campaigns/{MEASURED}/results?lang={code}")
                assert page.locator("figure.chart svg").count() == 2
                assert no_horizontal_scroll(page), (device, lang)
                page.screenshot(
                    path=str(shots / f"campaign-results-{device}-{lang}.png"), full_page=True
                )
                assert page.problems == []
                page.close()
