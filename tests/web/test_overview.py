"""The Overview: KPIs of a period against the one before (agreeing with the features'
definitions), what arrives through the tracking API shown live, data-quality alerts."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.web.conftest import no_horizontal_scroll, open_page, screenshot_dir, served_ws, sign_in

import segmint
from segmint.web._overview import Kpi, choose_period, read_alerts, read_kpis

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def test_the_period_ends_now_when_recent_orders_exist() -> None:
    period = choose_period(30, NOW - timedelta(days=2), NOW)
    assert period.end == NOW and period.as_of is None
    assert period.start == NOW - timedelta(days=30)
    assert period.previous_start == NOW - timedelta(days=60)


def test_historical_data_ends_the_period_at_the_last_order_and_says_as_of() -> None:
    last = datetime(2026, 10, 31, 22, 24, tzinfo=UTC)
    period = choose_period(7, last, NOW)
    assert period.as_of == last.date()
    assert period.end == datetime(2026, 11, 1, tzinfo=UTC)  # the whole last day counts
    assert period.last_day == last.date()
    assert period.first_day == datetime(2026, 10, 25).date()
    assert period.previous_start == datetime(2026, 10, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "current", "previous", "change", "direction"),
    [
        ("count", 110, 100, 0.10, "up"),
        ("money", 90.0, 100.0, -0.10, "down"),
        ("count", 1001, 1000, 0.001, "flat"),
        ("count", 5, 0, None, "none"),
        ("rate", 0.52, 0.50, 0.02, "up"),  # percentage points, not a relative change
        ("rate", 0.5004, 0.5, 0.0004, "flat"),
    ],
)
def test_a_kpi_change_is_relative_for_amounts_and_in_points_for_rates(
    kind: str, current: float, previous: float, change: float | None, direction: str
) -> None:
    kpi = Kpi("x", "X", kind, current, previous)
    assert kpi.change == (None if change is None else pytest.approx(change))
    assert kpi.direction == direction


def _by_hand(root: Path, start: datetime, end: datetime, prev: datetime) -> dict[str, Any]:
    with segmint.open_project(root, read_only=True) as p:
        orders = p.store.query("SELECT user_id, ts, amount, status FROM orders")
        events = p.store.query("SELECT user_id, ts FROM events")
    done = orders[orders.status == "completed"]
    cur = done[(done.ts >= start) & (done.ts < end)]
    before = done[(done.ts >= prev) & (done.ts < start)]
    to_end = done[done.ts < end].groupby("user_id").size()
    buyers = cur.user_id.dropna().unique()
    seen = pd.concat([events, orders[["user_id", "ts"]]]).dropna()
    return {
        "users": seen[(seen.ts >= start) & (seen.ts < end)].user_id.nunique(),
        "buyers": len(buyers),
        "revenue": cur.amount.sum(),
        "aov": cur.amount.mean(),
        "repeat": float((to_end[buyers] >= 2).mean()),
        "revenue_prev": before.amount.sum(),
        "buyers_prev": before.user_id.dropna().nunique(),
    }


def test_the_kpis_agree_with_a_count_by_hand(ws_demo: Path) -> None:
    from segmint.web._overview import latest_order

    with segmint.open_project(ws_demo, read_only=True) as p:
        period = choose_period(30, latest_order(p.store), datetime.now(UTC))
        kpis = {k.key: k for k in read_kpis(p.store, period)}
    hand = _by_hand(ws_demo, period.start, period.end, period.previous_start)
    assert kpis["users"].current == hand["users"]
    assert kpis["buyers"].current == hand["buyers"] and hand["buyers"] > 10
    assert kpis["buyers"].previous == hand["buyers_prev"]
    assert kpis["revenue"].current == pytest.approx(hand["revenue"])
    assert kpis["revenue"].previous == pytest.approx(hand["revenue_prev"])
    assert kpis["aov"].current == pytest.approx(hand["aov"])
    assert kpis["repeat"].current == pytest.approx(hand["repeat"])


def test_revenue_is_what_the_features_call_spend(ws_project: Path) -> None:
    """The 30-day revenue is the sum of every user's ``spend_30d`` as of the period's end
    (completed orders only, as the rest of the product counts them)."""
    from segmint.web._overview import latest_order

    with segmint.open_project(ws_project) as p:
        period = choose_period(30, latest_order(p.store), datetime.now(UTC))
        kpis = {k.key: k for k in read_kpis(p.store, period)}
        run = p.compute_features(as_of=period.end)
        spend = p.features(run.run_id)["spend_30d"].fillna(0).sum()
    assert kpis["revenue"].current == pytest.approx(spend)


def test_the_page_shows_the_period_the_kpis_and_their_change(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get("/?days=7")
        assert r.status_code == 200
        html = r.text
        assert 'aria-current="page">7 days' in html
        assert "As of" in html  # the demo's orders are history
        for key in ("users", "buyers", "revenue", "aov", "repeat"):
            assert f'id="kpi-{key}"' in html
        assert re.search(r'class="delta (up|down|flat)"', html)
        assert "€" in html and " pp</span>" in html
        assert 'data-live="/overview/live"' in html
        assert c.get("/?days=13").status_code == 200  # an unknown period: the default
        assert 'aria-current="page">30 days' in c.get("/?days=13").text
        zh = c.get("/?lang=zh-CN").text
        assert "活跃用户" in zh and "复购率" in zh


def test_the_live_part_answers_alone_and_needs_a_session(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        anon = httpx.get(s.url + "/overview/live", headers={"X-Requested-With": "fragment"})
        assert anon.status_code == 401
        assert httpx.get(s.url + "/", follow_redirects=False).status_code == 303
        with sign_in(s.url, "vic") as c:
            r = c.get("/overview/live", headers={"X-Requested-With": "fragment"})
            assert r.status_code == 200
            assert 'id="events-recent"' in r.text and "<html" not in r.text
            assert 'id="last-loads"' in r.text


def test_alerts_name_what_is_wrong_and_link_to_the_page_that_explains(ws_project: Path) -> None:
    now = datetime.now(UTC)
    with segmint.open_project(ws_project) as p:
        store = p.store
        store.execute(
            "INSERT INTO job_runs (job, slot, started_at, finished_at, status, trigger, error) "
            "VALUES ('nightly', ?, ?, ?, 'failed', 'schedule', 'boom')",
            [now - timedelta(hours=2), now - timedelta(hours=2), now - timedelta(hours=1)],
        )
        store.execute(
            "INSERT INTO loads (load_id, source, target_table, started_at, finished_at, rows_read, "
            "rows_accepted, rows_rejected, rows_inserted, rows_updated, rows_unchanged) "
            "VALUES ('bad-load', 'crm', 'users', ?, ?, 100, 95, 5, 95, 0, 0)",
            [now, now],
        )
        store.execute(
            'INSERT INTO quarantine (load_id, "row", source, target_table, rule, reason) '
            "VALUES ('bad-load', 1, 'crm', 'users', 'missing_required', 'missing user_id')"
        )
        store.execute(
            "UPDATE segment_runs SET created_at = ? WHERE segmentation = 'rfm'",
            [now - timedelta(days=9)],
        )
        alerts = read_alerts(store, p.config, now, "segmint.yaml, line 3: bad")
    kinds = {a.kind: a for a in alerts}
    assert kinds["config"].href == "/settings" and alerts[0].kind == "config"
    assert kinds["job_failed"].href == "/jobs" and kinds["job_failed"].v["job"] == "nightly"
    assert kinds["rejected_load"].href == "/quality/bad-load"
    assert kinds["rejected_load"].v["share"] == pytest.approx(0.05)
    assert kinds["quarantine"].v["n"] == 1
    stale = [a for a in alerts if a.kind == "segmentation_stale"]
    assert [a.v["name"] for a in stale] == ["rfm"] and stale[0].href == "/segments/rfm"
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        html = c.get("/").text
    assert 'href="/quality/bad-load"' in html and 'href="/jobs"' in html
    assert "Segmentation rfm was last run 9 days ago." in html


def _write_key(root: Path) -> str:
    from segmint.serve import create_key

    with segmint.open_project(root) as p:
        return create_key(p.store, "web", "write")


def _user_ids(root: Path, n: int) -> list[str]:
    with segmint.open_project(root, read_only=True) as p:
        return [
            str(u)
            for u in p.store.query(f"SELECT user_id FROM users ORDER BY user_id LIMIT {n}")[
                "user_id"
            ]
        ]


def test_events_sent_through_the_tracking_api_show_up_without_a_reload(
    ws_project: Path, browser: Any, tmp_path: Path
) -> None:
    key = _write_key(ws_project)  # before the service starts: it owns the store then
    users = _user_ids(ws_project, 5)
    with served_ws(ws_project) as s:
        page = open_page(browser, s.url, "ana")
        page.goto(s.url + "/")
        assert page.locator("#events-recent").inner_text() == "0"
        before = page.locator("#last-loads tbody tr").first.get_attribute("data-load")
        page.evaluate("window.__same_document = true")
        batch = [
            {
                "type": "track",
                "userId": users[i % 5],
                "event": "Product Viewed",
                "messageId": f"m-{uuid.uuid4()}",
                "properties": {"sku": "A1"},
            }
            for i in range(12)
        ]
        r = httpx.post(s.url + "/v1/batch", json={"batch": batch}, auth=(key, ""), timeout=10)
        assert r.status_code == 200, r.text
        # polled from here: the page's Content-Security-Policy forbids the eval that
        # Playwright's wait_for_function would need
        _until(page, "() => document.querySelector('#events-recent').dataset.n", "12")
        _until(
            page,
            "() => document.querySelector('#last-loads tbody tr').dataset.load",
            lambda value: value != before,
        )
        assert page.evaluate("window.__same_document") is True  # no reload happened
        assert "tracking:web" in page.locator("#last-loads tbody tr").first.inner_text()
        shot = screenshot_dir(tmp_path) / "overview-live-desktop-en.png"
        page.locator("#live").screenshot(path=str(shot))
        assert page.problems == []
        page.context.close()


def test_the_overview_reads_on_a_phone_in_both_languages(
    ws_demo: Path, browser: Any, tmp_path: Path
) -> None:
    out = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for width, size in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "vic", width=width, locale=locale)
                page.goto(s.url + "/")
                page.wait_for_selector("#kpi-revenue")
                if width == 390:
                    assert no_horizontal_scroll(page)
                if lang == "zh":
                    assert "收入" in page.locator("#kpi-revenue").inner_text()
                page.screenshot(path=str(out / f"overview-{size}-{lang}.png"), full_page=True)
                assert page.problems == []
                page.context.close()


def _until(page: Any, script: str, wanted: Any, timeout: float = 20.0) -> None:
    """Poll ``script`` until its value is ``wanted`` (or makes ``wanted`` true)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if wanted(value) if callable(wanted) else value == wanted:
            return
        assert time.monotonic() < deadline, (script, value)
        page.wait_for_timeout(200)
