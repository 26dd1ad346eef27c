"""Data quality: every load accounted for (read = accepted + rejected), the quarantine per
load with its reasons and example rows, paged; raw rows shown but never logged."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import (
    copy_demo,
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

import segmint

SECRET_EMAIL = "not-an-email-of-ana-lima"
"""A malformed (quarantined) e-mail address: personal data that must never be logged."""


def _messy_sources(root: Path) -> None:
    """Two sources with planted problems: 30 orders of which 6 reference nobody, 4 have a
    negative amount; 10 people of whom 3 have a malformed e-mail (loaded, e-mail left out)."""
    extra = root / "extra"
    extra.mkdir()
    with (extra / "pos.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["order_no", "customer", "order_ts", "total", "state"])
        for i in range(30):
            customer = f"NOBODY-{i}" if i < 6 else "{user}"
            total = "-9.50" if 6 <= i < 10 else "42.00"
            w.writerow([f"POS{i:03d}", customer, "2026-01-15 10:00:00", total, "paid"])
    with segmint.open_project(root, read_only=True) as p:
        users = list(
            p.store.query("SELECT user_id FROM users ORDER BY user_id LIMIT 10")["user_id"]
        )
    text = (extra / "pos.csv").read_text().replace("{user}", str(users[0]))
    (extra / "pos.csv").write_text(text)
    with (extra / "crm.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cid", "mail"])
        for i, user in enumerate(users):
            w.writerow([user, f"{SECRET_EMAIL}-{i}" if i < 3 else f"p{i}@example.com"])
    config = (root / "segmint.yaml").read_text()
    config = config.replace(
        "sources:\n",
        "sources:\n"
        "  pos:\n    type: csv\n    path: extra/pos.csv\n    table: orders\n"
        "    columns: {order_id: order_no, user_id: customer, ts: order_ts, amount: total, "
        "status: state}\n    values: {status: {paid: completed}}\n"
        "  crm:\n    type: csv\n    path: extra/crm.csv\n    table: users\n"
        "    columns: {user_id: cid, email: mail}\n",
        1,
    )
    (root / "segmint.yaml").write_text(config)


@pytest.fixture(scope="module")
def messy(ws_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo plus two messy sources, ingested, and one load whose counts do not add up."""
    root = copy_demo(ws_demo, tmp_path_factory.mktemp("quality") / "demo")
    _messy_sources(root)
    with segmint.open_project(root) as p:
        p.ingest(["pos", "crm"])
        p.store.execute(
            "INSERT INTO loads (load_id, source, target_table, started_at, finished_at, rows_read, "
            "rows_accepted, rows_rejected, rows_inserted, rows_updated, rows_unchanged) VALUES "
            "('lost-rows', 'legacy', 'users', TIMESTAMPTZ '2020-01-01 00:00:00+00', "
            "TIMESTAMPTZ '2020-01-01 00:01:00+00', 10, 7, 2, 7, 0, 0)"
        )
    return root


def _load_id(root: Path, source: str) -> str:
    with segmint.open_project(root, read_only=True) as p:
        return str(p.store.scalar("SELECT load_id FROM loads WHERE source = ?", [source]))


def test_the_loads_table_shows_every_load_and_whether_it_adds_up(messy: Path) -> None:
    with served_ws(messy) as s, sign_in(s.url, "vic") as c:
        r = c.get("/quality")
        assert r.status_code == 200
        rows = re.findall(r'<tr data-load="([^"]+)"', r.text)
        assert _load_id(messy, "pos") in rows and "lost-rows" in rows
        assert r.text.count('class="balance ok"') == len(rows) - 1
        assert "⚠ 1 rows unaccounted for" in r.text
        assert "Loads that do not add up (rows read is not accepted + rejected): 1." in r.text
        # the quarantine counted by reason (Project.quarantine_summary)
        assert (
            "<code>unknown_reference</code>" in r.text and "<code>malformed_email</code>" in r.text
        )
        only = c.get("/quality", params={"source": "pos"}).text
        assert re.findall(r'<tr data-load="([^"]+)"', only) == [_load_id(messy, "pos")]
        assert "No load of source nowhere." in c.get("/quality?source=nowhere").text


