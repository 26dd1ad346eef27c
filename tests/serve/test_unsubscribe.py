"""Unsubscribe and preference pages on a real uvicorn: the links in sent messages work.

A person confirms on a page (English or Chinese by Accept-Language); a mail client's RFC
8058 one-click POST unsubscribes without a page; the older ``/unsubscribe?token=`` links
resolve too; every change is a new consent row with its source; a malformed, forged,
tampered or re-targeted token changes nothing. In Chromium the pages read on a phone.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import Served

import segmint
from segmint.campaigns import key_ring, make_token
from segmint.campaigns._keys import KeyRing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def site(shop: Path, tmp_path: Path) -> Iterator[tuple[Any, Served]]:
    """A private copy of the shop, served."""
    from segmint.serve import create_app

    root = tmp_path / "shop"
    shutil.copytree(shop, root)
    with segmint.open_project(root) as p, Served(create_app(p)) as s:
        yield p, s


def _token(p: Any, user: str, channel: str = "email", purpose: str = "marketing") -> str:
    return make_token(key_ring(p.root), user, channel, purpose)


def _user(p: Any, n: int = 0) -> str:
    return str(p.store.scalar(f"SELECT user_id FROM users ORDER BY user_id LIMIT 1 OFFSET {n}"))


def _consents(p: Any, user: str) -> list[tuple[str, str, bool, str]]:
    rows = p.store.query(
        "SELECT channel, purpose, granted, source FROM consents WHERE user_id = ? "
        "ORDER BY recorded_at, channel, purpose",
        [user],
    )
    return [
        (r.channel, r.purpose, bool(r.granted), r.source if isinstance(r.source, str) else None)
        for r in rows.itertuples()
    ]


def test_confirm_then_unsubscribe_appends_one_consent_row(site: tuple[Any, Served]) -> None:
    p, s = site
    user = _user(p)
    token = _token(p, user)
    before = _consents(p, user)
    with httpx.Client(base_url=s.url) as c:
        page = c.get(f"/u/{token}")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Stop marketing messages by e-mail?" in page.text
        assert f'action="/u/{token}"' in page.text
        assert _consents(p, user) == before  # looking changes nothing
        done = c.post(f"/u/{token}")
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        again = c.post(f"/u/{token}")
        assert "You were already unsubscribed" in again.text
    after = _consents(p, user)
    assert after[: len(before)] == before  # history kept
    assert after[len(before) :] == [("email", "marketing", False, "unsubscribe")]


def test_one_click_post_and_the_older_link_form(site: tuple[Any, Served]) -> None:
    p, s = site
    a, b = _user(p, 1), _user(p, 2)
    with httpx.Client(base_url=s.url) as c:
        r = c.post(
            f"/u/{_token(p, a)}",
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert (r.status_code, r.text) == (200, "unsubscribed")
        legacy = c.get("/unsubscribe", params={"token": _token(p, b, "sms")})
        assert legacy.status_code == 200 and "by SMS" in legacy.text
        assert c.post("/unsubscribe", params={"token": _token(p, b, "sms")}).status_code == 200
    assert _consents(p, a)[-1] == ("email", "marketing", False, "unsubscribe")
    assert _consents(p, b)[-1] == ("sms", "marketing", False, "unsubscribe")


def _tampered(token: str) -> str:
    payload, tag, key = token.split(".")
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    return f"{payload}.{flipped}.{key}"


def _retargeted(token: str, other: str) -> str:
    """The signature of one person's token on a payload naming someone else."""
    payload, tag, key = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    swapped = other.encode() + raw[raw.index(b"\x1f") :]
    return f"{base64.urlsafe_b64encode(swapped).rstrip(b'=').decode()}.{tag}.{key}"


def test_bad_tokens_change_nothing(site: tuple[Any, Served]) -> None:
    p, s = site
    victim, attacker = _user(p, 3), _user(p, 4)
    good = _token(p, attacker)
    forged = make_token(KeyRing(keys={"k-other": b"x" * 32}, active="k-other"), victim)
    before = p.store.count("consents")
    with httpx.Client(base_url=s.url) as c:
        for bad in ("garbage", _tampered(good), _retargeted(good, victim), forged, "a.b.c"):
            for r in (c.get(f"/u/{bad}"), c.post(f"/u/{bad}"), c.get(f"/u/{bad}/preferences")):
                assert r.status_code == 400, (bad, r.status_code)
                assert "This link is not valid" in r.text and "Traceback" not in r.text
            one_click = c.post(f"/u/{bad}", content="List-Unsubscribe=One-Click")
            assert one_click.status_code == 400
    assert p.store.count("consents") == before


