"""``segmint serve --workers 2`` on PostgreSQL, with CLI commands beside it (issue 19, point 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from tests.serve.conftest import free_port, wait_ready

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
        wait_ready(url, proc)
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


def test_two_workers_on_postgresql_track_every_event_once(tmp_path: Path, pg_url: str) -> None:
    """Each worker has its own spool file and loader; events sent to either (and one batch
    sent twice) are stored once each in the shared store."""
    import threading
    import uuid

    from segmint.serve import create_key

    (tmp_path / "segmint.yaml").write_text(
        yaml.safe_dump({"store": pg_url, "tracking": {"batch_seconds": 0.2}}), encoding="utf-8"
    )
    with segmint.open_project(tmp_path) as p:
        write = create_key(p.store, "web", "write")
        admin = create_key(p.store, "ops", "admin")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(tmp_path), "--port", str(port),
         "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for _ in range(n):  # a new connection per batch: the kernel spreads them over workers
            ids = [str(uuid.uuid4()) for _ in range(100)]
            batch = [
                {"type": "track", "userId": f"u{i % 7}", "event": "Product Viewed",
                 "properties": {"product_id": "p1"}, "messageId": m}
                for i, m in enumerate(ids)
            ]  # fmt: skip
            r = httpx.post(f"{url}/v1/batch", json={"batch": batch}, auth=(write, ""))
            assert r.status_code == 200, r.text
            with lock:
                acked.extend(ids)
            if n == 1:  # a client retry of a batch already acknowledged
                again = httpx.post(f"{url}/v1/batch", json={"batch": batch}, auth=(write, ""))
                assert again.status_code == 200

    try:
        wait_ready(url, proc)
        threads = [threading.Thread(target=client, args=(n,)) for n in (10, 10, 10, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spooled_by = {  # each worker writes its own spool file
            httpx.get(f"{url}/v1/tracking/status", auth=(admin, "")).json()["this_process"]
            for _ in range(40)
        }
        assert len(spooled_by) == 2, spooled_by
    finally:
        proc.terminate()  # each worker's loader drains its spool on the way out
        out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out, out
    assert len(acked) == 3_100
    with segmint.open_project(tmp_path) as p:
        tracked = p.store.query("SELECT message_id FROM tracked_messages")["message_id"]
        events = p.store.query("SELECT event_id FROM events")["event_id"]
        spools = p.store.count("tracking_spool")
    assert tracked.is_unique and set(tracked) == set(acked)
    assert events.is_unique and set(events) == set(acked)
    assert spools == 0  # every worker's file loaded, closed and forgotten
    assert not list((tmp_path / ".segmint" / "spool").glob("spool-*.jsonl"))
