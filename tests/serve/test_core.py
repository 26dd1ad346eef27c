"""The service's core on a real uvicorn: health, readiness, version, docs served offline,
and every error a JSON problem detail (never a traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.serve.conftest import Served, free_port

import segmint
from segmint.store import SCHEMA_VERSION


def test_health_readiness_and_version(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "schema_version": SCHEMA_VERSION}
    v = client.get("/version").json()
    assert v["segmint"] == segmint.__version__ and v["schema_version"] == SCHEMA_VERSION


def test_docs_page_loads_every_asset_from_the_service(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets, page.text
    for url in assets:
        assert url.startswith("/"), f"asset from outside the service: {url}"
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/readyz", "/version"} <= set(spec["paths"])


def _is_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text
    return body


def test_unknown_paths_and_methods_are_problem_details(client: httpx.Client) -> None:
    body = _is_problem(client.get("/nope"), 404)
    assert "GET /nope" in str(body["detail"])
    _is_problem(client.post("/healthz"), 405)


def test_an_unexpected_failure_is_a_500_problem_with_an_incident_id(
    shop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from segmint.errors import NotFoundError
    from segmint.serve import create_app

    with segmint.open_project(shop) as p:
        app: FastAPI = create_app(p)

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("secret internals")

        @app.get("/missing")
        def missing() -> None:
            raise NotFoundError("no user 'x'")

        with Served(app) as s, httpx.Client(base_url=s.url) as c:
            body = _is_problem(c.get("/boom"), 500)
            assert "secret" not in str(body) and body["incident"]
            assert any(str(body["incident"]) in r.getMessage() for r in caplog.records)
            assert _is_problem(c.get("/missing"), 404)["detail"] == "no user 'x'"


def test_readyz_says_when_the_store_is_gone(shop: Path, tmp_path: Path) -> None:
    import shutil

    from segmint.serve import create_app

    root = tmp_path / "shop"
    shutil.copytree(shop, root)
    with segmint.open_project(root) as p:
        app = create_app(p)
        with Served(app) as s, httpx.Client(base_url=s.url) as c:
            assert c.get("/readyz").status_code == 200
            deadline = time.monotonic() + 5
            while app.state.holder.is_open and time.monotonic() < deadline:
                time.sleep(0.05)  # the service lets go of an idle DuckDB file
            Path(p.config.store_url).write_bytes(b"not a database" * 1000)
            body = _is_problem(c.get("/readyz"), 503)
            assert "not reachable" in str(body["detail"])
            assert c.get("/healthz").status_code == 200


def test_segmint_serve_command_starts_and_answers(shop: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(shop), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "") from None
                time.sleep(0.2)
        assert r.status_code == 200
        httpx.get(f"http://127.0.0.1:{port}/u/c2VjcmV0LXVzZXI.c2ln.k1?x=1", timeout=5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"on http://127.0.0.1:{port}" in out
    # segmint's access log, not uvicorn's (which prints the client address and full URL)
    assert "GET /readyz 200" in out and "GET /u/{token} 400" in out
    assert "c2VjcmV0" not in out and "x=1" not in out and "HTTP/1.1" not in out


def test_several_workers_on_duckdb_is_a_clear_error(shop: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "segmint", "serve", "-p", str(shop), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "one writer" in res.stdout + res.stderr and "PostgreSQL" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_the_access_log_holds_no_token_and_no_query(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    from segmint.serve._app import loggable_path

    assert loggable_path("/u/abc.def.k1/preferences") == "/u/{token}/preferences"
    assert loggable_path("/v1/decide/C000042") == "/v1/decide/{user_id}"
    assert loggable_path("/v1/decide") == "/v1/decide"  # ?anonymous_id= is never logged

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "segmint.serve.access"]

    with caplog.at_level("INFO", logger="segmint.serve.access"):
        client.get("/u/dXNlci00Mg.c2ln.k1", params={"email": "a@b.example"})
        client.get("/healthz")
        # the server thread writes its line just after the response has gone out
        deadline = time.monotonic() + 5
        while len(lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    got = lines()
    assert any(line.startswith("GET /u/{token} 400 ") for line in got), got
    assert any(line.startswith("GET /healthz 200 ") for line in got), got
    assert not any("dXNlci00Mg" in line or "a@b.example" in line for line in got)
