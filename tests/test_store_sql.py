"""The one way segmint writes SQL literals and identifiers, checked on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from segmint.store import Store, date_lit, ident, lit, literal, open_store, table_exists, ts_lit


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        str(tmp_path / "s.duckdb")
        if request.param == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    s = open_store(url)
    yield s
    s.close()


def test_literals_round_trip(store: Store) -> None:
    tricky = "O'Brien \\ ; -- DROP TABLE users; 中文"
    assert store.scalar(f"SELECT {lit(tricky)}") == tricky
    col = 'odd "name"'
    assert store.scalar(f"SELECT 1 AS {ident(col)}") == 1
    cest = timezone(timedelta(hours=2))
    t = datetime(2026, 6, 1, 12, 30, 0, 123456, tzinfo=cest)
    got = store.scalar(f"SELECT {ts_lit(t)}")
    assert got.astimezone(UTC) == t.astimezone(UTC)
    assert str(store.scalar(f"SELECT {date_lit(date(2026, 2, 28))}"))[:10] == "2026-02-28"
    assert literal(None) == "NULL" and literal(True) == "TRUE" and literal(2.5) == "2.5"
    assert literal("a'b") == "'a''b'"


def test_table_exists(store: Store) -> None:
    assert table_exists(store, "users")
    assert not table_exists(store, "no_such_table")
