"""Keys, scopes and rate limits of the service, on a real uvicorn (issue 19, point 8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends
from tests.serve.conftest import Served
from typer.testing import CliRunner

import segmint
from segmint.cli import app as cli

runner = CliRunner()


def _app_with_guarded_routes(project: Any) -> Any:
    """The service plus one endpoint per scope (the real ones come with other steps)."""
    from segmint.serve import create_app
    from segmint.serve._auth import KeyRing, require

    app = create_app(project)
    for scope in ("write", "decide", "admin"):
        needs = Depends(require(scope))

        def endpoint(key: Any = needs) -> dict[str, str]:
            return {"key": key.key_id, "scope": key.scope}

        app.add_api_route(f"/t/{scope}", endpoint, methods=["GET"], summary=f"needs {scope}")
    ring = app.state.keys
    app.state.keys = KeyRing(ring._load, ttl=0.5)  # a revoked key stops within 0.5 s here
    return app


@pytest.fixture(scope="module")
def keyed(shop: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A served shop with keys of every scope (and a slow one: 5 a second)."""
    from segmint.serve import create_key

    with segmint.open_project(shop) as p:
        keys = {s: create_key(p.store, f"t-{s}", s) for s in ("write", "decide", "admin")}
        keys["slow"] = create_key(p.store, "t-slow", "decide", rate_per_second=5)
        keys["revoked"] = create_key(p.store, "t-revoked", "write")
        with Served(_app_with_guarded_routes(p)) as s:
            yield s.url, keys


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.mark.parametrize(
    ("key", "allowed"),
    [("write", {"write"}), ("decide", {"decide"}), ("admin", {"write", "decide", "admin"})],
)
def test_each_scope_reaches_only_its_endpoints(
    keyed: tuple[str, dict[str, str]], key: str, allowed: set[str]
) -> None:
    url, keys = keyed
    with httpx.Client(base_url=url, auth=(keys[key], "")) as c:  # Basic, Segment style
        for scope in ("write", "decide", "admin"):
            r = c.get(f"/t/{scope}")
            if scope in allowed:
                assert r.status_code == 200 and r.json()["key"] == keys[key][:11]
            else:
                assert key in _problem(r, 403)["detail"]


def test_bearer_works_and_no_key_is_a_401_problem(keyed: tuple[str, dict[str, str]]) -> None:
    url, keys = keyed
    with httpx.Client(base_url=url) as c:
        headers = {"Authorization": f"Bearer {keys['admin']}"}
        assert c.get("/t/admin", headers=headers).status_code == 200
        r = c.get("/t/write")
        assert "needs a key" in _problem(r, 401)["detail"]
        assert r.headers["www-authenticate"].startswith("Basic")
        assert "unknown" in _problem(c.get("/t/write", auth=("wk_made_up", "")), 401)["detail"]


