"""``GET /v1/decide`` at 1M users: snapshot build time and memory, per-decision latency
in-process, and (``--http``) p50/p99 over HTTP at a fixed request rate against
``segmint serve`` in its own process.

A synthetic project is written with set-based SQL (no demo generator): ``--users`` users,
an RFM run (11 segments) and a lifecycle run, a recommendation run with 10 items per user,
one campaign assigning 30% of the users (10% control), identities for 20% of the users,
a CLV run and two churn runs scoring 80% of the users (the decision's ``value``; off with
``--no-predictions``) and enough orders for the cold-start list; the playbook is segmint's
default (UI variants per segment).

    .venv/bin/python bench/serve_decide.py --users 1000000 --http --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import peak_rss_bytes  # noqa: E402
from segmint.segments import LIFECYCLE_SEGMENTS as LIFECYCLE  # noqa: E402
from segmint.segments import RFM_SEGMENTS as RFM  # noqa: E402


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_project(folder: Path, n_users: int, *, predictions: bool = True) -> None:
    """segmint.yaml (default playbook, one campaign) and a store of ``n_users``."""
    import yaml

    from segmint.campaigns import default_playbook
    from segmint.config import Config
    from segmint.store import lit, open_store

    folder.mkdir(parents=True, exist_ok=True)
    base = {
        "project": "bench",
        "store": "bench.duckdb",
        "segmentations": {"rfm": {"type": "rfm"}, "lifecycle": {"type": "lifecycle"}},
    }
    cfg = Config.model_validate(base)
    playbook = yaml.safe_load(default_playbook(cfg))["playbook"]
    playbook["campaigns"] = {
        "winback_at_risk": playbook["campaigns"]["winback_at_risk"],
        "onboarding": playbook["campaigns"]["onboarding"],
    }
    (folder / "segmint.yaml").write_text(yaml.safe_dump({**base, "playbook": playbook}))
    store = open_store(str(folder / "bench.duckdb"))
    n, seg = int(n_users), ", ".join(lit(s) for s in RFM)
    life = ", ".join(lit(s) for s in LIFECYCLE)
    uid = "'U' || lpad(CAST(i AS VARCHAR), 7, '0')"
    statements = [
        f"INSERT INTO users (user_id, created_at) SELECT {uid}, TIMESTAMP '2024-01-01' "
        f"FROM range({n}) t(i)",
        "INSERT INTO items (item_id, title, category, price) SELECT 'SKU' || lpad(CAST(i AS "
        "VARCHAR), 5, '0'), 'Item ' || i, 'cat' || (i % 20), 10 + i % 90 FROM range(5000) t(i)",
        "INSERT INTO segment_runs (run_id, segmentation, method, created_at, n_users) VALUES "
        f"('seg-rfm', 'rfm', 'rfm', now(), {n}), "
        f"('seg-life', 'lifecycle', 'lifecycle', now(), {n})",
        "INSERT INTO segment_assignments (run_id, user_id, segment) SELECT 'seg-rfm', "
        f"{uid}, list_extract([{seg}], CAST(1 + (hash(i) % 11) AS INTEGER)) FROM range({n}) t(i)",
        "INSERT INTO segment_assignments (run_id, user_id, segment) SELECT 'seg-life', "
        f"{uid}, list_extract([{life}], CAST(1 + (hash(i + 7) % 4) AS INTEGER)) "
        f"FROM range({n}) t(i)",
        "INSERT INTO recommendation_runs (run_id, kind, created_at, model, n, n_users) VALUES "
        f"('rec-1', 'batch', now(), 'popularity', 10, {n})",
        'INSERT INTO recommendations (run_id, user_id, "rank", item_id, score, model, reason) '
        f"SELECT 'rec-1', {uid}, r + 1, 'SKU' || lpad(CAST((i * 7 + r * 131) % 5000 AS "
        "VARCHAR), 5, '0'), 1.0 / (r + 1), 'popularity', 'bought together' "
        f"FROM range({n}) t(i), range(10) s(r)",
        "INSERT INTO campaign_runs (run_id, campaign, created_at, as_of, segmentation, "
        "segment_run_id, status, n_eligible, n_treatment, n_control) VALUES ('cr-1', "
        f"'winback_at_risk', now(), current_date, 'rfm', 'seg-rfm', 'planned', {n}, 0, 0)",
        "INSERT INTO campaign_assignments (campaign, user_id, arm, bucket, assigned_at, run_id) "
        f"SELECT 'winback_at_risk', {uid}, CASE WHEN i % 10 = 0 THEN 'control' ELSE "
        f"'treatment' END, 0.5, now(), 'cr-1' FROM range({n}) t(i) WHERE i % 10 < 3",
        "INSERT INTO identities (anonymous_id, user_id, source, linked_at) SELECT 'anon-' || i, "
        f"{uid}, 'web', now() FROM range({n}) t(i) WHERE i % 5 = 0",
        "INSERT INTO orders (order_id, user_id, ts, amount, currency, channel, discount, status) "
        "SELECT 'O' || i, 'U' || lpad(CAST(i AS VARCHAR), 7, '0'), TIMESTAMP '2026-11-01' + "
        "INTERVAL (i % 20) DAY, 50, 'USD', 'online', 0, 'completed' FROM range(20000) t(i)",
        "INSERT INTO order_items (order_id, line, item_id, quantity, unit_price) SELECT "
        "'O' || i, 1, 'SKU' || lpad(CAST(i % 300 AS VARCHAR), 5, '0'), 1, 50 "
        "FROM range(20000) t(i)",
    ]
    if predictions:  # a CLV run and two churn runs (a month apart) over 80% of the users
        scored = f"FROM range({n}) t(i) WHERE i % 5 <> 4"
        statements += [
            "INSERT INTO predict_runs (run_id, kind, created_at, as_of, n_users) VALUES "
            f"('p-clv', 'clv', now(), TIMESTAMPTZ '2026-11-01', {n}), "
            f"('p-churn-0', 'churn', now() - INTERVAL 1 DAY, TIMESTAMPTZ '2026-10-01', {n}), "
            f"('p-churn-1', 'churn', now(), TIMESTAMPTZ '2026-11-01', {n})",
            "INSERT INTO predictions (run_id, user_id, p_alive, expected_purchases, "
            "expected_order_value, clv, clv_low, clv_high) SELECT 'p-clv', "
            f"{uid}, (hash(i) % 1000) / 1000.0, 2.5, 80, 200 + hash(i) % 900, "
            f"150 + hash(i) % 900, 260 + hash(i) % 900 {scored}",
            "INSERT INTO predictions (run_id, user_id, churn_risk) SELECT 'p-churn-0', "
            f"{uid}, (hash(i + 3) % 1000) / 1000.0 {scored}",
            "INSERT INTO predictions (run_id, user_id, churn_risk) SELECT 'p-churn-1', "
            f"{uid}, (hash(i + 5) % 1000) / 1000.0 {scored}",
        ]
    for sql in statements:
        store.execute(sql)
    store.close()


def in_process(folder: Path, n_requests: int) -> dict[str, Any]:
    import segmint
    from segmint.serve._decide import DecisionService, decide
    from segmint.serve._exposures import ExposureLog
    from segmint.serve._snapshots import SnapshotWorker, build_snapshot, held

    p = segmint.open_project(folder)
    store = p.store
    before = rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    snap = build_snapshot(store, p.config.playbook, depth=10)
    build = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = rss()
    service = DecisionService(
        SnapshotWorker(held(store), p.config.playbook),
        ExposureLog(held(store)),
        currency=p.config.currency,
    )
    rng = random.Random(1)
    n = snap.n_users
    users = [f"U{rng.randrange(int(n * 1.05)):07d}" for _ in range(n_requests)]  # 5% unknown
    times = []
    for user in users:
        t = time.perf_counter_ns()
        decide(service, snap, user, n=10)
        times.append((time.perf_counter_ns() - t) / 1e6)
    times.sort()
    p.close()
    return {
        "users": n,
        "scored_users": snap.counts.get("scored", 0),
        "build_seconds": round(build, 2),
        "snapshot_array_mb": round(snap.nbytes() / 1e6, 1),
        "rss_delta_mb": round((after - before) / 1e6, 1),
        "tracemalloc_peak_mb": round(traced_peak / 1e6, 1),
        "decide_p50_ms": round(times[len(times) // 2], 3),
        "decide_p99_ms": round(times[int(len(times) * 0.99)], 3),
        "peak_rss_mb": round(peak_rss_bytes() / 1e6, 1),
    }


def over_http(folder: Path, rate: float, seconds: float) -> dict[str, Any]:
    """``segmint serve`` in its own process; an open-loop client at ``rate`` requests/s."""
    import httpx

    import segmint
    from segmint.serve._auth import create_key

    with segmint.open_project(folder) as p:
        # a product's backend key, allowed more than the default 200 requests/s per key
        key = create_key(p.store, "bench", "decide", rate_per_second=5000)
    port = 8765
    log = folder / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("segmint")),
            "serve",
            "-p",
            str(folder),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),  # a file: a pipe nobody reads would fill up and block it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError("segmint serve did not start")
            time.sleep(0.2)
        ready = time.perf_counter() - started
        server_rss = _rss_of(server.pid)
        _load(url, key, rate, 3.0)  # warm-up (connections, key ring, first snapshots)
        mark = log.stat().st_size
        measured = _load(url, key, rate, seconds)
        return {
            "ready_seconds": round(ready, 1),
            "server_rss_mb": server_rss,
            **measured,
            **_server_times(log, mark),
        }
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)


def _server_times(log: Path, offset: int) -> dict[str, float]:
    """p50/p99 of the service's own access-log times (request in to response out)."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    ms = sorted(float(x.rsplit(" ", 1)[1][:-2]) for x in lines if "GET /v1/decide/" in x)
    if not ms:
        return {}
    return {
        "server_p50_ms": ms[len(ms) // 2],
        "server_p99_ms": ms[int(len(ms) * 0.99)],
    }


def _rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) * 1024 / 1e6, 1)
    return 0.0


