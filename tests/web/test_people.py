"""The People pages: finding a person (id, id prefix, e-mail) and a person's page (profile,
decision, segments over time, recommendations, timeline), the audit of every view, roles,
and the pages in Chromium (en/zh, desktop/phone)."""

from __future__ import annotations

import html
import json
import logging
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web.conftest import (
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

import segmint


def _one(root: Path, sql: str, params: list[Any] | None = None) -> Any:
    with segmint.open_project(root, read_only=True) as p:
        frame = p.store.query(sql, params)
    assert not frame.empty, sql
    return frame.iat[0, 0]


def _full_user(root: Path) -> str:
    """A user with at least one event, order, message and consent change, and at most
    100 of them in all (so the first page shows every kind)."""
    return str(
        _one(
            root,
            """SELECT u.user_id FROM users u
               JOIN (SELECT user_id, count(*) AS n FROM events GROUP BY 1) e USING (user_id)
               JOIN (SELECT user_id, count(*) AS n FROM orders GROUP BY 1) o USING (user_id)
               JOIN (SELECT user_id, count(*) AS n FROM deliveries GROUP BY 1) d USING (user_id)
               JOIN (SELECT user_id, count(*) AS n FROM consents GROUP BY 1) c USING (user_id)
               WHERE e.n + o.n + d.n + c.n <= 100
               ORDER BY e.n + o.n + d.n + c.n DESC, u.user_id LIMIT 1""",
        )
    )


def _views(root: Path, user_id: str) -> int:
    return int(
        _one(
            root,
            "SELECT count(*) FROM audit_log WHERE action = 'person.view' AND target = ? "
            "AND actor = 'ana'",
            [user_id],
        )
    )


def _search(client: Any, q: str) -> httpx.Response:
    return client.post("/people", data={"q": q, "csrf_token": client.csrf})


# -- finding a person ----------------------------------------------------------------------
def test_a_user_id_opens_the_person_and_a_prefix_lists_matches(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        r = _search(c, " C000123 ")
        assert r.status_code == 303 and r.headers["location"] == "/people/C000123"
        r = _search(c, "c00012")  # any case; C000120 ... C000129
        assert r.status_code == 200
        found = set(re.findall(r'<a href="/people/(C00012\d)">', r.text))
        assert len(found) == 10
        r = _search(c, "C")  # everybody: a short list and a hint
        assert r.status_code == 200 and "type more of the id" in r.text


def test_an_email_finds_its_person_in_any_case_and_is_never_logged(
    ws_demo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, email = _user_and_email(ws_demo)
    caplog.set_level(logging.DEBUG)
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        r = _search(c, email.upper())
        assert r.status_code == 303 and r.headers["location"] == f"/people/{user_id}"
        assert _search(c, "nobody-" + email).status_code == 200
    assert email.lower() not in caplog.text.lower()
    assert "POST /people" in caplog.text  # the access log saw the searches, not their text


def _user_and_email(root: Path) -> tuple[str, str]:
    """A user with a usable e-mail and the address, opened from its sealed form."""
    from segmint.store import open_vault

    with segmint.open_project(root, read_only=True) as p:
        row = p.store.query(
            "SELECT user_id, email FROM users WHERE email_index IS NOT NULL OR email LIKE '%@%' "
            "ORDER BY user_id LIMIT 1"
        ).iloc[0]
        email = open_vault(p.store, p.config).open(row["email"], "users.email")
    assert email and "@" in email
    return str(row["user_id"]), email


def _one_row(root: Path, sql: str) -> list[Any]:
    with segmint.open_project(root, read_only=True) as p:
        return list(p.store.query(sql + " ORDER BY user_id LIMIT 1").iloc[0])


def test_nobody_found_and_an_unknown_user_page_say_so(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        r = _search(c, "nobody@nowhere.example")
        assert r.status_code == 200 and "Nobody found" in r.text
        assert "Nobody found" in _search(c, "ZZ-no-such-id").text
        assert "Type a user id or an e-mail address." in _search(c, "   ").text
        r = c.get("/people/ZZ-no-such-id")
        assert r.status_code == 404 and "Nobody with this user id" in r.text


def test_the_people_page_lists_recently_active_people(ws_demo: Path) -> None:
    latest = str(
        _one(ws_demo, "SELECT user_id FROM events WHERE user_id IS NOT NULL ORDER BY ts DESC")
    )
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get("/people")
        assert r.status_code == 200
        assert 'name="csrf_token"' in r.text and '<label for="people-q">' in r.text
        recent = re.findall(r'<a href="/people/([^"]+)">', r.text)
        assert 3 <= len(recent) <= 12 and latest in recent


# -- roles and protection ------------------------------------------------------------------
def test_both_roles_may_search_but_not_without_a_session_or_a_csrf_token(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        r = httpx.get(s.url + "/people/C000001", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert httpx.post(s.url + "/people", data={"q": "C000001"}).status_code == 401
        with sign_in(s.url, "vic") as c:
            assert _search(c, "C000001").status_code == 303
            assert c.get("/people/C000001").status_code == 200
            assert c.post("/people", data={"q": "C000001"}).status_code == 403


# -- a person's page -----------------------------------------------------------------------
def test_the_page_shows_every_kind_of_entry_and_records_the_view(ws_demo: Path) -> None:
    user_id = _full_user(ws_demo)
    before = _views(ws_demo, user_id)
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        r = c.get(f"/people/{user_id}")
        assert r.status_code == 200
        for kind in ("event", "order", "message", "consent"):
            assert f'<li class="kind-{kind}">' in r.text, kind
        assert "Recommendations" in r.text and "Segments over time" in r.text
        money = re.search(r'class="kind-order">.*?<strong>([^<]+)</strong>', r.text, re.S)
        assert money and "€" in money.group(1)  # amounts with their currency
        only = c.get(f"/people/{user_id}?show=consent").text
        assert '<li class="kind-consent">' in only and '<li class="kind-event">' not in only
    assert _views(ws_demo, user_id) == before + 2


def test_the_timeline_pages_back_in_time_without_gaps_or_repeats(ws_demo: Path) -> None:
    user_id, n_entries = _one_row(
        ws_demo,
        """SELECT user_id, count(*) AS n FROM (
               SELECT user_id FROM events UNION ALL SELECT user_id FROM orders
               UNION ALL SELECT user_id FROM deliveries UNION ALL SELECT user_id FROM consents)
           WHERE user_id IS NOT NULL GROUP BY 1 HAVING count(*) > 110""",
    )
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        first = c.get(f"/people/{user_id}").text
        older = re.search(r'href="(/people/[^"]+\?before=[^"#]+)[^"]*">Show older entries', first)
        assert older
        second = c.get(html.unescape(older.group(1))).text
    a, b = _times(first), _times(second)
    assert 90 <= len(a) <= 100 and b
    assert a == sorted(a, reverse=True) and max(b) < min(a)
    assert len(b) == min(int(n_entries) - len(a), 100)


def _times(page: str) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in re.findall(r'<time datetime="([^"]+)">', page)]


def test_a_segment_change_between_runs_is_marked(ws_demo: Path) -> None:
    user_id = str(
        _one(
            ws_demo,
            """SELECT a.user_id FROM segment_assignments a
               JOIN segment_runs r ON r.run_id = a.run_id AND r.segmentation = 'rfm'
               GROUP BY 1 HAVING count(DISTINCT a.segment) > 1 ORDER BY 1""",
        )
    )
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        rfm = _history_block(c.get(f"/people/{user_id}").text, "rfm")
    assert rfm.count("<li") == 2 and rfm.count('class="changed"') == 1


def _history_block(page: str, segmentation: str) -> str:
    m = re.search(rf'data-history="{segmentation}">(.*?)</ol>', page, re.S)
    assert m, segmentation
    return m.group(1)


def test_segments_over_time_grow_with_each_run(ws_project: Path) -> None:
    user_id = "C000001"
    with segmint.open_project(ws_project) as p:
        runs = int(p.store.scalar("SELECT count(*) FROM segment_runs WHERE segmentation='value'"))
        p.segment("value")
        p.segment("value")
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        block = _history_block(c.get(f"/people/{user_id}").text, "value")
    assert block.count("<li") == runs + 2 > 1


def test_the_decision_card_is_what_v1_decide_answers(ws_project: Path) -> None:
    from segmint.serve import create_key

    user_id = _full_user(ws_project)
    with segmint.open_project(ws_project) as p:
        key = create_key(p.store, "people test", "decide")
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        api = _decide(s.url, key, user_id)
        page = c.get(f"/people/{user_id}").text
    raw = re.search(r'<pre id="decision-json" class="json">(.*?)</pre>', page, re.S)
    assert raw, page[:2000]
    shown = json.loads(html.unescape(raw.group(1)))
    for d in (api, shown):
        d.pop("served_at")
    assert shown == api
    card = re.search(r'data-field="ui">(.*?)</dd>', page, re.S)
    assert card and api["ui"]["name"] in card.group(1)
    for campaign, arm in api["experiments"].items():
        assert f"{campaign}: {arm}" in page
    for segmentation, seg in api["segments"].items():
        row = re.search(rf'<tr data-segmentation="{segmentation}">(.*?)</tr>', page, re.S)
        assert row and html.escape(seg["segment"], quote=False) in row.group(1)


def _decide(url: str, key: str, user_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:  # 503 while the first snapshot builds
        r = httpx.get(
            f"{url}/v1/decide/{user_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    return dict(r.json())


# -- in the browser ------------------------------------------------------------------------
def test_the_pages_in_chromium_on_desktop_and_phone_in_en_and_zh(
    ws_demo: Path, browser: Any, tmp_path: Path
) -> None:
    user_id = _full_user(ws_demo)
    out = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for width, size in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "ana", width=width, locale=locale)
                page.goto(s.url + "/people")
                page.fill("#people-q", "C00001")  # C000010 ... C000019
                page.click("form[role=search] button[type=submit]")
                page.wait_for_selector("div[role=status] table")
                page.screenshot(path=str(out / f"people-{size}-{lang}.png"), full_page=True)
                assert no_horizontal_scroll(page), ("people", size, lang)
                page.click('a[href="/people/C000010"] >> nth=0')
                page.wait_for_selector("#timeline")
                page.goto(f"{s.url}/people/{user_id}")
                if lang == "zh":
                    assert "时间线" in page.content()
                page.screenshot(path=str(out / f"person-{size}-{lang}.png"), full_page=True)
                assert no_horizontal_scroll(page), ("person", size, lang)
                assert page.problems == [], page.problems
                page.context.close()