def test_public_endpoints_need_no_key(keyed: tuple[str, dict[str, str]]) -> None:
    url, _ = keyed
    with httpx.Client(base_url=url) as c:
        for path in ("/healthz", "/readyz", "/version", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assert c.get("/u/not-a-token").status_code == 400  # the page says the link is bad


def test_a_revoked_key_stops_working_within_the_ttl(
    keyed: tuple[str, dict[str, str]], shop: Path
) -> None:
    url, keys = keyed
    with httpx.Client(base_url=url, auth=(keys["revoked"], "")) as c:
        assert c.get("/t/write").status_code == 200
        result = runner.invoke(cli, ["keys", "revoke", keys["revoked"][:11], "-p", str(shop)])
        assert result.exit_code == 0, result.output
        revoked = time.monotonic()
        while c.get("/t/write").status_code == 200:
            assert time.monotonic() - revoked < 2.0, "still accepted 2 s after revoking"
            time.sleep(0.05)
        assert "revoked" in _problem(c.get("/t/write"), 401)["detail"]


def test_a_key_over_its_rate_gets_429_with_retry_after(
    keyed: tuple[str, dict[str, str]],
) -> None:
    url, keys = keyed
    with httpx.Client(base_url=url, auth=(keys["slow"], "")) as c:
        codes = [c.get("/t/decide") for _ in range(40)]
        ok = [r for r in codes if r.status_code == 200]
        limited = [r for r in codes if r.status_code == 429]
        # 5 a second with a burst of 5 x 400/200 = 10: about 10 pass at once, then none
        assert 8 <= len(ok) <= 16 and len(ok) + len(limited) == 40
        body = _problem(limited[0], 429)
        assert "5 a second" in body["detail"]
        assert int(limited[0].headers["retry-after"]) >= 1
        time.sleep(0.5)  # 2.5 tokens back
        assert c.get("/t/decide").status_code == 200
    with httpx.Client(base_url=url, auth=(keys["decide"], "")) as c:  # other keys unaffected
        assert c.get("/t/decide").status_code == 200


def test_public_pages_are_limited_per_address(keyed: tuple[str, dict[str, str]]) -> None:
    from segmint.serve._limits import PUBLIC_BURST

    url, _ = keyed
    with httpx.Client(base_url=url) as c:
        codes = [c.get(f"/u/guess-number-{i}").status_code for i in range(PUBLIC_BURST + 20)]
        assert codes.count(429) >= 10 and set(codes) == {400, 429}
        assert codes[: PUBLIC_BURST - 5].count(429) == 0  # a person never sees it
        r = c.get("/u/one-more")
        assert _problem(r, 429) and int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").status_code == 200  # only the public pages are limited


def test_openapi_declares_keys_and_their_problems(keyed: tuple[str, dict[str, str]]) -> None:
    url, _ = keyed
    doc = httpx.get(f"{url}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["basicKey"]["scheme"] == "basic" and schemes["bearerKey"]["scheme"] == "bearer"
    operations = [doc["paths"][f"/t/{s}"]["get"] for s in ("write", "decide", "admin")]
    operations += [doc["paths"]["/v1/keys"]["get"], doc["paths"]["/v1/keys"]["post"]]
    for op in operations:  # routes added directly and through an included router
        assert op["security"]
        for status in ("401", "403", "429"):
            content = op["responses"][status]["content"]["application/problem+json"]
            assert content["schema"]["$ref"] == "#/components/schemas/Problem"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    page = doc["paths"]["/u/{token}"]["post"]  # public, but limited per address
    assert (
        "security" not in page and "application/problem+json" in page["responses"]["429"]["content"]
    )


def test_admin_keys_endpoints_create_list_and_revoke(keyed: tuple[str, dict[str, str]]) -> None:
    url, keys = keyed
    with httpx.Client(base_url=url, auth=(keys["admin"], "")) as c:
        made = c.post("/v1/keys", json={"name": "shop-web", "scope": "write"})
        assert made.status_code == 201, made.text
        secret, key_id = made.json()["secret"], made.json()["key_id"]
        listed = c.get("/v1/keys").json()
        assert key_id in {k["key_id"] for k in listed}
        assert secret not in str(listed) and "hash" not in str(listed)
        assert c.delete(f"/v1/keys/{key_id}").json()["already_revoked"] is False
        assert "no API key" in _problem(c.delete("/v1/keys/wk_nothing"), 404)["detail"]
        assert _problem(c.post("/v1/keys", json={"name": "x", "scope": "root"}), 400)
    with httpx.Client(base_url=url, auth=(keys["decide"], "")) as c:
        assert _problem(c.get("/v1/keys"), 403)


def test_token_buckets_are_exact_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from segmint.serve._limits import RateLimits

    limits = RateLimits(rate_per_second=0.001, burst=100)  # no refill during the test
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: limits.wait_for("k"), range(400)))
    assert sum(w == 0 for w in waits) == 100  # the burst, not one more


def test_proxy_headers_give_each_client_its_own_limit(shop: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from tests.serve.conftest import free_port

    root = tmp_path / "shop"
    shutil.copytree(shop, root)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port),
         "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=url) as c:
            one = {"X-Forwarded-For": "203.0.113.7"}
            codes = [c.get(f"/u/guess-{i}", headers=one).status_code for i in range(80)]
            assert 429 in codes
            other = {"X-Forwarded-For": "198.51.100.9"}
            assert c.get("/u/guess", headers=other).status_code == 400  # its own bucket
    finally:
        proc.terminate()
        proc.wait(timeout=20)
