"""The marketer's whole flow in the browser, as the issue states it: create a rule segment,
plan a campaign for it, preview, send to the local SMTP sink, see the delivery counts and
the results page — every step through the pages, nothing through the CLI."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.web.conftest import open_page, screenshot_dir, served_ws

import segmint
from segmint.campaigns import SmtpSink

SEGMENTATION, SEGMENT, CAMPAIGN = "big_spenders", "Big spenders", "big_spenders_thanks"


def test_rule_segment_to_campaign_to_results_in_the_pages(
    ws_project: Path, browser: Any, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    with SmtpSink() as sink:
        _point_at(ws_project, sink)
        with served_ws(ws_project) as s:
            page = open_page(browser, s.url, "ana")
            counted = _rule_segment(page, s.url)
            audience = _campaign(page, s.url)
            delivered = _send(page, shots)
            _results(page, shots)
            problems = list(page.problems)
            page.context.close()
    assert problems == []  # no console error, no request off the host
    assert 0 < audience <= counted
    assert delivered > 0 and sink.n_received == delivered
    with segmint.open_project(ws_project, read_only=True) as p:
        sizes = p.segment_run(SEGMENTATION).assignments["segment"].value_counts()
        sent = p.store.scalar(
            "SELECT count(*) FROM deliveries WHERE campaign = ? AND status = 'sent'", [CAMPAIGN]
        )
    assert int(sizes[SEGMENT]) == counted  # the live count was the truth
    assert int(sent) == delivered
    print(f"flow: segment {counted}, audience {audience}, delivered {delivered}")


def _point_at(root: Path, sink: SmtpSink) -> None:
    """The copy's e-mail channel sends to ``sink``, with a loose frequency cap (the demo
    sent everything minutes ago); the templates stay the demo's own."""
    from segmint.web._config_edit import propose

    path = root / "segmint.yaml"
    changes = [
        (("playbook", "channels", "email", "host"), "127.0.0.1"),
        (("playbook", "channels", "email", "port"), sink.port),
        (("playbook", "channels", "email", "rate_per_second"), 5000),
        (("playbook", "frequency_cap", "max_messages"), 50),
    ]
    path.write_text(propose(path, changes).text, encoding="utf-8")


def _rule_segment(page: Any, url: str) -> int:
    """New rule segmentation; the live count before saving; save; run it."""
    page.goto(url + "/segments/new")
    page.fill("#seg-name", SEGMENTATION)
    page.fill("#rs-0", SEGMENT)
    page.fill("#rw-0", "monetary > 1500")
    page.fill("#seg-default", "Everyone else")
    page.wait_for_selector("#preview [data-count]")
    text = page.inner_text("#preview")
    found = re.search(re.escape(SEGMENT) + r"\D*([\d,]+)", text)
    assert found, text
    counted = int(found.group(1).replace(",", ""))
    page.click("text=Save to segmint.yaml")
    page.wait_for_url(f"**/segments/{SEGMENTATION}**")
    page.click("button:has-text('Run now')")
    page.wait_for_selector(f"td:has-text('{SEGMENT}')")
    assert counted > 0
    return counted


def _campaign(page: Any, url: str) -> int:
    """A campaign for the new segment, planned, with three real messages previewed."""
    page.goto(url + "/campaigns/new")
    page.select_option("#pick-segmentation", SEGMENTATION)
    page.click("text=Show its segments")
    page.fill("#name", CAMPAIGN)
    page.check(f"input[name=segments][value='{SEGMENT}']")
    page.select_option("#channel", "email")
    page.select_option("#template", "winback")
    page.fill("#holdout", "0.2")
    page.wait_for_selector("#new-diff .diff .add")
    page.click("text=Save to segmint.yaml")
    page.wait_for_url(f"**/campaigns/{CAMPAIGN}?saved=1")
    page.click("button:has-text('Plan')")
    page.wait_for_url(f"**/campaigns/{CAMPAIGN}?planned=1#plan")
    funnel = page.inner_text("table.funnel")
    assert "no consent" in funnel
    assert page.locator("article.message").count() == 3  # three real messages
    page.click("text=Send…")
    page.wait_for_url(f"**/campaigns/{CAMPAIGN}/send")
    return int(page.get_attribute("[data-to-send]", "data-to-send"))


def _send(page: Any, shots: Path) -> int:
    page.fill("#confirm", CAMPAIGN)
    page.click("button.danger")
    page.wait_for_url(f"**/campaigns/{CAMPAIGN}?sending=1#progress")
    deadline = time.monotonic() + 120
    while not page.locator("#progress-live .ok-box").count():
        assert time.monotonic() < deadline, page.inner_text("#progress-live")
        page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "flow-sent-desktop-en.png"), full_page=True)
    return int(page.get_attribute("[data-delivered]", "data-delivered"))


def _results(page: Any, shots: Path) -> None:
    page.goto(page.url.split("?")[0] + "/results")
    if page.locator("button:has-text('Measure now')").count():
        page.click("button:has-text('Measure now')")
        page.wait_for_url(f"**/campaigns/{CAMPAIGN}/results**")
    text = page.inner_text("main")
    assert "Verdict" in text or "verdict" in text, text[:800]
    page.screenshot(path=str(shots / "flow-results-desktop-en.png"), full_page=True)
