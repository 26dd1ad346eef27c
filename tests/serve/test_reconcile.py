"""Kill the service while it loads, restart it, reconcile.

A real ``segmint serve`` receives batches (valid events, orders with a bad amount that the
validation quarantines, and client retries of batches already acknowledged); it is killed
with SIGKILL while its loader is behind, restarted, sent the rest and stopped. Then every
acknowledged message is either stored or quarantined, exactly once, and the load records
add up (read = accepted + rejected)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import free_port, wait_ready

import segmint
from segmint.serve._auth import create_key

pytestmark = pytest.mark.slow


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "segmint.yaml").write_text(
        "project: reconcile\nstore: shop.duckdb\ntracking:\n  batch_seconds: 0.2\n",
        encoding="utf-8",
    )
    return root


def _serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}", proc, path="/healthz")
    return proc


def _batch(n: int, *, bad_every: int = 50) -> list[dict[str, Any]]:
    """``n`` messages: product views, and every ``bad_every``-th an order whose amount the
    validation refuses (negative) — quarantined, not lost."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        user = f"u{i % 97}"
        if i % bad_every == 0:
            out.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"order_id": str(uuid.uuid4()), "total": -5},
                    "messageId": str(uuid.uuid4()),
                }
            )
        else:
            out.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Product Viewed",
                    "properties": {"product_id": f"p{i % 13}"},
                    "messageId": str(uuid.uuid4()),
                }
            )
    return out


class Sender:
    """Clients posting batches; remembers what was acknowledged."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.acked: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def send(self, batch: list[dict[str, Any]]) -> bool:
        try:
            with httpx.Client(base_url=self.url, auth=(self.key, ""), timeout=30) as c:
                ok = c.post("/v1/batch", json={"batch": batch}).status_code == 200
        except httpx.TransportError:  # the server was killed mid-request: not acknowledged
            return False
        if ok:
            with self.lock:
                self.acked.extend(batch)
        return ok

    def flood(self, n_batches: int, size: int, threads: int = 4) -> None:
        def run() -> None:
            for _ in range(n_batches):
                self.send(_batch(size))

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def test_kill_during_a_load_then_restart_reconciles(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    with segmint.open_project(root) as p:
        key = create_key(p.store, "web", "write")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    # -- life 1: a flood, then SIGKILL while the loader is behind ------------------------
    proc = _serve(root, port)
    sender = Sender(url, key)
    try:
        sender.flood(n_batches=10, size=500)  # 20,000 messages in a few seconds
        time.sleep(0.3)  # the loader is at work on them
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    first_life = len(sender.acked)
    assert first_life == 20_000
    with segmint.open_project(root) as p:  # what was committed when it died
        loaded_then = int(p.store.count("tracked_messages"))
    assert loaded_then < first_life, "the kill came after everything was loaded: no test"

    # -- life 2: restart, a client retries batches it already sent, more traffic --------
    proc = _serve(root, port)
    try:
        retried = sender.acked[:1000]  # a client that never saw its 200s sends them again
        assert sender.send([dict(m) for m in retried])
        sender.flood(n_batches=2, size=250, threads=2)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop: the loader drains the spool
        proc.wait(timeout=60)
    # uvicorn shuts down cleanly, then re-raises the signal it caught (exit status -15)
    assert proc.returncode in (0, -signal.SIGTERM)

    acked_ids = {m["messageId"] for m in sender.acked}
    bad_ids = {m["messageId"] for m in sender.acked if m["event"] == "Order Completed"}
    good_ids = acked_ids - bad_ids
    with segmint.open_project(root) as p:
        s = p.store
        tracked = s.query("SELECT message_id FROM tracked_messages")["message_id"]
        assert tracked.is_unique  # none twice
        assert set(tracked) == acked_ids  # acknowledged = stored + quarantined
        events = s.query("SELECT event_id FROM events")["event_id"]
        assert events.is_unique and set(events) == good_ids  # every good one stored, once
        assert s.count("orders") == 0  # every bad order refused ...
        quarantined = int(
            s.scalar(
                'SELECT count(*) FROM (SELECT DISTINCT load_id, "row" FROM quarantine '
                "WHERE target_table = 'orders' AND kind = 'rejected')"
            )
        )
        loads = s.query(
            "SELECT target_table, sum(rows_read) AS r, sum(rows_accepted) AS a, "
            "sum(rows_rejected) AS x FROM loads WHERE source LIKE 'tracking:%' "
            "GROUP BY target_table"
        ).set_index("target_table")
    assert (loads["r"] == loads["a"] + loads["x"]).all()  # read = accepted + rejected
    assert int(loads.loc["orders", "x"]) == len(bad_ids)  # ... and kept with a reason
    assert quarantined == len(bad_ids)
    assert int(loads.loc["events", "a"]) == len(good_ids)
    print(  # the figures of the reconciliation (shown with pytest -s)
        f"acknowledged {len(acked_ids)} (+{len(retried)} retried), stored when killed "
        f"{loaded_then}, stored {len(good_ids)} events, quarantined {quarantined} orders, "
        f"tracked once {len(tracked)}"
    )
    leftover = list((root / ".segmint" / "spool").glob("spool-*.jsonl"))
    assert not leftover  # every file loaded, closed and deleted
