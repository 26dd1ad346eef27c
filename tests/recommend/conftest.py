"""A tiny hand-made shop whose popularity, segments and co-purchases are known by heart.

Items (sorted: the column order of the interaction matrix)::

    A1 Red Novel     books 10      A4 Red Atlas  books 25 (nobody touched it)
    A2 Blue Novel    books 20      B1 Toy Car    toys  15
    A3 Green Atlas   books 30      B2 Toy Train  toys 100
    C1 Coffee Beans  food   5      D1 Toy Robot  toys  50 (out of stock)

Completed purchases: u1 A1 A2x2 C1 | u2 A1 A2 C1x3 | u3 A1 | u4 B1 B2 | u5 B1x2 | u6 B2 C1;
a cancelled order of u6 (A3 x5) does not count. Events: u3 views A3 and puts A2 in the
cart, u5 views D1; a page view and a like carry no weight. u7 and u8 have no activity.
Segments: S1 = u1 u2 u3, S2 = u4 u5 u6 u7; u8 has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from segmint.segments._runs import SegmentResult, save_run
from segmint.store import Store, open_store

ITEMS = [
    ("A1", "Red Novel", "books", 10.0, True),
    ("A2", "Blue Novel", "books", 20.0, True),
    ("A3", "Green Atlas", "books", 30.0, True),
    ("A4", "Red Atlas", "books", 25.0, True),
    ("B1", "Toy Car", "toys", 15.0, True),
    ("B2", "Toy Train", "toys", 100.0, True),
    ("C1", "Coffee Beans", "food", 5.0, True),
    ("D1", "Toy Robot", "toys", 50.0, False),
]
ORDERS = [  # order, user, day of June 2025, status, [(item, quantity)]
    ("o1", "u1", 1, "completed", [("A1", 1), ("A2", 2)]),
    ("o2", "u2", 2, "completed", [("A1", 1), ("A2", 1), ("C1", 3)]),
    ("o3", "u3", 3, "completed", [("A1", 1)]),
    ("o4", "u4", 4, "completed", [("B1", 1), ("B2", 1)]),
    ("o5", "u5", 5, "completed", [("B1", 2)]),
    ("o6", "u6", 6, "completed", [("B2", 1), ("C1", 1)]),
    ("o7", "u6", 7, "cancelled", [("A3", 5)]),
    ("o8", "u1", 8, "completed", [("C1", 1)]),
]
EVENTS = [  # id, user, event, day of June 2025, item
    ("e1", "u3", "product_view", 10, "A3"),
    ("e2", "u3", "add_to_cart", 10, "A2"),
    ("e3", "u5", "product_view", 11, "D1"),
    ("e4", "u5", "page_view", 11, None),
    ("e5", "u4", "like", 12, "A1"),
]
SEGMENTS = {"u1": "S1", "u2": "S1", "u3": "S1", "u4": "S2", "u5": "S2", "u6": "S2", "u7": "S2"}
USERS = [f"u{k}" for k in range(1, 9)]


def _q(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _ts(day: int) -> str:
    return f"CAST('2025-06-{day:02d} 12:00:00+00' AS TIMESTAMPTZ)"


def fill_tiny_shop(store: Store) -> Store:
    """Insert the tiny shop into an empty store (any backend) and save the segments."""
    rows = ", ".join(f"({_q(u)}, {_ts(1)})" for u in USERS)
    store.execute(f"INSERT INTO users (user_id, created_at) VALUES {rows}")
    rows = ", ".join("(" + ", ".join(_q(v) for v in it) + ")" for it in ITEMS)
    store.execute(f"INSERT INTO items (item_id, title, category, price, in_stock) VALUES {rows}")
    orders, lines = [], []
    for oid, uid, day, status, items in ORDERS:
        orders.append(f"({_q(oid)}, {_q(uid)}, {_ts(day)}, 1.0, {_q(status)})")
        for k, (item, qty) in enumerate(items, start=1):
            lines.append(f"({_q(oid)}, {k}, {_q(item)}, {qty}, 1.0)")
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES " + ", ".join(orders)
    )
    store.execute(
        "INSERT INTO order_items (order_id, line, item_id, quantity, unit_price) VALUES "
        + ", ".join(lines)
    )
    rows = ", ".join(
        f"({_q(e)}, {_q(u)}, {_q(ev)}, {_ts(day)}, {_q(item)})" for e, u, ev, day, item in EVENTS
    )
    store.execute(f"INSERT INTO events (event_id, user_id, event, ts, item_id) VALUES {rows}")
    assignments = pd.DataFrame(
        {"user_id": list(SEGMENTS), "segment": list(SEGMENTS.values()), "detail": ""}
    )
    save_run(
        store,
        SegmentResult(
            run_id="s-tiny",
            segmentation="tiers",
            method="rules",
            created_at=datetime(2025, 7, 1, tzinfo=UTC),
            feature_run_id=None,
            as_of=datetime(2025, 7, 1, tzinfo=UTC),
            assignments=assignments,
        ),
    )
    return store


@pytest.fixture()
def tiny_store(tmp_path: Path) -> Iterator[Store]:
    store = fill_tiny_shop(open_store(str(tmp_path / "tiny.duckdb")))
    yield store
    store.close()


@pytest.fixture()
def pg_store(pg_url: str) -> Iterator[Store]:
    """The tiny shop in a fresh PostgreSQL schema."""
    store = fill_tiny_shop(open_store(pg_url))
    yield store
    store.close()
