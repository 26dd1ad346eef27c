"""A tiny store whose features can be computed by hand (see test_catalog.py).

As of 2024-07-01 00:00 UTC:

- u1 signed up 2024-01-01; four completed orders (one outside 90 days), one refunded,
  one exactly at the as-of instant (excluded); events in three sessions.
- u2 signed up 2024-06-15; one completed order a minute before as-of, one cancelled.
- u3 signed up 2024-06-20; nothing else.
- u4 signed up exactly at the as-of instant (excluded); u5 has no sign-up date (kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segmint.store import Store, open_store

TINY_SQL = """
INSERT INTO users (user_id, created_at, gender, age, country, city) VALUES
    ('u1', '2024-01-01 10:00:00+00', 'f', 30, 'DE', 'Berlin'),
    ('u2', '2024-06-15 08:00:00+00', 'm', 45, 'FR', 'Paris'),
    ('u3', '2024-06-20 12:00:00+00', NULL, NULL, NULL, NULL),
    ('u4', '2024-07-01 00:00:00+00', 'f', 22, 'DE', 'Bonn'),
    ('u5', NULL, NULL, NULL, NULL, NULL);
INSERT INTO items (item_id, title, category, price, in_stock) VALUES
    ('i1', 'Novel', 'books', 10.0, TRUE),
    ('i2', 'Yo-yo', 'toys', 5.0, TRUE),
    ('i3', 'Mystery box', NULL, 7.0, TRUE);
INSERT INTO orders (order_id, user_id, ts, amount, currency, channel, discount, status) VALUES
    ('o1', 'u1', '2024-03-01 10:00:00+00', 100.0, 'EUR', 'online', 0.0, 'completed'),
    ('o8', 'u1', '2024-05-15 12:00:00+00', 20.0, 'EUR', 'online', 0.0, 'completed'),
    ('o2', 'u1', '2024-06-10 10:00:00+00', 60.0, 'EUR', 'offline', 20.0, 'completed'),
    ('o3', 'u1', '2024-06-25 18:00:00+00', 40.0, 'EUR', 'online', 0.0, 'completed'),
    ('o4', 'u1', '2024-06-26 09:00:00+00', 30.0, 'EUR', 'online', 0.0, 'refunded'),
    ('o5', 'u1', '2024-07-01 00:00:00+00', 999.0, 'EUR', 'online', 0.0, 'completed'),
    ('o6', 'u2', '2024-06-30 23:59:00+00', 25.0, 'EUR', 'online', 5.0, 'completed'),
    ('o7', 'u2', '2024-06-20 09:00:00+00', 10.0, 'EUR', 'online', 0.0, 'cancelled');
INSERT INTO order_items (order_id, line, item_id, quantity, unit_price) VALUES
    ('o1', 1, 'i1', 2, 10.0),
    ('o1', 2, 'i2', 4, 5.0),
    ('o2', 1, 'i2', 2, 5.0),
    ('o3', 1, 'i3', 1, NULL),
    ('o4', 1, 'i1', 10, 10.0),
    ('o5', 1, 'i1', 100, 10.0),
    ('o6', 1, 'i1', 1, 10.0),
    ('o6', 2, 'i2', 2, 5.0);
INSERT INTO events (event_id, user_id, anonymous_id, event, ts, channel, item_id) VALUES
    ('e1', 'u1', NULL, 'page_view', '2024-06-30 10:00:00+00', 'web', NULL),
    ('e2', 'u1', NULL, 'product_view', '2024-06-30 10:20:00+00', 'web', 'i1'),
    ('e3', 'u1', NULL, 'add_to_cart', '2024-06-30 10:50:00+00', 'app', 'i1'),
    ('e4', 'u1', NULL, 'app_open', '2024-06-30 11:21:00+00', 'app', NULL),
    ('e5', 'u1', NULL, 'share', '2024-06-20 15:00:00+00', 'social', 'i2'),
    ('e6', 'u1', NULL, 'like', '2024-03-01 15:00:00+00', 'social', 'i2'),
    ('e7', 'u1', NULL, 'page_view', '2024-07-01 00:00:00+00', 'web', NULL),
    ('e10', 'u2', NULL, 'email_open', '2024-06-29 12:00:00+00', 'email', NULL),
    ('e11', NULL, 'anon-1', 'page_view', '2024-06-30 12:00:00+00', 'web', NULL);
"""


def fill(store: Store) -> Store:
    """Insert the tiny data set into an empty store."""
    with store.transaction():
        store.execute(TINY_SQL)
    return store


@pytest.fixture()
def tiny_store(tmp_path: Path) -> Iterator[Store]:
    """A DuckDB store holding the tiny data set."""
    store = fill(open_store(str(tmp_path / "tiny.duckdb")))
    yield store
    store.close()


@pytest.fixture()
def tiny_pg_store(pg_url: str) -> Iterator[Store]:
    """A PostgreSQL store holding the same tiny data set."""
    store = fill(open_store(pg_url))
    yield store
    store.close()
