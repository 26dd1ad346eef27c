"""The workspace's Segments pages: the list, one segmentation (sizes, history, personas,
members), exports, the rule editor with its live count, and who may change what."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.web.conftest import (
    Client,
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

import segmint
from segmint._i18n import language


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def _editor_form(c: Client, path: str = "/segments/new") -> dict[str, Any]:
    page = c.get(path)
    assert page.status_code == 200, page.text[:300]
    sha = re.search(r'name="base_sha" value="([^"]*)"', page.text)
    assert sha
    return {"csrf_token": c.csrf, "base_sha": sha.group(1)}


BIG = {
    "name": "big",
    "rule_segment": ["Big", "Mid"],
    "rule_when": ["monetary > 1000 AND recency_days <= 200", "monetary > 200"],
    "default": "Small",
}


# -- reading -----------------------------------------------------------------------------------
def test_the_list_shows_every_segmentation_including_those_never_run(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get("/segments")
        assert r.status_code == 200
        text = _text(r.text)
        config = segmint.open_project(ws_demo, read_only=True)
        names = list(config.config.segmentations)
        config.close()
        for name in names:
            assert f'href="/segments/{name}"' in r.text
        assert "not run yet" in text and "segmint segment vip" in text
        assert "Revenue (EUR)" in text and "€" in text
        assert "<svg" in r.text and "Share of users (%)" in text
        assert "New rule segmentation" not in text  # a viewer changes nothing


def test_a_segmentation_page_shows_sizes_history_members_and_no_buttons_for_a_viewer(
    ws_demo: Path,
) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get("/segments/rfm")
        assert r.status_code == 200
        text = _text(r.text)
        for words in ("Sizes and revenue", "Share of revenue", "History", "Members", "Personas"):
            assert words in text
        assert "Run now" not in text and 'action="/segments/rfm/export"' not in r.text
        assert re.search(r'href="/people/[^"]+"', r.text)
        assert c.get("/segments/nope").status_code == 404
        assert c.get("/segments/vip").status_code == 200  # in segmint.yaml, not run yet
        assert "not run yet" in _text(c.get("/segments/vip").text)


def test_history_shows_the_migrations_between_the_last_two_runs(ws_project: Path) -> None:
    with segmint.open_project(ws_project) as p:
        p.segment("lifecycle")
        p.segment("lifecycle")
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        text = _text(c.get("/segments/lifecycle").text)
        assert "changed segment" in text


def test_personas_are_computed_once_per_run_and_shown(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        deadline = time.monotonic() + 60
        while True:
            part = c.get("/segments/rfm/personas", headers={"X-Requested-With": "fragment"})
            assert part.status_code == 200
            if "Describing each segment" not in part.text or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert 'class="card persona"' in part.text
        assert "of revenue" in _text(part.text) or "revenue" in _text(part.text)
        # now cached: the page carries the cards itself
        assert 'class="card persona"' in c.get("/segments/rfm").text


def test_members_search_and_paging(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        first = c.get("/segments/rfm/members")
        assert first.status_code == 200
        ids1 = re.findall(r'href="/people/([^"]+)"', first.text)
        assert len(ids1) == 50
        assert "1,500 members" in _text(first.text)
        second = c.get("/segments/rfm/members?page=2")
        ids2 = re.findall(r'href="/people/([^"]+)"', second.text)
        assert len(ids2) == 50 and not set(ids1) & set(ids2)
        assert ids1 == sorted(ids1) and ids1[-1] < ids2[0]
        one = c.get("/segments/rfm/members", params={"q": ids1[3]})
        assert re.findall(r'href="/people/([^"]+)"', one.text) == [ids1[3]]
        seg = c.get("/segments/rfm/members", params={"segment": "Champions"})
        assert set(re.findall(r"<td>(Champions|Loyal|Lost)</td>", seg.text)) == {"Champions"}
        assert c.get("/segments/rfm/members?q=%25_\\").status_code == 200  # LIKE escaped
        assert c.get("/segments/nope/members").status_code == 404


# -- exports -----------------------------------------------------------------------------------
def _export(c: Client, **form: str) -> tuple[httpx.Response, str]:
    """The file and the text of the page the export leads to."""
    r = c.post("/segments/rfm/export", data={"csrf_token": c.csrf, **form})
    assert r.status_code == 303, r.text[:500]
    page = c.get(r.headers["location"].split("#")[0])
    link = re.search(r'href="(/segments/rfm/exports/[^"]+)" download', page.text)
    assert link, _text(page.text)[:2000]
    return c.get(link.group(1)), _text(page.text)


def test_an_export_is_pseudonymous_by_default_and_a_contact_list_needs_a_purpose(
    ws_project: Path,
) -> None:
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        plain, _ = _export(c, segment="Champions")
        assert plain.status_code == 200
        assert "attachment" in plain.headers["content-disposition"]
        frame = pd.read_csv(io.StringIO(plain.content.decode("utf-8-sig")))
        assert list(frame.columns) == ["pseudonym", "segment"]
        assert "@" not in plain.text and not frame.empty
        contacts, shown = _export(c, segment="Champions", purpose="marketing")
        cframe = pd.read_csv(io.StringIO(contacts.content.decode("utf-8-sig")))
        assert "email" in cframe.columns and cframe["email"].str.contains("@").any()
        left_out = len(frame) - len(cframe)
        assert left_out > 0  # the demo has members without consent
        assert f"{len(cframe)} rows written. {left_out} members left out" in shown
    with segmint.open_project(ws_project, read_only=True) as p:
        log = p.exports()
        audit = p.store.query("SELECT actor, action, target FROM audit_log")
    done = log[log["segmentation"] == "rfm"]
    assert set(done["command"]) == {"workspace:ana"}
    assert set(done["purpose"].dropna()) == {"marketing"}
    assert done["contact"].tolist().count(True) == 1
    assert (audit["action"] == "segment.export").sum() == 2


def test_an_unknown_purpose_is_refused(ws_project: Path) -> None:
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        r = c.post("/segments/rfm/export", data={"csrf_token": c.csrf, "purpose": "anything-goes"})
        assert r.status_code == 400


# -- the rule editor ---------------------------------------------------------------------------
def _counts(html: str) -> list[int]:
    return [int(x.replace(",", "")) for x in re.findall(r"data-count>([\d,]+)<", html)]


def test_the_live_count_equals_the_count_after_saving_and_running(ws_project: Path) -> None:
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        form = {**_editor_form(c), **BIG}
        preview = c.post("/segments/preview", data=form)
        assert preview.status_code == 200
        counts = _counts(preview.text)
        assert len(counts) == 3 and sum(counts) == 1500, _text(preview.text)
        assert "+  big:" in preview.text or "+  big:" in _text(preview.text)
        saved = c.post("/segments/save", data=form)
        assert saved.status_code == 303 and saved.headers["location"] == "/segments/big?done=saved"
        page = c.get("/segments/big")
        assert "Run now" in page.text and "not run yet" in _text(page.text)
        ran = c.post("/segments/big/run", data={"csrf_token": c.csrf})
        assert ran.status_code == 303
        text = _text(c.get(ran.headers["location"]).text)
        assert "The segmentation ran" in text
    with segmint.open_project(ws_project, read_only=True) as p:
        sizes = p.segment_run("big").sizes
        assert "big" in p.config.segmentations
        audit = set(p.store.query("SELECT action FROM audit_log")["action"])
    assert [int(sizes.get(k, 0)) for k in ("Big", "Mid", "Small")] == counts
    assert {"config.save", "segment.run"} <= audit


def test_editing_an_existing_rule_segmentation_shows_its_rules(ws_project: Path) -> None:
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        page = c.get("/segments/vip/edit")
        assert page.status_code == 200
        assert "discount_share &gt;= 0.2" in page.text and 'value="Everyone else"' in page.text
        assert "recency_days" in page.text  # the feature columns, to help
        same = {
            **_editor_form(c, "/segments/vip/edit"),
            "original": "vip",
            "default": "Everyone else",
            "rule_segment": ["VIP", "Deal seekers"],
            "rule_when": ["monetary > 3000 AND recency_days <= 60", "discount_share >= 0.2"],
        }
        assert "No change" in _text(c.post("/segments/preview", data=same).text)
        assert c.get("/segments/rfm/edit").status_code == 400  # not a rules segmentation
        form = {
            **_editor_form(c, "/segments/vip/edit"),
            "original": "vip",
            "rule_segment": ["VIP"],
            "rule_when": ["monetary > 2000"],
            "default": "Everyone else",
        }
        assert c.post("/segments/save", data=form).status_code == 303
    text = (ws_project / "segmint.yaml").read_text()
    assert "monetary > 2000" in text and "Deal seekers" not in text
    assert "rfm: {type: rfm}" in text  # the rest of the file as it was


def test_an_invalid_condition_is_refused_with_a_message_and_nothing_is_written(
    ws_project: Path,
) -> None:
    before = (ws_project / "segmint.yaml").read_text()
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        base = _editor_form(c)
        for when, words in (
            ("monetary > 1000; DROP TABLE users", "rule 1 ('Big')"),
            ("email = 'a@b.c'", "personal data"),
            ("no_such_column > 3", "rule 1 ('Big')"),
        ):
            form = {**base, **BIG, "rule_when": [when, "monetary > 200"]}
            preview = _text(c.post("/segments/preview", data=form).text)
            assert "Not valid yet" in preview and words in preview, preview
            r = c.post("/segments/save", data=form)
            assert r.status_code == 400 and "Nothing was written" in _text(r.text)
        clash = {**base, **BIG, "name": "rfm"}
        assert "exists already" in _text(c.post("/segments/preview", data=clash).text)
        reserved = {**base, **BIG, "name": "new"}
        assert c.post("/segments/save", data=reserved).status_code == 400
    assert (ws_project / "segmint.yaml").read_text() == before


def test_a_concurrent_edit_of_the_file_is_detected(ws_project: Path) -> None:
    path = ws_project / "segmint.yaml"
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        form = {**_editor_form(c), **BIG}
        path.write_text(path.read_text() + "\n# edited by hand\n")
        stale = _text(c.post("/segments/preview", data=form).text)
        assert "changed since this editor was opened" in stale
        r = c.post("/segments/save", data=form)
        assert r.status_code == 409
        assert "changed since this edit was prepared" in _text(r.text)
    text = path.read_text()
    assert "# edited by hand" in text and "big:" not in text


def test_a_change_made_in_the_file_shows_up_in_the_pages(ws_project: Path) -> None:
    path = ws_project / "segmint.yaml"
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        assert "handmade" not in c.get("/segments").text
        text = path.read_text().replace(
            "segmentations:\n",
            "segmentations:\n  handmade:\n    type: rules\n    rules:\n"
            "      - {segment: Whales, when: monetary > 5000}\n    default: Rest\n",
            1,
        )
        path.write_text(text)
        time.sleep(1.2)
        page = c.get("/segments")
        assert 'href="/segments/handmade"' in page.text
        assert c.get("/segments/handmade").status_code == 200


# -- who may change what -----------------------------------------------------------------------
CHANGES = [
    ("/segments/preview", BIG),
    ("/segments/save", BIG),
    ("/segments/rfm/export", {}),
    ("/segments/rfm/run", {}),
]


def test_every_change_is_refused_without_a_session_for_a_viewer_and_without_csrf(
    ws_project: Path,
) -> None:
    before = (ws_project / "segmint.yaml").read_text()
    with segmint.open_project(ws_project, read_only=True) as p:
        exports_before = p.exports()["export_id"].tolist()  # the demo's campaign file
    with served_ws(ws_project) as s:
        for path, data in CHANGES:
            assert httpx.post(s.url + path, data=data).status_code == 401, path
        with sign_in(s.url, "vic") as vic:
            for path, data in CHANGES:
                assert vic.post(path, data={**data, "csrf_token": vic.csrf}).status_code == 403
            assert vic.get("/segments/new").status_code == 403
            assert vic.get("/segments/vip/edit").status_code == 403
        with sign_in(s.url, "ana") as ana:
            for path, data in CHANGES:
                assert ana.post(path, data=data).status_code == 403, path
        r = httpx.get(s.url + "/segments/rfm", follow_redirects=False)
        assert r.status_code == 303
    assert (ws_project / "segmint.yaml").read_text() == before
    with segmint.open_project(ws_project, read_only=True) as p:
        assert p.exports()["export_id"].tolist() == exports_before


# -- in the browser ----------------------------------------------------------------------------
PAGES = {
    "segments": "/segments",
    "segment-detail": "/segments/rfm",
    "segment-members": "/segments/rfm/members?segment=Champions",
    "segment-editor": "/segments/vip/edit",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_the_pages_in_a_browser(ws_demo: Path, browser: Any, tmp_path: Path, name: str) -> None:
    out = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for device, width in (("desktop", 1280), ("phone", 390)):
            for lang, locale in (("en", "en-US"), ("zh", "zh-CN")):
                page = open_page(browser, s.url, "ana", width=width, locale=locale)
                page.goto(s.url + PAGES[name])
                page.wait_for_load_state("networkidle")
                if name == "segment-editor":
                    page.wait_for_selector("#preview [data-count]")
                if name == "segment-detail":
                    page.wait_for_selector(".persona", timeout=60_000)
                assert page.problems == [], page.problems
                if width == 390:
                    assert no_horizontal_scroll(page), (name, lang)
                if lang == "zh":
                    assert page.evaluate("document.documentElement.lang") == "zh-CN"
                page.screenshot(path=str(out / f"{name}-{device}-{lang}.png"), full_page=True)
                page.context.close()


def test_the_editor_counts_live_as_you_type(ws_demo: Path, browser: Any) -> None:
    with served_ws(ws_demo) as s:
        page = open_page(browser, s.url, "ana", width=390)
        page.goto(s.url + "/segments/new")
        page.fill("#seg-name", "spenders")
        page.fill("#rs-0", "Spenders")
        page.fill("#rw-0", "monetary > 500")
        page.fill("#seg-default", "Others")
        page.wait_for_selector("#preview [data-count]")
        before = page.inner_text("#preview")
        assert "Spenders" in before and "+  spenders:" in before
        page.fill("#rw-0", "monetary > ")
        page.wait_for_selector("#preview .bad-box")
        page.fill("#rw-0", "monetary > 5000")
        page.wait_for_selector("#preview [data-count]")
        assert page.inner_text("#preview") != before
        page.click("button[data-add]")
        assert page.locator("input[name=rule_when]").count() == 2
        assert page.problems == [] and no_horizontal_scroll(page)
        page.context.close()


def test_the_editor_lists_the_prediction_columns_and_counts_a_rule_on_them(
    ws_project: Path,
) -> None:
    """The demo has CLV and churn runs: the editor lists clv, churn_risk... beside the
    features, with the medians of the latest runs, and a rule on them previews the counts
    `segmint segment` would give (it reads the same runs)."""
    with segmint.open_project(ws_project, read_only=True) as p:
        scores = p.store.query("SELECT clv, churn_risk FROM predictions WHERE clv IS NOT NULL")
        median_clv = float(p.predictions()["clv"].median())
        currency = p.config.currency
    assert len(scores) > 0
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        page = _text(c.get("/segments/new").text)
        assert "clv" in page and "churn_risk" in page and "p_alive" in page
        # the median shown beside the column, in the project's currency
        assert language("en").money(median_clv, currency) in page
        form = {
            **_editor_form(c),
            "name": "valuable",
            "rule_segment": ["Valuable"],
            "rule_when": [f"clv >= {median_clv}"],
            "default": "Rest",
        }
        preview = c.post("/segments/preview", data=form)
        assert preview.status_code == 200, _text(preview.text)[:500]
        counts = _counts(preview.text)
    assert sum(counts) == 1500 and 0 < counts[0] < 1500


def test_the_editor_shows_the_median_of_an_amount_as_money(ws_project: Path) -> None:
    """The medians beside the columns: CLV, its interval and the expected order value (and
    the catalog's amounts, monetary...) in the project's currency, as the person page shows
    them; shares and counts as numbers."""
    with segmint.open_project(ws_project, read_only=True) as p:
        currency = p.config.currency
        latest = p.predictions()
        monetary = float(p.features()["monetary"].median())
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        pages = {
            name: {
                col: _text(rest)
                for col, rest in re.findall(
                    r"<tr><td><code>(\w+)</code>(.*?)</tr>", c.get(f"/segments/new{q}").text, re.S
                )
            }
            for name, q in (("en", ""), ("zh-CN", "?lang=zh-CN"))
        }
    for name, listed in pages.items():
        lang = language(name)
        for col in ("clv", "clv_low", "clv_high", "expected_order_value"):
            want = lang.money(float(latest[col].median()), currency)
            assert listed[col].strip() == want, (name, col)
        assert listed["monetary"].strip() == lang.money(monetary, currency), name
        for col in ("churn_risk", "p_alive", "expected_purchases"):
            want = lang.number(float(latest[col].median()))
            assert listed[col].strip() == want, (name, col)


def test_a_rule_on_churn_risk_change_without_an_earlier_churn_run_says_why_it_matches_nobody(
    ws_project: Path,
) -> None:
    """The demo has one churn run: churn_risk_change (the rise since an earlier churn run)
    is empty for everyone. The editor lists it anyway, says what it needs, and the preview
    of "clv >= 500 AND churn_risk_change > 0" says why nobody matches; once an earlier
    churn run exists the note is gone and the column has a median."""
    from datetime import timedelta

    from segmint.predict import predict_churn

    form = {
        "name": "risers",
        "rule_segment": ["win-back"],
        "rule_when": ["clv >= 500 AND churn_risk_change > 0"],
        "default": "others",
    }
    needs = "needs a churn run at an earlier date"
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        rows = re.findall(
            r"<tr><td><code>(\w+)</code>(.*?)</tr>", c.get("/segments/new").text, re.S
        )
        listed = {name: _text(rest) for name, rest in rows}
        assert "churn_risk_change" in listed and needs in listed["churn_risk_change"], listed
        answer = c.post("/segments/preview", data={**_editor_form(c), **form}).text
        preview = _text(answer)
        assert _counts(answer) == [0, 1500], preview
        assert "churn_risk_change is empty for every customer" in preview, preview
        assert "segmint predict churn --as-of" in preview
        zh = c.get("/segments/new?lang=zh-CN").text
        assert needs not in zh and "更早" in zh
    with segmint.open_project(ws_project) as p:
        as_of = p.prediction_run("churn").as_of
        predict_churn(p.store, p.config.predict, as_of=as_of - timedelta(days=30))
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        rows = re.findall(
            r"<tr><td><code>(\w+)</code>(.*?)</tr>", c.get("/segments/new").text, re.S
        )
        listed = {name: _text(rest) for name, rest in rows}
        assert needs not in listed["churn_risk_change"] and "–" not in listed["churn_risk_change"]
        preview = _text(c.post("/segments/preview", data={**_editor_form(c), **form}).text)
        assert "is empty for every customer" not in preview


def test_the_preview_reads_the_predictions_at_its_feature_runs_date(ws_project: Path) -> None:
    """The preview counts over the latest feature run; the predictions joined to it are the
    ones at that run's as-of date, as `segmint segment` joins them to the same features
    (they were the ones at the store's default date: another day's CLV, computed afresh)."""
    from datetime import timedelta

    with segmint.open_project(ws_project) as p:
        current = p.prediction_run("clv")
        earlier = current.as_of - timedelta(days=90)
        features = p.compute_features(as_of=earlier)  # now the latest feature run
    form = {
        "name": "valuable",
        "rule_segment": ["Valuable"],
        "rule_when": ["clv >= 800"],
        "default": "Rest",
    }
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        counts = _counts(c.post("/segments/preview", data={**_editor_form(c), **form}).text)
    with segmint.open_project(ws_project) as p:
        from segmint.config import RulesSegmentation
        from segmint.segments import run_segmentation

        rules = [{"segment": "Valuable", "when": "clv >= 800"}]
        spec = RulesSegmentation(type="rules", rules=rules, default="Rest")
        run = run_segmentation(p.store, "valuable", spec, p.features(features.run_id),
                               feature_run_id=features.run_id, predict=p.config.predict,
                               save=False)  # fmt: skip
        expected = run.metrics["sizes"]
        used = run.details["predictions"]
    assert pd.Timestamp(used["as_of"]) == pd.Timestamp(earlier)
    assert counts == [expected.get("Valuable", 0), expected.get("Rest", 0)], (counts, expected)
