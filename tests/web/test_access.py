"""Access: a viewer cannot change anything, a request without a session is refused, and a
change without the session's CSRF token is refused — for every change endpoint the
workspace has (found in the app's routes, so a new endpoint is covered by construction)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from tests.web.conftest import served_ws, sign_in

import segmint

#: POST endpoints that change nothing (previews: a live count, a diff, a validation);
#: a viewer may use them, and the test checks that they changed nothing
READ_ONLY_POSTS: set[str] = {"/people"}  # the search (a POST keeps e-mails out of URLs)
#: not workspace changes: the sign-in form, signing out (anyone may)
NOT_CHANGES = {"/login", "/logout"}
SERVICE = ("/v1/", "/u/", "/unsubscribe")


def _flat(routes: list[object]) -> list[object]:
    """Routes, with those of included routers (FastAPI >= 0.16x wraps them) spelled out."""
    out: list[object] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out.extend(_flat(list(inner.routes)) if inner is not None else [route])
    return out


def change_routes(app: object) -> list[tuple[str, str]]:
    out = []
    for route in _flat(app.routes):  # type: ignore[attr-defined]
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", "")
        if path.startswith(SERVICE) or path in NOT_CHANGES:
            continue
        for method in sorted(methods - {"GET", "HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "rfm", path)


def _state(root: Path) -> tuple[str, int]:
    config = hashlib.sha256((root / "segmint.yaml").read_bytes()).hexdigest()
    with segmint.open_project(root, read_only=True) as p:
        audit = int(p.store.scalar("SELECT count(*) FROM audit_log WHERE action <> 'sign_in'"))
    return config, audit


def test_every_change_endpoint_is_refused_to_viewers_strangers_and_forged_forms(
    ws_project: Path,
) -> None:
    from segmint.serve import create_app

    with segmint.open_project(ws_project) as p:
        routes = change_routes(create_app(p))
    assert len(routes) >= 8, routes  # the workspace has that many kinds of change at least
    before = _state(ws_project)
    with served_ws(ws_project) as s:
        with sign_in(s.url, "vic") as vic:
            for method, path in routes:
                url = _fill(path)
                r = vic.request(method, url, data={"csrf_token": vic.csrf})
                if path in READ_ONLY_POSTS:
                    assert r.status_code < 500, (method, path, r.status_code)
                else:
                    assert r.status_code == 403, (method, path, r.status_code)
        with httpx.Client(base_url=s.url) as stranger:
            for method, path in routes:
                r = stranger.request(method, _fill(path), data={"csrf_token": "x"})
                assert r.status_code == 401, (method, path, r.status_code)
        with sign_in(s.url, "ana") as ana:
            for method, path in routes:
                r = ana.request(method, _fill(path), data={"csrf_token": "forged"})
                assert r.status_code == 403, (method, path, r.status_code)
                r = ana.request(method, _fill(path), data={})
                assert r.status_code == 403, (method, path, r.status_code)
    assert _state(ws_project) == before  # nothing was changed, nothing was recorded


@pytest.mark.parametrize(
    "path", ["/", "/segments", "/people", "/campaigns", "/quality", "/jobs", "/settings"]
)
def test_every_page_needs_a_session(ws_demo: Path, path: str) -> None:
    with served_ws(ws_demo) as s:
        r = httpx.get(s.url + path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
