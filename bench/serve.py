"""``segmint serve`` under load (issue 19): tracking throughput and freshness, decision latency.

**Tracking.** A project with ``--users`` users (loaded from a CSV by ``segmint ingest``) is
served by ``segmint serve`` in its own process; a load generator in this process (its own
process, not the server's) runs ``--clients`` concurrent clients posting ``/v1/batch`` of
``--batch-size`` messages (product views and page views of the stored users, each with its
own ``messageId``) for ``--seconds``. Measured:

* messages/s acknowledged (every 2xx means fsync'ed in the spool) and messages/s stored
  (acknowledged until the loader has caught up);
* zero loss: every acknowledged messageId is in ``tracked_messages``, and as many events;
* freshness: per message, from its acknowledgement (the client's clock at the 2xx) to the
  commit of the micro-batch that stored it (``loads.finished_at`` of its ``load_id``) —
  p50 / p95 / max;
* side by side, the same events written to a JSON Lines file and loaded by ``segmint
  ingest`` into a copy of the same store (events/s of the file load).

**Decisions.** ``bench/serve_decide.py`` in a child process: a synthetic 1M-user project,
the snapshot's build time and memory, and p50/p99 of ``GET /v1/decide`` over HTTP at
``--rate`` requests/s against ``segmint serve`` (skip with ``--no-decide``).

    .venv/bin/python bench/serve.py                        # 50k users, 20 s, 1M decide
    .venv/bin/python bench/serve.py --seconds 10 --decide-users 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, table  # noqa: E402

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_project(root: Path, n_users: int) -> None:
    """A project whose store holds ``n_users`` users (ingested from a CSV)."""
    root.mkdir(parents=True)
    with (root / "users.csv").open("w", encoding="utf-8") as f:
        f.write("user_id,created_at,country\n")
        for i in range(n_users):
            f.write(f"u{i},2025-01-{1 + i % 28:02d}T00:00:00Z,DE\n")
    (root / "segmint.yaml").write_text(
        "project: bench-serve\nstore: shop.duckdb\n"
        "sources:\n  users:\n    type: csv\n    table: users\n    path: users.csv\n",
        encoding="utf-8",
    )
    subprocess.run(
        [sys.executable, "-m", "segmint", "ingest", "-p", str(root)],
        check=True,
        capture_output=True,
    )


def _message(prefix: str, n: int, n_users: int) -> dict[str, Any]:
    user = f"u{(n * 7919) % n_users}"
    if n % 20 == 0:
        return {
            "type": "page",
            "userId": user,
            "name": "Home",
            "properties": {"path": "/"},
            "messageId": f"{prefix}-{n}",
        }
    return {
        "type": "track",
        "userId": user,
        "event": "Product Viewed",
        "properties": {"product_id": f"p{n % 500}", "price": 12.5},
        "messageId": f"{prefix}-{n}",
    }


async def _client(
    url: str, key: str, size: int, until: float, n_users: int, acks: list[tuple[float, list[str]]]
) -> None:
    prefix = uuid.uuid4().hex[:10]
    n = 0
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=60) as c:
        while time.monotonic() < until:
            batch = [_message(prefix, n + i, n_users) for i in range(size)]
            n += size
            r = await c.post("/v1/batch", json={"batch": batch})
            if r.status_code == 200:
                acks.append((time.time(), [m["messageId"] for m in batch]))


async def _flood(
    url: str, key: str, clients: int, size: int, seconds: float, n_users: int
) -> list[tuple[float, list[str]]]:
    acks: list[tuple[float, list[str]]] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, key, size, until, n_users, acks) for _ in range(clients)))
    return acks


def _serve(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"segmint serve did not start; see {log}")


def _wait_loaded(url: str, admin: str, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(url + "/v1/tracking/status", auth=(admin, ""), timeout=60).json()
        if int(status["lag_messages"]) == 0:
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError("the loader did not catch up")


def bench_tracking(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import segmint
    from segmint.serve._auth import create_key

    root = work / "tracking"
    make_project(root, args.users)
    pristine = work / "pristine.duckdb"
    shutil.copy(root / "shop.duckdb", pristine)
    with segmint.open_project(root) as p:
        key = create_key(p.store, "bench", "write")
        admin = create_key(p.store, "bench-admin", "admin")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(root, port, work / "serve.log")
    try:
        warm = asyncio.run(_flood(url, key, 1, 10, 0.5, args.users))  # warm up
        _wait_loaded(url, admin)
        t0 = time.monotonic()
        acks = asyncio.run(
            _flood(url, key, args.clients, args.batch_size, args.seconds, args.users)
        )
        sent_wall = time.monotonic() - t0
        loaded_wall = _wait_loaded(url, admin) - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)

    ack_at: dict[str, float] = {}
    for at, ids in acks:
        for m in ids:
            ack_at[m] = at
    with segmint.open_project(root) as p:
        s = p.store
        rows = s.query(
            "SELECT t.message_id, epoch(l.finished_at) AS stored "
            "FROM tracked_messages t JOIN loads l USING (load_id)"
        )
        n_events = int(s.scalar("SELECT count(*) FROM events"))
    stored = dict(zip(rows["message_id"], rows["stored"], strict=True))
    measured = [float(stored[m]) - a for m, a in ack_at.items() if m in stored]
    measured.sort()
    missing = sum(1 for m in ack_at if m not in stored)

    def pct(q: float) -> float:
        return (
            measured[min(len(measured) - 1, int(q * len(measured)))] if measured else float("nan")
        )

    warmup = sum(len(ids) for _, ids in warm)
    out = {
        "acknowledged": len(ack_at),
        "acked_per_s": len(ack_at) / sent_wall,
        "stored_per_s": len(ack_at) / loaded_wall,
        "missing": missing,
        "events_stored": n_events - warmup,
        "fresh_p50": pct(0.50),
        "fresh_p95": pct(0.95),
        "fresh_max": measured[-1] if measured else float("nan"),
        "seconds": sent_wall,
    }
    out["file"] = bench_file_ingest(work, pristine, root, ack_at)
    return out


def bench_file_ingest(
    work: Path, pristine: Path, tracked_root: Path, ack_at: dict[str, float]
) -> dict[str, Any]:
    """The same events from a JSON Lines file through ``segmint ingest`` (a copy of the same
    starting store)."""
    import segmint

    with segmint.open_project(tracked_root) as p:
        events = p.store.query(
            "SELECT event_id, user_id, event, CAST(ts AS VARCHAR) AS ts, item_id, "
            "CAST(properties AS VARCHAR) AS properties FROM events"
        )
    root = work / "file"
    root.mkdir()
    shutil.copy(pristine, root / "shop.duckdb")
    with (root / "events.jsonl").open("w", encoding="utf-8") as f:
        for r in events.itertuples(index=False):
            f.write(
                json.dumps(
                    {
                        "event_id": r.event_id,
                        "user_id": r.user_id,
                        "event": r.event,
                        "ts": r.ts,
                        "item_id": r.item_id,
                        "properties": r.properties,
                    }
                )
                + "\n"
            )
    (root / "segmint.yaml").write_text(
        "project: bench-file\nstore: shop.duckdb\n"
        "sources:\n  events:\n    type: jsonl\n    table: events\n    path: events.jsonl\n",
        encoding="utf-8",
    )
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "segmint", "ingest", "-p", str(root)],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    return {"events": len(events), "seconds": wall, "per_s": len(events) / wall}


def bench_decide(args: argparse.Namespace) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "serve_decide.py"),
            "--users",
            str(args.decide_users),
            "--http",
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.decide_seconds),
            "--dir",
            str(Path(tempfile.gettempdir()) / f"segmint-bench-decide-{args.decide_users}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--decide-users", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--decide-seconds", type=float, default=20)
    ap.add_argument("--no-decide", action="store_true")
    args = ap.parse_args()

    print(f"machine: {json.dumps(machine_facts())}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        t = bench_tracking(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n## Tracking: {args.users:,} users in the store, {args.clients} clients x batches of "
        f"{args.batch_size}, {t['seconds']:.0f} s\n"
    )
    print(
        table(
            ["way in", "events", "events/s", "lost", "ack -> stored p50 / p95 / max"],
            [
                [
                    "POST /v1/batch (acknowledged)",
                    f"{t['acknowledged']:,}",
                    f"{t['acked_per_s']:,.0f}",
                    f"{t['missing']:,}",
                    f"{t['fresh_p50']:.2f} / {t['fresh_p95']:.2f} / {t['fresh_max']:.2f} s",
                ],
                [
                    "POST /v1/batch (stored, end to end)",
                    f"{t['events_stored']:,}",
                    f"{t['stored_per_s']:,.0f}",
                    "",
                    "",
                ],
                [
                    "segmint ingest of the same events (JSON Lines file)",
                    f"{t['file']['events']:,}",
                    f"{t['file']['per_s']:,.0f}",
                    "",
                    f"{t['file']['seconds']:.1f} s for the file",
                ],
            ],
        )
    )
    if args.no_decide:
        return
    d = bench_decide(args)
    print(
        f"\n## Decisions: {args.decide_users:,} users in the snapshot, HTTP at {args.rate:.0f} "
        f"requests/s for {args.decide_seconds:.0f} s\n"
    )
    print(table(["figure", "value"], [[k, str(v)] for k, v in d.items()]))


if __name__ == "__main__":
    main()
