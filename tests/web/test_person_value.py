"""The person page's "Customer value" block: CLV with its interval, P(alive), expected
purchases and order value, churn risk, its rise or fall since the previous churn run and
the runs they come from, in English and Chinese; a person who never bought is not scored;
no run, a line saying how to make one; on a 390 px phone the block fits the screen."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from tests.value_runs import add_previous_churn
from tests.web.conftest import no_horizontal_scroll, open_page, screenshot_dir, served_ws, sign_in

import segmint
from segmint._i18n import language
from segmint.predict import predict_churn, predict_clv


def _block(page: str) -> str:
    start = page.index('<section class="card" id="value"')
    return html.unescape(page[start : page.index("</section>", start)])


def _field(block: str, name: str) -> str:
    m = re.search(rf'<dd data-field="{name}"[^>]*>(.*?)</dd>', block, re.S)
    assert m is not None, name
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1))).strip()


@pytest.fixture(scope="module")
def valued(tmp_path_factory: pytest.TempPathFactory, ws_demo: Path) -> dict[str, Any]:
    """A copy of the workspace demo with a CLV run and a churn run."""
    from tests.web.conftest import copy_demo

    root = copy_demo(ws_demo, tmp_path_factory.mktemp("valued") / "demo")
    with segmint.open_project(root) as p:
        p.store.execute("DELETE FROM predictions")
        p.store.execute("DELETE FROM predict_runs")
        clv = predict_clv(p.store, p.config.predict)
        churn = predict_churn(p.store, p.config.predict)
        users = p.store.query("SELECT user_id FROM users ORDER BY user_id")["user_id"]
    scored = set(clv.scores["user_id"])
    return {
        "root": root,
        "clv": clv,
        "churn": churn,
        "buyer": next(u for u in users if u in scored),
        "never": next(u for u in users if u not in scored),
    }


@pytest.fixture(scope="module")
def rising(tmp_path_factory: pytest.TempPathFactory, valued: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``valued`` with a churn run a month earlier: the customer with the highest
    CLV among those now at high risk was 12.3 points lower then, another one 5 points
    higher, a third one was not in it."""
    from tests.web.conftest import copy_demo

    root = copy_demo(valued["root"], tmp_path_factory.mktemp("rising") / "demo")
    risk = valued["churn"].scores.set_index("user_id")["churn_risk"].astype(float)
    clv = valued["clv"].scores.set_index("user_id")["clv"].astype(float)
    high = clv.reindex(risk[risk.between(0.5, 0.85)].index).dropna().sort_values()
    up = str(high.index[-1])
    down, new = (str(u) for u in risk[risk.between(0.2, 0.45)].index[:2])
    before = (risk - 0.123).drop(new)
    before[down] = risk[down] + 0.05
    with segmint.open_project(root) as p:
        older = add_previous_churn(p, valued["churn"], before)
    return {"root": root, "older": older, "before": before, "up": up, "down": down, "new": new}


def test_the_value_block_shows_the_persons_predictions(valued: dict[str, Any]) -> None:
    clv = valued["clv"].scores.set_index("user_id").loc[valued["buyer"]]
    risk = float(valued["churn"].scores.set_index("user_id").loc[valued["buyer"], "churn_risk"])
    with served_ws(valued["root"]) as s, sign_in(s.url, "vic") as c:
        en = _block(c.get(f"/people/{valued['buyer']}").text)
        zh = _block(c.get(f"/people/{valued['buyer']}", headers={"Accept-Language": "zh-CN"}).text)
        never = _block(c.get(f"/people/{valued['never']}").text)
    lang = language("en")
    assert "Customer value" in en and "Customer lifetime value, next 365 days" in en
    assert _field(en, "clv") == (
        f"{lang.money(clv['clv'], 'EUR')} (90% interval: {lang.money(clv['clv_low'], 'EUR')} "
        f"to {lang.money(clv['clv_high'], 'EUR')})"
    )
    assert _field(en, "p_alive") == lang.percent(clv["p_alive"])
    assert _field(en, "expected_purchases") == lang.number(clv["expected_purchases"])
    assert _field(en, "expected_order_value") == lang.money(clv["expected_order_value"], "EUR")
    assert _field(en, "churn_risk").startswith(lang.percent(risk))
    assert ("high" in _field(en, "churn_risk")) == (risk >= 0.5)
    assert valued["clv"].run_id in en and valued["churn"].run_id in en
    assert re.search(r"orders before \d{4}-\d\d-\d\d\. Churn run", en)
    assert "客户价值" in zh and "客户终身价值（未来 365 天）" in zh and "流失风险" in zh
    assert "Customer" not in zh
    assert _field(never, "clv").startswith("Not predicted: no completed order before")
    assert "p_alive" not in never and _field(never, "churn_risk") == "not scored"
    # one churn run only: no change to show
    assert "churn_risk_change" not in en and "since" not in en and "previous" not in en


