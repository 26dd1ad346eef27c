"""Synthetic stores for the segmentation and scale benchmarks (bench/segment.py, bench/spark.py).

Users fall into five latent groups (order rate, basket size, discount habit, channel,
recency and tenure differ by group, so clusters exist). Orders are spread over users in
proportion to a per-user weight, so ``n_orders`` is exact. Everything is generated with
set-based SQL in DuckDB from hashes (the same data on every machine), in chunks of users so
that memory stays bounded at 200M orders. Optionally (the scale benchmark) a small item
catalogue, one item line for a share of the orders and a few events per user, so that the
event, session and category features do real work too.

Stores are cached under ``out`` by size: a second run reuses the file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from _common import fmt_bytes, fmt_int

# Latent groups: share %, order-rate weight, log mean basket, P(discount), P(offline),
# order window ends at this share of the user's possible window (lapsed users stop early),
# events weight (lapsed users have no recent events).
GROUPS = (
    # share, rate, mu_amount, p_discount, p_offline, window_share, events
    (10, 5.0, 5.0, 0.05, 0.10, 1.00, 2.0),  # champions: many, big, recent orders
    (30, 1.5, 4.1, 0.10, 0.50, 1.00, 0.8),  # regulars, half in store
    (20, 1.2, 3.2, 0.80, 0.10, 1.00, 1.2),  # bargain hunters: small baskets, discounts
    (25, 0.6, 3.9, 0.10, 0.10, 0.35, 0.0),  # lapsed: stopped buying early
    (15, 0.8, 3.7, 0.10, 0.10, 1.00, 1.5),  # new: signed up in the last seven months
)
END = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
N_ITEMS = 2_000
N_CATEGORIES = 20
EVENT_DAYS = 120  # events fall in the last 120 days before END
#: Users per generation chunk (about 20M orders each at 20 orders per user).
CHUNK_USERS = 1_000_000

#: The features the benchmarks cluster (bench/segment.py, bench/spark.py).
FEATURES = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "discount_share",
]


@dataclass(frozen=True)
class Extras:
    """What the store holds besides users and orders.

    ``events_per_user``: mean events per user (0: no events); ``item_share_pct``: percent
    of orders with one item line (0: no items, no order_items).
    """

    events_per_user: int = 0
    item_share_pct: int = 0

    @property
    def any(self) -> bool:
        return bool(self.events_per_user or self.item_share_pct)


NONE = Extras()


def _group_case(column: int) -> str:
    """CASE grp WHEN 0 THEN ... over one column of GROUPS."""
    whens = " ".join(f"WHEN {g} THEN {row[column]}" for g, row in enumerate(GROUPS))
    return f"CASE grp {whens} END"


def _grp_sql() -> str:
    bounds, acc, parts = [], 0, []
    for share, *_ in GROUPS:
        acc += share
        bounds.append(acc)
    for g, b in enumerate(bounds[:-1]):
        parts.append(f"WHEN gh < {b} THEN {g}")
    return f"CASE {' '.join(parts)} ELSE {len(GROUPS) - 1} END"


def store_path(out: Path, n_users: int, n_orders: int, extras: Extras = NONE) -> Path:
    """Where the store of this size is cached (``segment-…`` without extras, as before)."""
    if not extras.any:
        return out / f"segment-{n_users}u-{n_orders}o.duckdb"
    return out / (
        f"scale-{n_users}u-{n_orders}o-{extras.events_per_user}e-{extras.item_share_pct}i.duckdb"
    )


def generate(
    out: Path,
    n_users: int,
    n_orders: int,
    extras: Extras = NONE,
    *,
    memory_limit: str = "8GB",
    chunk_users: int = CHUNK_USERS,
) -> Path:
    """Create (once) a store with users and orders (and ``extras``); later runs reuse it.

    Prints the time taken; the store is written to a temporary name and renamed when done,
    so an interrupted run leaves no half store behind.
    """
    path = store_path(out, n_users, n_orders, extras)
    if path.exists():
        return path
    from segmint.store import open_store

    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.duckdb")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    print(f"generating {path} ...", flush=True)
    t0 = time.perf_counter()
    open_store(str(tmp)).close()  # the store's schema; the synthetic rows go in with SQL
    con = duckdb.connect(str(tmp))
    spill = out / "duckdb-tmp"
    spill.mkdir(exist_ok=True)
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = true")
    _macros(con)
    _users(con, n_users, n_orders)
    if extras.item_share_pct:
        _items(con)
    for lo in range(0, n_users, chunk_users):
        hi = min(lo + chunk_users, n_users)
        _orders_chunk(con, lo, hi, extras)
        if extras.events_per_user:
            _events_chunk(con, lo, hi, extras)
        if n_users > chunk_users:
            print(
                f"  users {fmt_int(hi)} / {fmt_int(n_users)} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    con.execute("DROP TABLE ug")
    con.execute("CHECKPOINT")
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
        for t in ("users", "orders", "order_items", "events")
    }
    con.close()
    tmp.rename(path)
    size = path.stat().st_size
    print(
        "  "
        + ", ".join(f"{fmt_int(n)} {t}" for t, n in counts.items())
        + f" in {time.perf_counter() - t0:.1f} s, {fmt_bytes(size)}",
        flush=True,
    )
    return path


def _macros(con: duckdb.DuckDBPyConnection) -> None:
    # deterministic pseudo-random numbers from hashes: same data on every machine
    con.execute(
        "CREATE OR REPLACE TEMP MACRO unif(i, s) AS ((hash(i, s) % 1000003) + 0.5) / 1000003.0"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO gauss(i, s) AS "
        "sqrt(-2 * ln(unif(i, s || '1'))) * cos(2 * pi() * unif(i, s || '2'))"
    )


def _users(con: duckdb.DuckDBPyConnection, n_users: int, n_orders: int) -> None:
    """The users table and ``ug``: one row per user with its group and order range [lo, hi)."""
    con.execute(
        f"""CREATE TEMP TABLE ug AS
        WITH a AS (
            SELECT i, {_grp_sql()} AS grp
            FROM (SELECT i, hash(i, 'g') % 100 AS gh FROM range({n_users}) t(i))
        ), b AS (
            SELECT i, grp,
                   CASE WHEN grp = 4
                        THEN TIMESTAMPTZ '2025-06-01 00:00:00+00'
                             + to_seconds(CAST(unif(i, 'c') * 210 * 86400 AS BIGINT))
                        ELSE TIMESTAMPTZ '2023-01-01 00:00:00+00'
                             + to_seconds(CAST(unif(i, 'c') * 880 * 86400 AS BIGINT))
                   END AS created_at,
                   {_group_case(1)} * exp(0.5 * gauss(i, 'w')) AS weight,
                   {_group_case(2)} + 0.3 * gauss(i, 'm') AS mu,
                   {_group_case(3)} AS p_disc,
                   {_group_case(4)} AS p_off,
                   {_group_case(5)} AS win,
                   {_group_case(6)} AS ev_weight
            FROM a
        ), c AS (
            SELECT *, greatest(created_at, TIMESTAMPTZ '2024-01-01 00:00:00+00') AS w0,
                   floor(sum(weight) OVER (ORDER BY i ROWS UNBOUNDED PRECEDING)
                         / sum(weight) OVER () * {n_orders} + 1e-6) AS hi
            FROM b
        )
        SELECT *, (epoch({END}) - epoch(w0)) * win AS span,
               CAST(coalesce(lag(hi) OVER (ORDER BY i), 0) AS BIGINT) AS lo
        FROM c ORDER BY i"""
    )
    con.execute(
        """INSERT INTO users (user_id, created_at, gender, age, country)
        SELECT 'u' || i, created_at,
               ['f', 'm', 'x'][(hash(i, 'sex') % 3)::INT + 1],
               CAST(18 + hash(i, 'age') % 60 AS INTEGER),
               ['DE', 'FR', 'US', 'GB', 'NL', 'ES', 'IT', 'PL'][(hash(i, 'cty') % 8)::INT + 1]
        FROM ug ORDER BY i"""
    )


def _items(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""INSERT INTO items (item_id, title, category, price)
        SELECT 'i' || j, 'item ' || j, 'c' || (j % {N_CATEGORIES}),
               round(exp(3 + unif(j, 'ip') * 2), 2)
        FROM range({N_ITEMS}) t(j)"""
    )