def _load(url: str, key: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at i / rate; latency counts from when it was due."""
    import httpx

    n = int(rate * seconds)
    lat: list[float] = []
    errors = [0]
    statuses: dict[int, int] = {}  # the failures by HTTP status (0: no answer)
    lock = threading.Lock()
    rng = random.Random(2)
    users = [f"U{rng.randrange(1_000_000):07d}" for _ in range(n)]
    headers = {"Authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for _ in range(32)]
    for c in clients:  # connect before the clock starts
        c.get("/healthz")
    start = time.perf_counter() + 0.5
    next_i = [0]

    def worker(c: httpx.Client) -> None:
        try:
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= n:
                    return
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    status = c.get(f"/v1/decide/{users[i]}").status_code
                except httpx.TransportError:
                    status = 0
                ok = status == 200
                done = time.perf_counter()
                with lock:
                    lat.append((done - due) * 1000)
                    if os.environ.get("BENCH_TRACE") and done - due > 0.05:
                        print(
                            f"slow {i} due+{due - start:.2f}s {(done - due) * 1000:.0f}ms",
                            file=sys.stderr,
                        )
                    if not ok:
                        errors[0] += 1
                        statuses[status] = statuses.get(status, 0) + 1
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    elapsed = time.perf_counter() - start
    return {
        "http_requests": n,
        "http_rate_achieved": round(n / elapsed, 1),
        "http_errors": errors[0],
        "http_error_statuses": statuses,
        "http_p50_ms": round(statistics.median(lat), 2),
        "http_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
        "http_max_ms": round(lat[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/segmint-bench-decide"))
    ap.add_argument("--requests", type=int, default=20_000, help="in-process decisions")
    ap.add_argument("--http", action="store_true", help="also measure over HTTP")
    ap.add_argument(
        "--no-predictions", action="store_true", help="no CLV or churn run (no value block)"
    )
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    folder = args.dir / f"u{args.users}{'-np' if args.no_predictions else ''}"
    if not (folder / "bench.duckdb").exists():
        t = time.perf_counter()
        write_project(folder, args.users, predictions=not args.no_predictions)
        print(f"wrote the synthetic project in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    out = in_process(folder, args.requests)
    print(json.dumps(out), file=sys.stderr)
    if args.http:
        out.update(over_http(folder, args.rate, args.seconds))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