def test_the_value_block_shows_the_rise_or_fall_since_the_previous_churn_run(
    rising: dict[str, Any],
) -> None:
    """The rise behind a "high CLV and rising churn risk" segment, on the person page: up
    in a warning badge, down in plain text, each with the risk then; nothing for a person
    the previous churn run did not score."""
    older, before = rising["older"], rising["before"]
    since = str(older.as_of)[:10]
    en_lang = language("en")
    with served_ws(rising["root"]) as s, sign_in(s.url, "vic") as c:
        raw = c.get(f"/people/{rising['up']}").text
        up = _block(raw)
        zh = _block(c.get(f"/people/{rising['up']}", headers={"Accept-Language": "zh-CN"}).text)
        down_raw = c.get(f"/people/{rising['down']}").text
        new = _block(c.get(f"/people/{rising['new']}").text)
    was = en_lang.percent(float(before[rising["up"]]))
    assert f"Churn risk change since {since}" in up
    assert _field(up, "churn_risk_change") == f"▲ up 12.3 pts, from {was}"
    assert re.search(r'data-field="churn_risk_change"><span class="badge warn rise">', raw)
    assert f"Change against the previous churn run {older.run_id}, as of {since}." in up
    was = en_lang.percent(float(before[rising["down"]]))
    assert _field(_block(down_raw), "churn_risk_change") == f"▼ down 5 pts, from {was}"
    assert "badge warn" not in _block(down_raw).split('data-field="churn_risk_change"')[1]
    assert _field(new, "churn_risk") != "not scored"  # scored now, not in the earlier run
    assert "churn_risk_change" not in new and older.run_id not in new
    assert f"自 {since} 以来的流失风险变化" in zh
    assert _field(zh, "churn_risk_change").startswith("▲ 上升 12.3 个百分点，之前为 ")
    assert older.run_id in zh and "Change" not in zh


def test_without_a_run_the_block_says_how_to_make_one(ws_project: Path) -> None:
    with segmint.open_project(ws_project) as p:
        p.store.execute("DELETE FROM predictions")
        p.store.execute("DELETE FROM predict_runs")
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        block = _block(c.get("/people/C000010").text)
    assert "No prediction run yet" in block and "segmint predict clv" in block
    assert "data-field" not in block


def test_the_value_block_fits_a_phone(rising: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """With a rising churn risk (the longest block): it fits 390 px, the rise in the
    warning colour."""
    out = screenshot_dir(tmp_path)
    with served_ws(rising["root"]) as s:
        for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
            page = open_page(browser, s.url, "ana", width=390, locale=locale)
            page.goto(f"{s.url}/people/{rising['up']}")
            page.wait_for_selector("#value dd[data-field=churn_risk_change] .rise")
            assert no_horizontal_scroll(page), lang
            colour = page.evaluate("getComputedStyle(document.querySelector('#value .rise')).color")
            assert colour == "rgb(92, 67, 0)", colour  # the warning badge's ink
            right = page.evaluate(
                "Math.max(...[...document.querySelectorAll('#value *')]"
                ".map(e => e.getBoundingClientRect().right))"
            )
            assert right <= 390, (lang, right)
            page.locator("#value").screenshot(path=str(out / f"person-value-phone-{lang}.png"))
            assert page.problems == [], page.problems
            page.context.close()
