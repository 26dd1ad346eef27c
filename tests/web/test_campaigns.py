"""The workspace's Campaigns pages: the playbook per segment and its editing, a new
campaign, a campaign's plan, preview, send (to a real SMTP server on loopback) and live
progress; roles, sessions and CSRF on every change."""

from __future__ import annotations

import re
import time
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
from segmint.campaigns import SmtpSink

FRAGMENT = {"X-Requested-With": "fragment"}
DEMO_CAMPAIGN = "winback_at_risk"

CHANGES = [
    ("/campaigns/strategy/preview", {"segmentation": "rfm", "segment": "Lost"}),
    ("/campaigns/strategy", {"segmentation": "rfm", "segment": "Lost"}),
    ("/campaigns/new/preview", {"name": "x", "segmentation": "rfm"}),
    ("/campaigns/new", {"name": "x", "segmentation": "rfm"}),
    (f"/campaigns/{DEMO_CAMPAIGN}/plan", {}),
    (f"/campaigns/{DEMO_CAMPAIGN}/send", {"confirm": DEMO_CAMPAIGN}),
    (f"/campaigns/{DEMO_CAMPAIGN}/evaluate", {}),
]
"""Every endpoint that changes something, with a plausible form."""


def _base_sha(html: str) -> str:
    found = re.search(r'name="base_sha" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _strategy_form(c: Any, **over: str) -> dict[str, Any]:
    page = c.get("/campaigns/strategy", params={"segmentation": "rfm", "segment": "Lost"})
    assert page.status_code == 200
    form = {
        "csrf_token": c.csrf,
        "base_sha": _base_sha(page.text),
        "segmentation": "rfm",
        "segment": "Lost",
        "offer_type": "percent",
        "offer_value": "30",
        "channel_1": "email",
        "template": "reactivation",
        "ui": "winback",
    }
    form.update(over)
    return form


def test_the_campaigns_page_shows_the_playbook_and_the_campaigns(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get("/campaigns")
        assert r.status_code == 200
        html = r.text
        assert DEMO_CAMPAIGN in html and "spring_reactivation_2026" in html  # + imported
        assert "At Risk" in html and "winback" in html and "20% off" in html
        assert "/campaigns/strategy?" not in html and 'href="/campaigns/new"' not in html
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        html = c.get("/campaigns").text
        assert "/campaigns/strategy?segmentation=rfm" in html and 'href="/campaigns/new"' in html
        zh = c.get("/campaigns?lang=zh-CN").text
        assert "策略手册" in zh and "新建活动" in zh


def test_without_a_session_pages_redirect_and_changes_are_refused(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        for path in ("/campaigns", f"/campaigns/{DEMO_CAMPAIGN}", "/campaigns/new"):
            r = httpx.get(s.url + path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        for path, form in CHANGES:
            r = httpx.post(s.url + path, data={"csrf_token": "x", **form})
            assert r.status_code == 401, path


def test_every_change_is_refused_to_a_viewer_and_without_the_csrf_token(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        with sign_in(s.url, "vic") as c:
            for path, form in CHANGES:
                assert c.post(path, data={"csrf_token": c.csrf, **form}).status_code == 403, path
            assert c.get(f"/campaigns/{DEMO_CAMPAIGN}/send").status_code == 403
            assert c.get("/campaigns/new").status_code == 403
        with sign_in(s.url, "ana") as c:
            for path, form in CHANGES:
                assert c.post(path, data=form).status_code == 403, path
                assert c.post(path, data={"csrf_token": "forged", **form}).status_code == 403


def test_a_strategy_edit_is_validated_shown_as_a_diff_and_saved(ws_project: Path) -> None:
    config = ws_project / "segmint.yaml"
    with served_ws(ws_project) as s, sign_in(s.url, "ana") as c:
        bad = c.post("/campaigns/strategy/preview", data=_strategy_form(c, offer_value="150"))
        assert "a percent offer needs `value`" in bad.text and "bad-box" in bad.text
        form = _strategy_form(c)
        shown = c.post("/campaigns/strategy/preview", data=form, headers=FRAGMENT)
        assert '<span class="add">+          type: percent</span>' in shown.text
        assert '<span class="add">+          value: 30</span>' in shown.text
        assert "type: percent" not in config.read_text().split("Lost:")[1][:120]
        done = c.post("/campaigns/strategy", data=form)
        assert done.status_code == 303 and done.headers["location"] == "/campaigns?saved=strategy"
        lost = config.read_text().split("      Lost:")[1][:200]
        assert "type: percent" in lost and "value: 30" in lost
        assert "30% off" in c.get("/campaigns").text  # the service uses the saved file
        # the form was made from the file before that save: refused, nothing written
        stale = c.post("/campaigns/strategy", data={**form, "offer_value": "35"})
        assert stale.status_code == 400 and "changed since this edit was prepared" in stale.text
        assert "value: 35" not in config.read_text()
    with segmint.open_project(ws_project, read_only=True) as p:
        audit = p.store.query(
            "SELECT actor, action, target FROM audit_log WHERE action = 'config.save'"
        )
    assert audit.values.tolist() == [["ana", "config.save", "playbook.strategies.rfm.Lost"]]


def test_a_new_campaign_is_refused_with_its_problems_in_words(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        page = c.get("/campaigns/new", params={"segmentation": "rfm"})
        assert page.status_code == 200 and "No Purchase" in page.text
        form = {"csrf_token": c.csrf, "base_sha": _base_sha(page.text), "segmentation": "rfm"}
        r = c.post("/campaigns/new/preview", data={**form, "name": DEMO_CAMPAIGN})
        assert "A campaign of that name exists" in r.text
        assert "Choose at least one segment." in r.text
        r = c.post("/campaigns/new", data={**form, "name": "bad name!", "segments": "Lost"})
        assert r.status_code == 400 and "Name the campaign with letters" in r.text


def test_the_campaign_page_shows_the_funnel_arms_and_real_messages(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        r = c.get(f"/campaigns/{DEMO_CAMPAIGN}")
        assert r.status_code == 200
        html = r.text
        for step in ("no consent for the channel and purpose", "frequency cap reached",
                     "no usable address", "holdout (control group)"):  # fmt: skip
            assert step in html
        assert html.count('<article class="message">') == 3
        assert "***@" in html and "Unsubscribe with one click" in html  # masked, real
        assert "/plan" not in html and "/send" not in html  # a viewer sees no change buttons
        assert c.get("/campaigns/nope").status_code == 404
        assert c.get(f"/campaigns/{DEMO_CAMPAIGN}/progress", headers=FRAGMENT).status_code == 200


HTML_BODY = (
    "<html><body><h1 id='hello'>Hello {{ first_name or 'there' }}</h1>"
    "<script>document.getElementById('hello').textContent = 'ran'</script>"
    "<img src='https://tracker.example/pixel.png' alt=''></body></html>"
)


def _point_at(root: Path, sink: SmtpSink) -> None:
    """The copy's e-mail channel sends to ``sink``; a looser frequency cap (the demo sent
    everything minutes ago); the winback template gets an HTML body."""
    from segmint.web._config_edit import propose

    path = root / "segmint.yaml"
    changes = [
        (("playbook", "channels", "email", "host"), "127.0.0.1"),
        (("playbook", "channels", "email", "port"), sink.port),
        (("playbook", "channels", "email", "rate_per_second"), 5000),
        (("playbook", "frequency_cap", "max_messages"), 50),
        (("playbook", "templates", "winback", "html"), HTML_BODY),
    ]
    path.write_text(propose(path, changes).text, encoding="utf-8")


def test_create_plan_preview_and_send_a_campaign_from_the_pages(
    ws_project: Path, browser: Any, tmp_path: Path
) -> None:
    """End to end, as a marketer: a new campaign for a segment without a strategy, its
    plan, three real messages, the confirmation, the live progress, and the SMTP server
    received exactly what the progress says was delivered."""
    shots = screenshot_dir(tmp_path)
    with SmtpSink() as sink:
        _point_at(ws_project, sink)
        with served_ws(ws_project) as s:
            page = open_page(browser, s.url, "ana")
            _create(page, s.url)
            _plan_and_preview(page, shots)
            delivered = _send(page, shots)
            page.close()
            assert delivered > 0
            assert sink.n_received == delivered
            assert len(sink.by_recipient) == delivered  # one message per person
    with segmint.open_project(ws_project, read_only=True) as p:
        actions = p.store.query(
            "SELECT action, target FROM audit_log WHERE actor = 'ana' "
            "AND action NOT IN ('sign_in', 'personal.read') ORDER BY seq"
        )
        reads = p.store.query(
            "SELECT DISTINCT target FROM audit_log WHERE actor = 'ana' AND action = 'personal.read'"
        )
    assert actions.values.tolist() == [
        ["config.save", "playbook.campaigns.no_purchase_winback"],
        ["campaign.plan", "no_purchase_winback"],
        ["campaign.send", "no_purchase_winback"],
    ]
    # the previews and the send opened sealed contacts: under ana's name
    assert reads["target"].tolist() == ["campaign:no_purchase_winback"]


def _create(page: Any, url: str) -> None:
    page.goto(url + "/campaigns")
    page.click("text=New campaign")
    page.select_option("#pick-segmentation", "rfm")
    page.click("text=Show its segments")
    page.fill("#name", "no_purchase_winback")
    page.check("input[name=segments][value='No Purchase']")
    page.select_option("#channel", "email")
    page.select_option("#template", "winback")
    page.fill("#holdout", "0.2")
    page.wait_for_selector("#new-diff .diff .add")  # the live diff
    assert "no_purchase_winback:" in page.inner_text("#new-diff")
    page.click("text=Save to segmint.yaml")
    page.wait_for_url("**/campaigns/no_purchase_winback?saved=1")
    assert page.problems == []


def _plan_and_preview(page: Any, shots: Path) -> None:
    page.click("button:has-text('Plan')")
    page.wait_for_url("**/campaigns/no_purchase_winback?planned=1#plan")
    funnel = page.inner_text("table.funnel")
    assert "no consent for the channel and purpose" in funnel
    frames = page.locator("iframe.mail-frame")
    assert frames.count() == 3
    assert frames.first.get_attribute("sandbox") == ""
    inner = page.frame_locator("iframe.mail-frame").first
    assert inner.locator("#hello").inner_text().startswith("Hello")
    assert not page.problems.off_host(page), page.problems
    page.screenshot(path=str(shots / "campaign-flow-desktop-en.png"), full_page=True)


def _send(page: Any, shots: Path) -> int:
    page.click("text=Send…")
    page.wait_for_url("**/campaigns/no_purchase_winback/send")
    to_send = int(page.get_attribute("[data-to-send]", "data-to-send"))
    page.screenshot(path=str(shots / "campaign-send-flow-desktop-en.png"), full_page=True)
    page.fill("#confirm", "no_purchase_winback")
    page.click("button.danger")
    page.wait_for_url("**/campaigns/no_purchase_winback?sending=1#progress")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the live region refreshes itself every 2 s
        done = page.locator("#progress-live .ok-box").count()
        if done:
            break
        page.wait_for_timeout(500)
    delivered = int(page.get_attribute("[data-delivered]", "data-delivered"))
    assert delivered == to_send
    assert "Send finished" in page.inner_text("#progress-live")
    return delivered


# -- every page in the browser: en and zh, desktop and phone --------------------------------
PAGES = {
    "campaigns": "/campaigns",
    "campaign": f"/campaigns/{DEMO_CAMPAIGN}",
    "campaign-send": f"/campaigns/{DEMO_CAMPAIGN}/send",
    "campaign-strategy": "/campaigns/strategy?segmentation=rfm&segment=At%20Risk",
    "campaign-new": "/campaigns/new?segmentation=rfm&segment=No%20Purchase",
}


def test_the_pages_read_on_a_desktop_and_a_phone_in_english_and_chinese(
    ws_demo: Path, browser: Any, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for width, device in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "ana", width=width, locale=locale)
                for shot, path in PAGES.items():
                    sep = "&" if "?" in path else "?"
                    page.goto(f"{s.url}{path}{sep}lang={'zh-CN' if lang == 'zh' else 'en'}")
                    if "data-preview-now" in page.content():
                        page.wait_for_selector(".diff, .note, .bad-box")
                    assert no_horizontal_scroll(page), (shot, device, lang)
                    page.screenshot(path=str(shots / f"{shot}-{device}-{lang}.png"), full_page=True)
                assert page.problems == [], (device, lang)
                page.close()
    assert (shots / "campaign-send-phone-zh.png").exists()
