"""Sign-in, sessions, CSRF and roles of the workspace."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from tests.web.conftest import served_ws, sign_in


def test_a_page_without_a_session_redirects_to_sign_in(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        r = httpx.get(s.url + "/segments?x=1", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/segments%3Fx%3D1"
        # anything that is not a page is refused outright
        r = httpx.post(s.url + "/logout", data={"csrf_token": "x"})
        assert r.status_code == 401


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        cookie = next(h for h in c.cookies.jar if h.name == "segmint_session")
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert c.get("/").status_code == 200
        assert "ana" in c.get("/").text
        # sign-out needs the CSRF token
        assert c.post("/logout", data={"csrf_token": "forged"}).status_code == 403
        assert c.post("/logout", data={"csrf_token": c.csrf}).status_code == 303
        assert c.get("/").status_code == 303  # the session is gone


def test_a_wrong_password_is_refused_and_repeated_failures_are_throttled(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, httpx.Client(base_url=s.url) as c:
        _fail_six_times(c)


def _fail_six_times(c: httpx.Client) -> None:
    for i in range(6):
        form = c.get("/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert token
        r = c.post(
            "/login",
            data={"name": "ana", "password": "wrong-password", "login_token": token.group(1)},
        )
        assert r.status_code == (401 if i < 5 else 429), (i, r.status_code)
    assert "segmint_session" not in c.cookies


def test_the_login_form_needs_its_own_token(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s:
        r = httpx.post(s.url + "/login", data={"name": "ana", "password": "ana-editor-pass"})
        assert r.status_code == 403


def test_a_request_from_another_origin_is_refused(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        r = c.post("/logout", data={"csrf_token": c.csrf}, headers={"Origin": "https://evil.test"})
        assert r.status_code == 403


def test_the_password_is_stored_hashed(ws_demo: Path) -> None:
    import segmint

    with segmint.open_project(ws_demo, read_only=True) as p:
        stored = p.store.query("SELECT password_hash FROM workspace_users WHERE name = 'ana'")
    value = str(stored.iloc[0, 0])
    assert value.startswith("scrypt$") and "ana-editor-pass" not in value


def test_pages_forbid_other_hosts_inline_script_and_framing(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "vic") as c:
        for path in ("/", "/campaigns", "/settings"):
            csp = c.get(path).headers["content-security-policy"]
            assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