def test_the_loads_table_is_paged(messy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segmint.web import _quality

    monkeypatch.setattr(_quality, "LOADS_PER_PAGE", 3)
    with served_ws(messy) as s, sign_in(s.url, "vic") as c:
        first = c.get("/quality").text
        assert len(re.findall(r"<tr data-load=", first)) == 3
        assert 'href="/quality?page=2"' in first and "Page 1 of 3" in first
        last = c.get("/quality?page=3").text
        assert re.findall(r'<tr data-load="([^"]+)"', last)[-1] == "lost-rows"  # the oldest
        assert "Page 3 of 3" in c.get("/quality?page=99").text  # past the end: the last page
        assert "Page 1 of 3" in c.get("/quality?page=0").text  # before the start: the first


def test_a_load_shows_its_reasons_and_example_rows_as_the_source_held_them(messy: Path) -> None:
    load = _load_id(messy, "pos")
    with served_ws(messy) as s, sign_in(s.url, "vic") as c:
        html = c.get(f"/quality/{load}").text
        reasons = dict(
            re.findall(
                r"<code>(\w+)</code></a></td>\s*<td>.*?</td>\s*<td class=\"num\">(\d+)</td>", html
            )
        )
        assert reasons == {"unknown_reference": "6", "negative_amount": "4"}
        assert "NOBODY-0" in html and "<dt>customer</dt>" in html  # the source's own columns
        assert "Rows 1–10 of 10." in html
        only = c.get(f"/quality/{load}", params={"rule": "negative_amount"}).text
        assert "-9.50" in only and "NOBODY-" not in only.split('id="examples"')[1]
        crm = c.get(f"/quality/{_load_id(messy, 'crm')}").text
        # a field issue: the row was loaded; the faulty column is marked in the raw row
        assert '<dt class="at-fault">mail</dt>' in crm and f"{SECRET_EMAIL}-0" in crm


def _n_examples(html: str) -> int:
    return html.split('id="examples"')[1].count("<li>")


def test_example_rows_are_paged(messy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segmint.web import _quality

    monkeypatch.setattr(_quality, "EXAMPLES_PER_PAGE", 4)
    load = _load_id(messy, "pos")
    with served_ws(messy) as s, sign_in(s.url, "vic") as c:
        first = c.get(f"/quality/{load}").text
        assert _n_examples(first) == 4 and "Page 1 of 3" in first
        assert f'href="/quality/{load}?page=2#examples-h"' in first
        last = c.get(f"/quality/{load}?page=3").text
        assert "Rows 9–10 of 10." in last and _n_examples(last) == 2
        ruled = c.get(f"/quality/{load}?rule=unknown_reference&page=2").text
        assert "Rows 5–6 of 6." in ruled
        assert f'href="/quality/{load}?rule=unknown_reference&amp;page=1#examples-h"' in ruled


def test_an_unknown_load_is_a_404_and_a_page_needs_a_session(messy: Path) -> None:
    import httpx

    with served_ws(messy) as s:
        assert httpx.get(s.url + "/quality", follow_redirects=False).status_code == 303
        assert httpx.get(s.url + "/quality/x", follow_redirects=False).status_code == 303
        with sign_in(s.url, "vic") as c:
            r = c.get("/quality/no-such-load", headers={"Accept": "text/html"})
            assert r.status_code == 404 and "There is no load with this id." in r.text


def test_quarantined_rows_are_shown_but_never_logged(
    messy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with served_ws(messy) as s, sign_in(s.url, "ana") as c:
        assert SECRET_EMAIL in c.get(f"/quality/{_load_id(messy, 'crm')}").text
        assert "NOBODY-1" in c.get(f"/quality/{_load_id(messy, 'pos')}").text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/quality/" in logged  # the access log was captured
    assert SECRET_EMAIL not in logged and "NOBODY-1" not in logged


def test_the_quality_pages_read_on_a_phone_in_both_languages(
    messy: Path, browser: Any, tmp_path: Path
) -> None:
    out = screenshot_dir(tmp_path)
    load = _load_id(messy, "pos")
    with served_ws(messy) as s:
        for width, size in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "vic", width=width, locale=locale)
                for name, path, ready in (
                    ("quality", "/quality", "#loads"),
                    ("quality-load", f"/quality/{load}", "#examples"),
                ):
                    page.goto(s.url + path)
                    page.wait_for_selector(ready)
                    if width == 390:
                        assert no_horizontal_scroll(page), path
                    if lang == "zh":
                        assert "拒收" in page.content()
                    page.screenshot(path=str(out / f"{name}-{size}-{lang}.png"), full_page=True)
                assert page.problems == []
                page.context.close()