def _orders_chunk(con: duckdb.DuckDBPyConnection, lo: int, hi: int, extras: Extras) -> None:
    """Orders (and their item lines) of users ``lo <= i < hi``, in order id order."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE oc AS
        SELECT k, i, w0 + to_seconds(CAST(unif(k, 't') * span AS BIGINT)) AS ts,
               amount, p_off, p_disc
        FROM (
            SELECT *, round(exp(mu + 0.5 * gauss(k, 'a')), 2) AS amount
            FROM (SELECT *, lo + unnest(range(CAST(hi AS BIGINT) - lo)) AS k
                  FROM ug WHERE hi > lo AND i >= {lo} AND i < {hi})
        ) ORDER BY k"""
    )
    con.execute(
        """INSERT INTO orders (order_id, user_id, ts, amount, currency, channel, discount, status)
        SELECT 'o' || k, 'u' || i, ts, amount, 'USD',
               CASE WHEN unif(k, 'ch') < p_off THEN 'offline' ELSE 'online' END,
               CASE WHEN unif(k, 'd') < p_disc
                    THEN round(amount * (0.1 + 0.3 * unif(k, 'd2')), 2) ELSE 0 END,
               CASE WHEN hash(k, 's') % 100 < 93 THEN 'completed'
                    WHEN hash(k, 's') % 100 < 97 THEN 'refunded' ELSE 'cancelled' END
        FROM oc ORDER BY k"""
    )
    if extras.item_share_pct:
        con.execute(
            f"""INSERT INTO order_items (order_id, line, item_id, quantity, unit_price)
            SELECT 'o' || k, 1, 'i' || (hash(k, 'item') % {N_ITEMS}), q,
                   round(amount / q, 2)
            FROM (SELECT *, CAST(1 + hash(k, 'q') % 3 AS INTEGER) AS q FROM oc
                  WHERE hash(k, 'hasitem') % 100 < {extras.item_share_pct})
            ORDER BY k"""
        )
    con.execute("DROP TABLE oc")