def test_a_token_for_an_erased_person_is_a_clear_page(site: tuple[Any, Served]) -> None:
    p, s = site
    token = _token(p, "nobody-here")
    with httpx.Client(base_url=s.url) as c:
        r = c.get(f"/u/{token}")
        assert r.status_code == 404 and "We could not find you" in r.text


def test_preferences_switch_each_channel_and_purpose(site: tuple[Any, Served]) -> None:
    p, s = site
    user = _user(p, 5)
    token = _token(p, user)
    with httpx.Client(base_url=s.url) as c:
        page = c.get(f"/u/{token}/preferences")
        assert page.status_code == 200
        assert 'name="email.marketing"' in page.text
        before = len(_consents(p, user))
        saved = c.post(f"/u/{token}/preferences", data={"sms.marketing": "on"})
        assert "Your preferences are saved" in saved.text, (saved.status_code, saved.text[:300])
        rows = _consents(p, user)[before:]
        assert ("sms", "marketing", True, "preferences") in rows
        assert ("email", "marketing", False, "preferences") in rows or not any(
            r[:2] == ("email", "marketing") and r[2] for r in _consents(p, user)[:before]
        )
        # saving the same choices again changes nothing
        n = len(_consents(p, user))
        c.post(f"/u/{token}/preferences", data={"sms.marketing": "on"})
        assert len(_consents(p, user)) == n
        again = c.get(f"/u/{token}/preferences")
        assert 'name="sms.marketing" checked' in again.text


def test_pages_speak_chinese_when_asked(site: tuple[Any, Served]) -> None:
    p, s = site
    token = _token(p, _user(p, 6))
    zh = {"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"}
    with httpx.Client(base_url=s.url) as c:
        page = c.get(f"/u/{token}", headers=zh)
        assert '<html lang="zh-CN">' in page.text and "不再通过电子邮件接收营销消息？" in page.text
        assert "退订" in c.post(f"/u/{token}", headers=zh).text
        en = c.get(f"/u/{token}", headers={"accept-language": "en-GB,zh;q=0.1"})
        assert '<html lang="en">' in en.text


def test_every_page_sentence_has_a_chinese_translation() -> None:
    from segmint._i18n import _catalog
    from segmint.serve._pages import CHANNEL_WORDS, TEXTS

    catalog = _catalog("zh-CN")
    assert catalog is not None
    words = [*TEXTS, *CHANNEL_WORDS.values(), "marketing", "newsletter", "analytics"]
    missing = [w for w in words if not (catalog.get(w) and catalog.get(w).string)]
    assert missing == []


def test_pages_on_a_phone_in_chromium(
    site: tuple[Any, Served], browser: Any, tmp_path: Path
) -> None:
    p, s = site
    token = _token(p, _user(p, 7))
    shots = {}
    for lang in ("en", "zh-CN"):
        ctx = browser.new_context(
            viewport={"width": 390, "height": 844}, locale=lang, device_scale_factor=2
        )
        page = ctx.new_page()
        outside: list[str] = []
        page.on("request", lambda r, seen=outside: seen.append(r.url))
        page.goto(f"{s.url}/u/{token}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        button = page.get_by_role("button")
        assert button.bounding_box()["height"] >= 44  # a thumb-sized target
        page.goto(f"{s.url}/u/{token}/preferences")
        boxes = page.get_by_role("checkbox")
        assert boxes.count() >= 1
        for i in range(boxes.count()):  # every switch has a label a screen reader reads
            label = page.locator(f"label[for='{boxes.nth(i).get_attribute('id')}']")
            assert label.inner_text().strip()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shots[lang] = tmp_path / f"preferences-{lang}.png"
        page.screenshot(path=str(shots[lang]), full_page=True)
        page.goto(f"{s.url}/u/{token}")
        page.get_by_role("button").click()
        page.wait_for_load_state()
        assert ("已退订" if lang == "zh-CN" else "unsubscribed") in page.inner_text("h1")
        assert [u for u in outside if not u.startswith(s.url)] == []
        ctx.close()
    docs = ROOT / "docs" / "img"
    shutil.copy(shots["en"], docs / "preferences-phone.png")
    shutil.copy(shots["zh-CN"], docs / "preferences-phone-zh.png")
    print("screenshots:", *shots.values())
