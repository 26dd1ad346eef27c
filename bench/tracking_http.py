"""Messages per second through ``POST /v1/batch`` of a real ``segmint serve`` on loopback.

``clients`` concurrent clients each send batches of ``batch_size`` track messages (each with
its own messageId, as Segment's libraries send) for ``seconds``; every 2xx means the lines
are fsync'ed in the spool. Prints accepted messages/s, fsyncs per second and the server's
CPU time per 1,000 messages.

    .venv/bin/python bench/tracking_http.py [--clients 4] [--batch-size 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(url: str, key: str, batch_size: int, until: float, counts: list[int]) -> None:
    prefix = uuid.uuid4().hex[:8]
    template = {
        "type": "track",
        "userId": "u",
        "event": "Product Viewed",
        "properties": {"sku": "A-1", "price": 12.5},
    }
    n = 0
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=30) as c:
        while time.monotonic() < until:
            batch = []
            for _ in range(batch_size):
                n += 1
                batch.append({**template, "messageId": f"{prefix}-{n}"})
            body = json.dumps({"batch": batch}).encode()
            r = await c.post(
                "/v1/batch", content=body, headers={"Content-Type": "application/json"}
            )
            r.raise_for_status()
            counts.append(batch_size)


async def _run(url: str, key: str, clients: int, batch_size: int, seconds: float) -> list[int]:
    counts: list[int] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, key, batch_size, until, counts) for _ in range(clients)))
    return counts


def _wait_loaded(url: str, admin: str, *, timeout: float) -> int:
    """Wait until the loader has no lag; the messages still waiting at the end."""
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        status = httpx.get(url + "/v1/tracking/status", auth=(admin, ""), timeout=30).json()
        lag = int(status["lag_messages"])
        if lag == 0:
            return 0
        time.sleep(0.2)
    return lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import segmint
    from segmint.serve._auth import create_key

    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    (root / "segmint.yaml").write_text("project: bench\nstore: t.duckdb\n")
    with segmint.open_project(root) as p:
        key = create_key(p.store, "bench", "write")
        admin = create_key(p.store, "bench-admin", "admin")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        asyncio.run(_run(url, key, args.clients, args.batch_size, 1.0))  # warm up
        cpu0 = _cpu_seconds(proc.pid)
        t0 = time.monotonic()
        counts = asyncio.run(_run(url, key, args.clients, args.batch_size, args.seconds))
        wall = time.monotonic() - t0
        lag = _wait_loaded(url, admin, timeout=120)
        loaded_wall = time.monotonic() - t0
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    n = sum(counts)
    lines = sum(
        len(f.read_bytes().splitlines()) for f in (root / ".segmint" / "spool").glob("*.jsonl")
    )
    if lag == 0:
        print(
            f"end to end (accepted and loaded into the store): {n / loaded_wall:,.0f} "
            f"messages/s; all loaded {loaded_wall - wall:.1f} s after the last request"
        )
    else:
        print(f"the loader did not catch up: {lag:,} messages not loaded after 120 s")
    print(
        f"{args.clients} clients x batches of {args.batch_size}, {wall:.1f} s: "
        f"{n / wall:,.0f} messages/s accepted ({len(counts) / wall:,.0f} requests/s); "
        f"server CPU {cpu / max(n, 1) * 1000 * 1000:.1f} ms per 1,000 messages (incl. loading); "
        f"{lines:,} lines left in the spool after shutdown"
    )


if __name__ == "__main__":
    main()
