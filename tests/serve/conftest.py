"""Service fixtures: a real uvicorn on loopback (a free port), driven with httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import segmint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: Any, *, path: str = "/readyz", timeout: float = 60.0) -> None:
    """Wait until the ``segmint serve`` subprocess ``proc`` answers 200 at ``url + path``;
    fail the test if it exits or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "segmint serve did not start"
        time.sleep(0.1)


class Served:
    """A uvicorn server running ``app`` in a thread; ``url`` is its base URL."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-user demo shop, ingested and segmented (built once)."""
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("serve-shop")
    generate_demo(root, n_users=300, seed=5)
    with segmint.open_project(root) as p:
        p.ingest()
        p.segment(["rfm"])
    return root


@pytest.fixture()
def served(shop: Path) -> Iterator[Served]:
    from segmint.serve import create_app

    with segmint.open_project(shop) as p, Served(create_app(p)) as s:
        yield s


@pytest.fixture()
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        yield c
