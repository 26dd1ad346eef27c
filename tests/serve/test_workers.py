"""``segmint serve --workers 2`` on PostgreSQL, with CLI commands beside it (issue 19, point 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from tests.serve.conftest import free_port

import segmint
from segmint.store import CLAIM_FILE


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segmint", *args], capture_output=True, text=True, timeout=60
    )


def _parent(proc_dir: Path) -> int:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_two_workers_on_postgresql_beside_the_cli(tmp_path: Path, pg_url: str) -> None:
    from segmint.serve import create_key

    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump({"store": pg_url}), encoding="utf-8")
    with segmint.open_project(tmp_path) as p:
        admin = create_key(p.store, "ops", "admin")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(tmp_path), "--port", str(port),
         "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.2)
        assert not (tmp_path / CLAIM_FILE).exists()  # a shared store: no claim
        # a key made by the CLI while the service runs is accepted by both workers
        made = _cli("keys", "create", "web", "--scope", "decide", "-p", str(tmp_path), "--json")
        assert made.returncode == 0, made.stderr
        with httpx.Client(base_url=url, auth=(admin, "")) as c:
            for _ in range(60):
                assert c.get("/readyz").status_code == 200
                r = c.get("/v1/keys")
                assert r.status_code == 200, r.text
            assert c.get("/v1/keys", auth=("dk_wrong", "")).status_code == 401
            created = c.post("/v1/keys", json={"name": "app", "scope": "write"})
            assert created.status_code == 201, created.text
        listed = _cli("keys", "list", "-p", str(tmp_path), "--json")
        assert listed.returncode == 0, listed.stderr
        names = {k["name"] for k in json.loads(listed.stdout)}
        assert names == {"ops", "web", "app"}
        workers = [
            d for d in Path("/proc").iterdir()
            if d.name.isdigit() and _parent(d) == proc.pid
        ]  # fmt: skip
        assert len(workers) >= 2, "uvicorn runs two worker processes"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out
