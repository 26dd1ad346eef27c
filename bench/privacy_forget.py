"""Forgetting one user in a large store (issue 21: under 2 s with 1M users).

Usage: ``python bench/privacy_forget.py [--users 1000000] [--orders 20000000]
[--events 20000000] [--dir DIR] [--repeat 3] [--compact]``

Builds (once per --dir) a DuckDB project with DuckDB SQL: users, orders (in time order, as a
shop's export comes: a user's orders are spread over the whole table, so zone maps cannot
skip), order_items, events, consents, features, three segment runs, ten recommendations
each, a campaign's audience, assignments and deliveries, identities, exposures and a
quarantine of 20,000 rows whose raw row is sealed (the vault opens each to look for the
person). Then forgets ``--repeat`` different users, each way:

- **segmint.privacy.forget**: one transaction, every table, files, erasure record, audit;
- **naive loop**: what a script would do by hand: for each table one
  ``DELETE ... WHERE user_id = ...`` committed on its own (orders deleted, not kept), the
  quarantine searched by opening every sealed row in Python, no record, no audit;
- **compact** (``--compact``): ``segmint.privacy.compact`` (rewrite the DuckDB file so the
  deleted values leave its blocks), which a batch of erasures needs once, not each.

Prints the table (median seconds) and where the time of one forget goes (per step).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Timer  # noqa: E402

TABLES_BY_USER = (
    "users", "consents", "features", "segment_assignments", "recommendations",
    "campaign_audiences", "campaign_assignments", "campaign_outcomes", "identities", "events",
    "exposures", "orders", "deliveries", "suppressions",
)  # fmt: skip


def _uid(expr: str) -> str:
    return f"'U' || lpad(CAST({expr} AS VARCHAR), 7, '0')"


def build(root: Path, n_users: int, n_orders: int, n_events: int) -> None:
    """The project and its store, made with DuckDB SQL (skipped when it exists)."""
    import segmint
    from segmint.store import open_vault

    if (root / "store.duckdb").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / "segmint.yaml").write_text("project: bench\nstore: store.duckdb\n")
    t = time.perf_counter()
    with segmint.open_project(root) as p:
        store = p.store
        vault = open_vault(store, p.config)
        con = store._engine_connection()
        vault.register(con)
        u = n_users
        sql = [
            f"""INSERT INTO users (user_id, created_at, email, phone, country, traits,
                email_index, phone_index)
            SELECT {_uid("i")}, TIMESTAMPTZ '2024-01-01' + to_seconds(i % 31536000),
                'user' || i || '@example.com', '+49 170 ' || lpad(CAST(i AS VARCHAR), 7, '0'),
                'DE', '{{"plan":"basic"}}', NULL, NULL FROM range({u}) r(i)""",
            f"UPDATE users SET email_index = {vault.index_sql('email', 'email')}, "
            f"phone_index = {vault.index_sql('phone', 'phone')}",
            f"""INSERT INTO orders SELECT 'O' || i, {_uid(f"hash(i) % {u}")},
                TIMESTAMPTZ '2024-01-01' + to_seconds(i * 3 % 63072000), 10 + i % 90, 'EUR',
                'online', 0, 'completed' FROM range({n_orders}) r(i) ORDER BY 3""",
            f"""INSERT INTO order_items SELECT 'O' || i, 1, 'I' || (i % 5000), 1, 10
                FROM range({n_orders}) r(i)""",
            f"""INSERT INTO events SELECT 'E' || i, {_uid(f"hash(i + 7) % {u}")},
                'a-' || (hash(i + 7) % {u}), 'page_view',
                TIMESTAMPTZ '2024-01-01' + to_seconds(i % 63072000), 'web', NULL,
                '{{"path":"/"}}' FROM range({n_events}) r(i) ORDER BY 5""",
            f"""INSERT INTO consents (user_id, channel, purpose, ts, granted, source)
                SELECT {_uid("i % " + str(u))}, 'email', 'marketing',
                TIMESTAMPTZ '2024-01-01' + to_seconds(i), i % 3 <> 0, 'signup'
                FROM range({3 * u}) r(i)""",
            f"""INSERT INTO features (run_id, user_id, recency_days, frequency, monetary)
                SELECT 'f1', {_uid("i")}, i % 365, i % 20, i % 1000 FROM range({u}) r(i)""",
            f"""INSERT INTO segment_assignments SELECT 's' || (i % 3), {_uid("i // 3")},
                'seg' || (i % 7), NULL, NULL FROM range({3 * u}) r(i)""",
            f"""INSERT INTO recommendations SELECT 'r1', {_uid("i // 10")},
                CAST(i % 10 + 1 AS INTEGER), 'I' || (i % 5000), 0.5, 'hybrid', NULL
                FROM range({10 * u}) r(i)""",
            f"""INSERT INTO campaign_audiences SELECT 'c1', 'camp', {_uid("i")}, 'seg', 'email',
                'main', 'treatment', 'camp|' || {_uid("i")} || '|main' FROM range({u}) r(i)""",
            f"""INSERT INTO campaign_assignments SELECT 'camp', {_uid("i")}, 'treatment', 0.5,
                TIMESTAMPTZ '2025-01-01', 'c1' FROM range({u}) r(i)""",
            f"""INSERT INTO deliveries SELECT 'camp|' || {_uid("i")} || '|main', 'camp', 'c1',
                {_uid("i")}, 'main', 'email', 'sent', 1, FALSE, '<' || md5(CAST(i AS VARCHAR))
                || '@x>', NULL, TIMESTAMPTZ '2025-01-01', NULL, TIMESTAMPTZ '2025-01-01', NULL
                FROM range({u}) r(i)""",
            f"""INSERT INTO identities SELECT 'a-' || i, {_uid("i")}, 'web',
                TIMESTAMPTZ '2025-01-01', NULL FROM range({u // 2}) r(i)""",
            f"""INSERT INTO exposures (exposure_id, served_at, user_id, campaign, arm)
                SELECT 'x' || i, TIMESTAMPTZ '2025-01-01', {_uid(f"i % {u}")}, 'camp', 'a'
                FROM range({u}) r(i)""",
            """INSERT INTO quarantine (load_id, "row", source, target_table, rule, reason, raw,
                kind, field) SELECT 'l1', i, 'customers', 'users', 'type', 'bad age',
                to_json(segmint_seal('quarantine.raw', '{"customer_id":"Q' || i ||
                '","age":"x"}')), 'rejected', '' FROM range(20000) r(i)""",
        ]
        with store.transaction():
            for s in sql:
                con.execute(s)
        con.execute("CHECKPOINT")
        sizes = {t: store.count(t) for t in TABLES_BY_USER + ("order_items", "quarantine")}
    print(f"built in {time.perf_counter() - t:.0f} s: " + json.dumps(sizes), flush=True)


def naive(store: Any, vault: Any, user_id: str) -> None:
    """One DELETE per table, each committed on its own; the quarantine by opening all."""
    for table in TABLES_BY_USER:
        store.execute(f"DELETE FROM {table} WHERE user_id = ?", [user_id])
    rows = store.query('SELECT load_id, "row", CAST(raw AS VARCHAR) AS raw FROM quarantine')
    for r in rows.itertuples(index=False):
        text = vault.open(json.loads(r.raw), "quarantine.raw")
        if user_id in (text or ""):
            store.execute('DELETE FROM quarantine WHERE load_id = ? AND "row" = ?',
                          [r.load_id, r.row])  # fmt: skip


def profile_one(p: Any, user_id: str) -> list[tuple[str, float]]:
    """Seconds per step of one forget (cProfile, the top entries of segmint.privacy)."""
    import cProfile
    import pstats

    from segmint.privacy import forget

    prof = cProfile.Profile()
    prof.enable()
    forget(p, user_id, actor="bench", why="profile")
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out = []
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        if "privacy/_forget" in file and name.startswith("_") and name not in ("_none",):
            out.append((name, ct))
    return sorted(out, key=lambda x: -x[1])[:10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=20_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compact", action="store_true", help="also time compact() (minutes)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp()) / "forget-bench"
    build(root, args.users, args.orders, args.events)

    import segmint
    from segmint.privacy import compact, forget
    from segmint.store import open_vault

    # users not forgotten by an earlier run on the same --dir (10 of 1M: a clash is rare)
    picks = random.Random().sample(range(args.users), 2 * args.repeat + 3)
    ids = [f"U{i:07d}" for i in picks]
    ours, loop = [], []
    with segmint.open_project(root) as p:
        vault = open_vault(p.store, p.config)
        forget(p, ids.pop(), actor="bench", why="warm-up")  # imports, vault, caches
        for _ in range(args.repeat):
            with Timer() as t:
                forget(p, ids.pop(), actor="bench", why="bench")
            ours.append(t.seconds)
            with Timer() as t:
                naive(p.store, vault, ids.pop())
            loop.append(t.seconds)
        steps = profile_one(p, ids.pop())
        floor = {}
        for table in ("events", "orders"):
            with Timer() as t:
                p.store.scalar(f"SELECT count(*) FROM {table} WHERE user_id = ?", [ids[-1]])
            floor[table] = t.seconds
        done = {"bytes_before": 0, "bytes_after": 0}
        if args.compact:
            with Timer() as t:
                done = compact(p)
    rows = [
        ("segmint.privacy.forget (one transaction, all tables + record + audit)", ours),
        ("naive: DELETE per table, autocommit, quarantine opened row by row", loop),
    ]
    if args.compact:
        rows.append(("compact: rewrite the DuckDB file (once per batch of erasures)", [t.seconds]))
    print(f"\n{args.users:,} users, {args.orders:,} orders, {args.events:,} events; "
          f"median of {args.repeat} (seconds)")  # fmt: skip
    print(f"{'way':<72} {'median':>8} {'min':>8} {'max':>8}")
    for name, xs in rows:
        print(f"{name:<72} {statistics.median(xs):8.3f} {min(xs):8.3f} {max(xs):8.3f}")
    if args.compact:
        print(
            f"store file {done['bytes_before'] / 1e9:.2f} GB -> {done['bytes_after'] / 1e9:.2f} GB"
        )
    print("one scan by user_id (the floor: unsorted, no index): " +
          ", ".join(f"{k} {v:.3f} s" for k, v in floor.items()))  # fmt: skip
    print("\nwhere one forget's time goes (cumulative seconds, cProfile):")
    for name, secs in steps:
        print(f"  {name:<32} {secs:7.3f}")


if __name__ == "__main__":
    main()
