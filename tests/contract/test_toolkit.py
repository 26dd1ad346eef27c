"""The store toolkit on DuckDB and on PostgreSQL: the same calls give the same answers.

Named relations (completed orders as of a date, the consent in force, a segmentation's
latest run, a user's segment at a time), Arrow/pandas fetch, bulk insert, the staging area
(names its own temporary tables and drops them, also on an error) and the capability
flags.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from segmint.store import (
    Capabilities,
    Store,
    completed_orders,
    latest_consent_sql,
    latest_run_sql,
    latest_runs_sql,
    literal,
    open_store,
    segment_at_sql,
)

T = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        str(tmp_path / "s.duckdb")
        if request.param == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    s = open_store(url)
    _seed(s)
    yield s
    s.close()


def _ts(day: int, month: int = 3) -> datetime:
    return datetime(2025, month, day, 12, tzinfo=UTC)


def _seed(s: Store) -> None:
    s.insert("users", pd.DataFrame({"user_id": ["u1", "u2", "u3"]}))
    s.insert(
        "orders",
        pd.DataFrame(
            {
                "order_id": ["o1", "o2", "o3", "o4", "o5"],
                "user_id": ["u1", "u1", "u2", "u3", "u3"],
                "ts": [_ts(1, 2), _ts(2), _ts(10), _ts(3, 2), _ts(4, 2)],
                "status": ["completed", "completed", "completed", "completed", "refunded"],
                "amount": [10.0, 20.0, 30.0, 5.0, 99.0],
            }
        ),
    )
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3"],
            "segmentation": ["rfm", "rfm", "life"],
            "method": ["rfm", "rfm", "lifecycle"],
            "created_at": [_ts(1), _ts(5), _ts(2)],
            "n_users": [2, 2, 1],
            "params": ["{}"] * 3,
            "metrics": ["{}"] * 3,
            "details": ["{}"] * 3,
        }
    )
    s.insert("segment_runs", runs)
    s.insert(
        "segment_assignments",
        pd.DataFrame(
            {
                "run_id": ["r1", "r1", "r2", "r2", "r3"],
                "user_id": ["u1", "u2", "u1", "u2", "u1"],
                "segment": ["new", "new", "loyal", "lost", "active"],
            }
        ),
    )


def test_capabilities_say_what_differs(store: Store) -> None:
    caps = store.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.engine_is_store is (store.dialect == "duckdb")
    assert caps.shared is (store.dialect == "postgres")
    assert caps.secondary_indexes is store.secondary_indexes


def test_completed_orders_as_of_a_date(store: Store) -> None:
    every = store.query(f"SELECT order_id FROM ({completed_orders()}) o ORDER BY 1")
    assert every["order_id"].tolist() == ["o1", "o2", "o3", "o4"]  # not the refund
    as_of = store.query(
        f"SELECT order_id FROM ({completed_orders(before=date(2025, 3, 2))}) o ORDER BY 1"
    )
    assert as_of["order_id"].tolist() == ["o1", "o4"]  # o2 is at 12:00 on the as-of day
    window = store.query(
        f"SELECT sum(amount) AS s FROM ({completed_orders(since=_ts(2), before=_ts(10))}) o"
    )
    assert window["s"].iat[0] == 20.0  # [since, before): o3 at exactly `before` is out


def test_latest_run_and_segment_at_a_time(store: Store) -> None:
    assert store.scalar(latest_run_sql("segment", segmentation="rfm")) == "r2"
    assert store.scalar(latest_run_sql("segment", segmentation="rfm", at=_ts(3))) == "r1"
    assert store.scalar(latest_run_sql("segment", segmentation="rfm", at=_ts(1, 1))) is None
    assert store.scalar(latest_run_sql("segment", method="lifecycle")) == "r3"
    now = store.query(segment_at_sql("rfm") + " ORDER BY 1")
    assert list(zip(now["user_id"], now["segment"], strict=True)) == [
        ("u1", "loyal"),
        ("u2", "lost"),
    ]
    then = store.query(segment_at_sql("rfm", at=_ts(4)) + " ORDER BY 1")
    assert then["segment"].tolist() == ["new", "new"]
    latest = store.query(latest_runs_sql())
    assert list(zip(latest["segmentation"], latest["run_id"], strict=True)) == [
        ("life", "r3"),
        ("rfm", "r2"),
    ]
    assert store.query(segment_at_sql("nobody")).empty


def test_latest_consent_is_the_one_in_force(store: Store) -> None:
    store.insert(
        "consents",
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u2"],
                "channel": ["email"] * 3,
                "purpose": ["marketing"] * 3,
                "ts": [_ts(1), _ts(2), _ts(1)],
                "recorded_at": [_ts(1), _ts(2), _ts(1)],
                "granted": [True, False, True],
                "source": ["signup", "unsubscribe", "signup"],
            }
        ),
    )
    got = store.query(latest_consent_sql() + " ORDER BY user_id")
    assert got["granted"].tolist() == [False, True]
    one = store.query(latest_consent_sql("?"), ["u2"])
    assert one["user_id"].tolist() == ["u2"]


def test_arrow_and_pandas_fetch_agree(store: Store) -> None:
    sql = "SELECT order_id, amount FROM orders ORDER BY order_id"
    table = store.arrow(sql)
    assert isinstance(table, pa.Table)
    assert table.column("order_id").to_pylist() == store.query(sql)["order_id"].tolist()
    assert store.arrow("SELECT order_id FROM orders WHERE order_id = ?", ["o3"]).num_rows == 1


def test_literals_round_trip_through_both_stores(store: Store) -> None:
    odd = 'O\'Brien "quoted" \\ back; DROP TABLE users; --'
    assert store.scalar(f"SELECT {literal(odd)}") == odd
    assert pd.Timestamp(store.scalar(f"SELECT {literal(T)}")) == pd.Timestamp(T)
    assert store.scalar(f"SELECT {literal(None)} IS NULL") in (True, 1)
    assert store.count("users") == 3


def test_bulk_insert_of_frames_and_arrow(store: Store) -> None:
    n = store.insert("items", pa.table({"item_id": ["i1", "i2"], "title": ["A", "B"]}))
    assert n == 2
    assert store.insert("items", pd.DataFrame({"item_id": []}, dtype=object)) == 0
    assert store.query("SELECT title FROM items ORDER BY item_id")["title"].tolist() == ["A", "B"]


def test_bulk_insert_joins_the_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.insert("items", pd.DataFrame({"item_id": ["i9"]}))
        raise RuntimeError("boom")
    assert store.count("items") == 0


def _staged_names(store: Store) -> set[str]:
    with store.staging() as probe:
        names = probe.query("SELECT table_name FROM duckdb_tables() WHERE temporary")
        views = probe.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")
    return set(names["table_name"]) | set(views["view_name"])


def test_staging_names_and_drops_its_tables(store: Store) -> None:
    before = _staged_names(store)
    with store.staging() as stage:
        a = stage.table("big batch!", "SELECT range AS x FROM range(5)")
        b = stage.frame("frame", pd.DataFrame({"x": [1, 2]}))
        c = stage.frame("copied", pa.table({"x": [3]}), copy=True)
        assert len({a, b, c}) == 3 and all(n.startswith("_stage_") for n in (a, b, c))
        assert stage.count(a) == 5 and stage.count(b) == 2 and stage.count(c) == 1
        assert stage.scalar(f"SELECT sum(x) FROM {a}") == 10
        assert stage.arrow(f"SELECT * FROM {b}").num_rows == 2
        stage.drop(a)
        assert stage.name("x") != stage.name("x")
    assert _staged_names(store) == before


def test_staging_drops_on_error_and_writes_to_the_store(store: Store) -> None:
    before = _staged_names(store)
    with pytest.raises(ValueError), store.staging() as stage:
        rows = stage.frame("items", pd.DataFrame({"item_id": ["i1", "i2"], "title": ["x", "y"]}))
        stage.write("items", rows, ["item_id", "title"])
        raise ValueError("after the write")
    assert _staged_names(store) == before
    assert store.count("items") == 2  # the write was not in a transaction: it stays


def test_staging_reads_store_rows_on_every_store(store: Store) -> None:
    with store.staging() as stage:
        name = stage.from_store(
            "orders",
            "SELECT order_id, amount FROM orders WHERE amount > 15",
            {"order_id": "VARCHAR", "amount": "DOUBLE"},
        )
        assert sorted(stage.query(f"SELECT order_id FROM {name}")["order_id"]) == ["o2", "o3", "o5"]


def test_staging_inside_a_rolled_back_transaction(store: Store) -> None:
    before = _staged_names(store)
    with pytest.raises(RuntimeError), store.transaction(), store.staging() as stage:
        t = stage.table("t", "SELECT 1 AS x")
        stage.write("items", f"(SELECT 'i' || x AS item_id FROM {t})", ["item_id"])
        raise RuntimeError("boom")
    assert _staged_names(store) == before
    assert store.count("items") == 0
