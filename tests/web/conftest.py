"""Workspace fixtures: a small but complete demo project (segments, recommendations,
campaigns sent, an evaluated experiment), the service on a real uvicorn on loopback,
signed-in httpx clients, and Debian's Chromium driven by Playwright.

- ``ws_demo``: the demo built once per session (read it, never change it).
- ``ws_project``: a private copy of it for one test (change it freely).
- ``served_ws(project)``: the service over a project folder (context manager).
- ``sign_in(url, name)``: an httpx client with a session; ``client.csrf`` is its token.
- ``browser`` / ``open_page(url, name)``: a Playwright page, signed in, that records
  console errors and requests to any other host (``page.problems``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import Served

import segmint

PASSWORDS = {"ana": "ana-editor-pass", "vic": "vic-viewer-pass"}
"""People of the demo workspace: ``ana`` is an editor, ``vic`` a viewer."""
ROLES = {"ana": "editor", "vic": "viewer"}
DEMO_USERS = 1500


def _add_people(root: Path) -> None:
    from segmint.web import add_person

    with segmint.open_project(root) as p:
        for name, password in PASSWORDS.items():
            add_person(p.store, name, password, ROLES[name])


@pytest.fixture(scope="session")
def ws_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segmint demo`` at 1,500 users (every step: ingest, segments, recommendations,
    campaigns to a local SMTP sink, measurement), plus the workspace's two people."""
    root = tmp_path_factory.mktemp("ws") / "demo"
    cmd = [sys.executable, "-m", "segmint", "demo", "--dir", str(root)]
    cmd += ["--users", str(DEMO_USERS), "--seed", "11"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    _add_people(root)
    return root


@pytest.fixture()
def ws_project(ws_demo: Path, tmp_path: Path) -> Path:
    """A private copy of the demo project for a test that changes it."""
    return copy_demo(ws_demo, tmp_path / "demo")


def copy_demo(src: Path, root: Path) -> Path:
    """A copy of the demo project at ``root``: its files and its master key (the store's
    sealed values open with it), not its service state (sessions, spool, locks)."""
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("*.wal", ".segmint"))
    key = src / ".segmint" / "master.key"
    if key.exists():
        (root / ".segmint").mkdir(exist_ok=True)
        shutil.copy2(key, root / ".segmint" / "master.key")
    return root


@contextmanager
def served_ws(root: Path) -> Iterator[Served]:
    """The service (with the workspace) over the project at ``root``."""
    from segmint.serve import create_app

    with segmint.open_project(root) as p, Served(create_app(p)) as s:
        yield s


class Client(httpx.Client):
    csrf: str = ""


def _csrf(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    return m.group(1) if m else ""


@contextmanager
def sign_in(url: str, name: str = "ana", password: str | None = None) -> Iterator[Client]:
    """An httpx client signed in as ``name`` for the block (its ``csrf`` attribute holds
    the session's CSRF token, for ``data={"csrf_token": ...}`` or ``X-CSRF-Token``)."""
    with Client(base_url=url, timeout=30, follow_redirects=False) as client:
        _sign_in(client, name, password)
        yield client


def _sign_in(client: Client, name: str, password: str | None) -> None:
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    done = client.post(
        "/login",
        data={
            "name": name,
            "password": password or PASSWORDS[name],
            "login_token": token.group(1),
            "next": "/",
        },
    )
    assert done.status_code == 303, (done.status_code, done.text[:500])
    client.csrf = _csrf(client.get("/settings").text)
    assert client.csrf


@pytest.fixture()
def served_demo(ws_demo: Path) -> Iterator[Served]:
    """The service over the shared demo (for tests that only read)."""
    with served_ws(ws_demo) as s:
        yield s


class Problems(list[str]):
    """Console errors and off-host requests seen by a page."""

    def off_host(self, page: Any, wait_ms: int = 3000) -> list[str]:
        """The off-host requests left once the browser has reported the blocked ones.

        Chromium reports a request the e-mail preview's Content-Security-Policy blocks
        first as a request, then as failed (BLOCKED_BY_CSP, which takes it off the list):
        an assertion between the two events saw a blocked pixel as off-host (1 run in
        ~3). Waits up to ``wait_ms`` for the list to empty."""

        def left() -> list[str]:
            # a request the browser refused by the CSP is named in its console message
            console = " ".join(p for p in self if p.startswith("console:"))
            return [
                p for p in self
                if p.startswith("off-host") and p.removeprefix("off-host request: ") not in console
            ]  # fmt: skip

        for _ in range(max(1, wait_ms // 100)):
            if not left():
                return []
            page.wait_for_timeout(100)
        return left()


def open_page(
    browser: Any,
    url: str,
    name: str = "ana",
    *,
    width: int = 1280,
    height: int = 900,
    locale: str = "en-US",
) -> Any:
    """A signed-in Playwright page at ``url`` (the service's base URL); ``page.problems``
    lists console errors, page errors and requests to any host but the service's."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, locale=locale, device_scale_factor=1
    )
    page = context.new_page()
    problems = Problems()
    host = httpx.URL(url).host

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            problems.append(f"console: {msg.text}")

    def on_request(req: Any) -> None:
        target = httpx.URL(req.url)
        if target.scheme in ("http", "https", "ws", "wss") and target.host != host:
            problems.append(f"off-host request: {req.url}")

    def on_failed(req: Any) -> None:
        # blocked inside the browser (the e-mail preview's Content-Security-Policy): it
        # never left the machine, so it is not a request off the host
        if "BLOCKED_BY_CSP" in (req.failure or "") or "BLOCKED_BY_RESPONSE" in (req.failure or ""):
            line = f"off-host request: {req.url}"
            if line in problems:
                problems.remove(line)

    page.on("console", on_console)
    page.on("requestfailed", on_failed)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", on_request)
    page.goto(url + "/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/login" not in u)
    page.problems = problems
    return page


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: ``$SEGMINT_SCREENSHOTS`` if set (the
    docs' pictures are made with ``SEGMINT_SCREENSHOTS=docs/img/workspace``), else the
    test's temporary folder."""
    import os

    out = Path(os.environ.get("SEGMINT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out
