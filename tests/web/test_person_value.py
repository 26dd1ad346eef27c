"""The person page's "Customer value" block: CLV with its interval, P(alive), expected
purchases and order value, churn risk and the runs they come from, in English and
Chinese; a person who never bought is not scored; no run, a line saying how to make one;
on a 390 px phone the block fits the screen."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
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


def test_without_a_run_the_block_says_how_to_make_one(ws_project: Path) -> None:
    with segmint.open_project(ws_project) as p:
        p.store.execute("DELETE FROM predictions")
        p.store.execute("DELETE FROM predict_runs")
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        block = _block(c.get("/people/C000010").text)
    assert "No prediction run yet" in block and "segmint predict clv" in block
    assert "data-field" not in block


def test_the_value_block_fits_a_phone(valued: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    out = screenshot_dir(tmp_path)
    with served_ws(valued["root"]) as s:
        for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
            page = open_page(browser, s.url, "ana", width=390, locale=locale)
            page.goto(f"{s.url}/people/{valued['buyer']}")
            page.wait_for_selector("#value dd[data-field=clv]")
            assert no_horizontal_scroll(page), lang
            right = page.evaluate(
                "Math.max(...[...document.querySelectorAll('#value *')]"
                ".map(e => e.getBoundingClientRect().right))"
            )
            assert right <= 390, (lang, right)
            page.locator("#value").screenshot(path=str(out / f"person-value-phone-{lang}.png"))
            assert page.problems == [], page.problems
            page.context.close()