def _events_chunk(con: duckdb.DuckDBPyConnection, lo: int, hi: int, extras: Extras) -> None:
    """Events of users ``lo <= i < hi``: about ``events_per_user`` per user on average
    (scaled by the group's events weight), in the last EVENT_DAYS days, after sign-up."""
    mean = extras.events_per_user
    con.execute(
        f"""INSERT INTO events (event_id, user_id, event, ts, channel, item_id)
        SELECT 'e' || i || '-' || j, 'u' || i,
               ['view', 'view', 'view', 'view', 'add_to_cart', 'share', 'like']
                   [(hash(i, j, 'ev') % 7)::INT + 1],
               e0 + to_seconds(CAST(unif(hash(i, j), 'et') * (epoch({END}) - epoch(e0))
                                    AS BIGINT)),
               CASE WHEN hash(i, j, 'ech') % 100 < 40 THEN 'app' ELSE 'web' END,
               'i' || (hash(i, j, 'eit') % {N_ITEMS})
        FROM (
            SELECT i, unnest(range(n_ev)) AS j,
                   greatest(created_at, {END} - INTERVAL {EVENT_DAYS} DAY) AS e0
            FROM (SELECT i, created_at,
                         CAST(floor(unif(i, 'nev') * 2 * {mean} * ev_weight) AS BIGINT) AS n_ev
                  FROM ug WHERE i >= {lo} AND i < {hi})
            WHERE n_ev > 0
        ) ORDER BY i, j"""
    )
