"""Every page of the workspace, in one browser pass: it renders with no console error and
no request off the host, every form control has a label, the keyboard reaches the content
first (the skip link), and the page reads at 390 px with no horizontal scroll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.conftest import no_horizontal_scroll, open_page, served_ws

PAGES = [
    "/",
    "/segments",
    "/segments/rfm",
    "/segments/rfm/members",
    "/segments/new",
    "/segments/vip/edit",
    "/people",
    "/campaigns",
    "/campaigns/new?segmentation=rfm",
    "/campaigns/strategy?segmentation=rfm&segment=At%20Risk",
    "/campaigns/winback_at_risk",
    "/campaigns/winback_at_risk/send",
    "/campaigns/spring_reactivation_2026/results",
    "/quality",
    "/jobs",
    "/settings",
]

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && !el.closest('template'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !el.getAttribute('title'))
  .map(el => el.outerHTML.slice(0, 120))"""


def test_every_page_is_labelled_keyboard_first_and_fits_a_phone(
    ws_demo: Path, browser: Any
) -> None:
    with served_ws(ws_demo) as s:
        page = open_page(browser, s.url, "ana", width=390, height=800)
        for path in PAGES:
            response = page.goto(s.url + path)
            assert response is not None and response.status == 200, path
            assert page.evaluate(UNLABELLED) == [], path
            assert no_horizontal_scroll(page), path
            if page.evaluate("document.activeElement === document.body"):  # no autofocus
                page.keyboard.press("Tab")
                assert page.evaluate("document.activeElement.className") == "skip", path
        assert page.problems == []
        page.context.close()
