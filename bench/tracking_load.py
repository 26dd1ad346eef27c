"""Time load_messages on micro-batches of Segment messages (issue 19): a DuckDB store of
50,000 users, batches of 1,000 / 5,000 / 20,000 messages (mixed track events, 5 %
identify, 1 % Order Completed with 2 products, a few anonymous and consent messages).

    .venv/bin/python bench/tracking_load.py [store-path-or-postgresql-url]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from segmint.config import Config
from segmint.sources import load_messages
from segmint.store import open_store

N_USERS = 50_000
NAMES = ["Product Viewed", "Product Clicked", "Product Added", "Cart Viewed", "Products Searched",
         "Signed In", "Video Played"]  # fmt: skip


def batch(rng: random.Random, n: int, start: int, now: datetime) -> list[dict]:
    out = []
    for k in range(n):
        i = start + k
        ts = (now - timedelta(seconds=rng.randint(0, 3600))).isoformat()
        m: dict = {"_source": "bench", "messageId": f"m{i}", "timestamp": ts, "receivedAt": ts,
                   "context": {"library": {"name": "analytics.js"}, "page": {"url": "https://x"}}}  # fmt: skip
        u = rng.random()
        uid = f"u{rng.randint(1, N_USERS + 5_000)}"  # some new users
        if u < 0.05:
            m.update(type="identify", userId=uid, anonymousId=f"a{rng.randint(1, 100_000)}",
                     traits={"email": f"{uid}@example.com", "plan": "pro"})  # fmt: skip
        elif u < 0.06:
            m.update(type="track", event="Order Completed", userId=uid,
                     properties={"order_id": f"o{i}", "total": 42.0, "currency": "EUR",
                                 "products": [{"product_id": "p1", "price": 20, "quantity": 1},
                                              {"product_id": "p2", "price": 11, "quantity": 2}]})  # fmt: skip
        elif u < 0.15:
            m.update(type="page", anonymousId=f"a{rng.randint(1, 100_000)}", name="Home")
        else:
            m.update(type="track", event=rng.choice(NAMES), userId=uid,
                     properties={"product_id": f"p{rng.randint(1, 500)}", "price": 9.5})  # fmt: skip
        out.append(m)
    return out


def main() -> None:
    # a DuckDB file (default: a new one) or a postgresql:// URL of an empty schema
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "bench.duckdb")
    store = open_store(target)
    store.ensure_schema()
    now = datetime.now(UTC)
    users = pa.table({"user_id": [f"u{i}" for i in range(1, N_USERS + 1)]})
    with store.transaction():
        store.insert("users", users)
    cfg = Config()
    rng = random.Random(19)
    start = 0
    load_messages(store, cfg, batch(rng, 200, start, now))  # warm up
    start += 200
    for n in (1_000, 5_000, 20_000):
        walls, cpus = [], []
        for _ in range(3):  # the best of three (the machine is shared)
            msgs = batch(rng, n, start, now)
            start += n
            t0, c0 = time.perf_counter(), time.process_time()
            r = load_messages(store, cfg, msgs)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            assert r.accepted == n, r
        print(f"{n:>6} messages: {min(walls):6.3f} s wall (median {sorted(walls)[1]:.3f}), "
              f"{min(cpus):6.3f} s CPU  ({n / min(walls):,.0f} msg/s)")  # fmt: skip
    print("events stored:", store.count("events"), "users:", store.count("users"))


if __name__ == "__main__":
    main()
