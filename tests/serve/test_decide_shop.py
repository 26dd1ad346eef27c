"""examples/personalized-shop in Chromium: the page, served from another origin, fetches its
decision (CORS) and restyles itself; two segments look different, a control user sees the
default. Screenshots go to docs/img/shop-*.png."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.serve.conftest import Served
from tests.serve.test_decide import CAMPAIGN, ORIGIN, _arm_users, _users, make_decide_project

import segmint

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "personalized-shop"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def static_site() -> Iterator[str]:
    """The example page from its own loopback server: another origin than the API's."""
    handler = functools.partial(_Quiet, directory=str(SHOP))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def decide_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decide-shop")
    make_decide_project(root)
    return root


@pytest.fixture()
def api(decide_shop: Path, tmp_path: Path, static_site: str) -> Iterator[tuple[Any, str, str]]:
    """The decide shop served, allowing the static site's origin; (project, url, key)."""
    from segmint.serve import create_app
    from segmint.serve._auth import create_key

    root = tmp_path / "shop"
    shutil.copytree(decide_shop, root)
    cfg = root / "segmint.yaml"
    cfg.write_text(cfg.read_text().replace(ORIGIN, static_site))
    with segmint.open_project(root) as p:
        key = create_key(p.store, "shop page", "decide")
        with Served(create_app(p)) as s:
            yield p, s.url, key


def _look(browser: Any, page_url: str, shot: Path, width: int = 900) -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_url)
    page.wait_for_selector("body[data-state='ready']", timeout=10_000)
    look = page.evaluate(
        """() => ({
            background: getComputedStyle(document.body).backgroundColor,
            variant: document.body.dataset.variant,
            layout: document.body.dataset.layout,
            title: document.getElementById('hero-title').textContent,
            offer: document.getElementById('offer').textContent,
            products: [...document.querySelectorAll('#products li')].length,
            overflow: document.documentElement.scrollWidth - window.innerWidth,
        })"""
    )
    page.screenshot(path=str(shot), full_page=True)
    ctx.close()
    return {**look, "requests": requests, "errors": errors}


def test_the_shop_restyles_per_segment_and_control_sees_the_default(
    api: tuple[Any, str, str], static_site: str, browser: Any, tmp_path: Path
) -> None:
    p, url, key = api
    champion = _users(p, "rfm", "Champions")[0]
    treated = _arm_users(p, "treatment")[0]  # At Risk / Can't Lose Them, UI 'winback'
    control = _arm_users(p, "control")[0]
    looks = {}
    for name, user in (("champions", champion), ("at-risk", treated), ("control", control)):
        page_url = f"{static_site}/index.html?user={user}&api={url}&key={key}"
        looks[name] = _look(browser, page_url, tmp_path / f"shop-{name}.png")
    vip, winback, default = looks["champions"], looks["at-risk"], looks["control"]
    assert (vip["variant"], winback["variant"], default["variant"]) == (
        "vip",
        "winback",
        "default",
    )
    assert vip["background"] == "rgb(20, 17, 11)"  # #14110b
    assert winback["background"] == "rgb(255, 248, 239)"  # #fff8ef
    assert default["background"] == "rgb(255, 255, 255)"
    assert vip["title"] == "Early access is yours"
    assert winback["title"] == "We miss you: 20% off" and "COMEBACK20" in winback["offer"]
    assert default["title"] == "Welcome to the shop" and default["offer"] == ""
    for look in looks.values():
        assert look["products"] == 6 and look["errors"] == []
        outside = [u for u in look["requests"] if not u.startswith("http://127.0.0.1:")]
        assert outside == []
        assert any(u.startswith(f"{url}/v1/decide/") for u in look["requests"])  # cross-origin
    docs = ROOT / "docs" / "img"
    for name in looks:
        shutil.copy(tmp_path / f"shop-{name}.png", docs / f"shop-{name}.png")
    assert CAMPAIGN  # the control user is the win-back campaign's


def test_the_shop_reads_on_a_phone(
    api: tuple[Any, str, str], static_site: str, browser: Any, tmp_path: Path
) -> None:
    """390 px wide (a phone): the decided theme, no horizontal scroll, every product shown."""
    p, url, key = api
    champion = _users(p, "rfm", "Champions")[0]
    shot = tmp_path / "shop-phone.png"
    page_url = f"{static_site}/index.html?user={champion}&api={url}&key={key}"
    look = _look(browser, page_url, shot, width=390)
    assert look["variant"] == "vip" and look["errors"] == []
    assert look["overflow"] <= 0, f"{look['overflow']} px of horizontal scroll on a phone"
    assert look["products"] == 6
    shutil.copy(shot, ROOT / "docs" / "img" / "shop-phone.png")
