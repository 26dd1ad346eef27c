"""Schema migrations: a store written by an older segmint opens and is migrated in place.

Each backend gets a store built from the frozen version-1 DDL (tests/data/store_v1_*.sql,
what segmint wrote before consents had ``recorded_at`` and ``granted`` joined their key),
with rows in it; opening it must migrate it, keep every fact, and record the version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from segmint.errors import StoreError
from segmint.store import SCHEMA_VERSION, Store, open_store

DATA = Path(__file__).parent.parent / "data"

V1_ROWS = [
    "INSERT INTO schema_version VALUES (1, CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ))",
    "INSERT INTO users (user_id, email) VALUES ('u1', 'a@example.com'), ('u2', 'b@example.com')",
    # mixed case and spaces as a v1 store kept them; 'Email'/'email' at the same instant with
    # the same answer become one fact; a future-dated grant; a plain row
    "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES "
    "('u1', 'Email', 'Marketing', CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ), TRUE, 'crm'),"
    "('u1', 'email', 'marketing', CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ), TRUE, 'signup'),"
    "('u1', ' SMS ', 'marketing', CAST('2025-02-01 00:00:00+00' AS TIMESTAMPTZ), FALSE, 'crm'),"
    "('u2', 'email', 'marketing', CAST('2099-01-01 00:00:00+00' AS TIMESTAMPTZ), TRUE, 'crm'),"
    "('u2', 'push', 'marketing', CAST('2025-03-01 00:00:00+00' AS TIMESTAMPTZ), TRUE, 'app')",
    "INSERT INTO quarantine VALUES ('l1', 7, 'orders', 'orders', 'unknown_reference', "
    "'unknown user_id u9 (not in users)', '{\"order_id\": \"o7\"}')",
]


def _v1_duckdb(tmp_path: Path) -> str:
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    con.execute((DATA / "store_v1_duckdb.sql").read_text(encoding="utf-8"))
    for sql in V1_ROWS:
        con.execute(sql)
    con.close()
    return str(path)


def _v1_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((DATA / "store_v1_postgres.sql").read_text(encoding="utf-8"))  # type: ignore[arg-type]
        for sql in V1_ROWS:
            conn.execute(sql)  # type: ignore[arg-type]
    return url


@pytest.fixture(params=["duckdb", "postgres"])
def v1_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a store as segmint wrote it at schema version 1, with rows."""
    if request.param == "duckdb":
        return _v1_duckdb(tmp_path)
    return _v1_postgres(request.getfixturevalue("pg_url"))


def _opened(url: str, stores: list[Store]) -> Store:
    stores.append(open_store(url))
    return stores[-1]


@pytest.fixture()
def stores() -> list[Store]:
    return []


@pytest.fixture(autouse=True)
def _close(stores: list[Store]) -> object:
    yield
    for s in stores:
        s.close()


def test_a_version_1_store_opens_and_is_migrated(v1_store: str, stores: list[Store]) -> None:
    assert SCHEMA_VERSION == 10
    store = _opened(v1_store, stores)
    versions = store.query("SELECT version FROM schema_version ORDER BY version")["version"]
    assert versions.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    got = store.query(
        "SELECT user_id, channel, purpose, ts, granted, source, recorded_at FROM consents "
        "ORDER BY user_id, channel"
    )
    # trimmed and lower-cased; 'Email' and 'email' (same instant, same answer) are one row
    assert list(zip(got["user_id"], got["channel"], got["purpose"], strict=True)) == [
        ("u1", "email", "marketing"),
        ("u1", "sms", "marketing"),
        ("u2", "email", "marketing"),
        ("u2", "push", "marketing"),
    ]
    assert got["recorded_at"].notna().all()
    assert store.count("users") == 2  # nothing else touched
    assert store.count("exports") == 0  # version 4: the export record exists, empty
    assert store.scalar("SELECT count(*) FROM campaign_outcomes") == 0  # version 5
    assert store.count("campaign_runs") == 0  # version 6: the run tables exist, empty


def test_version_5_campaign_outcomes_is_keyed_by_campaign_and_user(
    v1_store: str, stores: list[Store]
) -> None:
    store = _opened(v1_store, stores)
    store.execute(
        "INSERT INTO campaign_outcomes (campaign, user_id, converted, revenue, visited) "
        "VALUES ('c', 'u1', TRUE, 12.5, NULL), ('c', 'u2', FALSE, 0, TRUE)"
    )
    got = store.query("SELECT * FROM campaign_outcomes ORDER BY user_id")
    assert got["revenue"].tolist() == [12.5, 0.0] and got["converted"].tolist() == [True, False]
    with pytest.raises(Exception, match="(?i)duplicate|primary key|unique"):
        store.execute("INSERT INTO campaign_outcomes (campaign, user_id) VALUES ('c', 'u1')")


def test_after_migration_a_grant_and_a_revoke_at_the_same_instant_are_both_kept(
    v1_store: str, stores: list[Store]
) -> None:
    from segmint.store import latest_consent_sql

    store = _opened(v1_store, stores)
    with store.transaction():
        store.execute(
            "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES "
            "('u2', 'push', 'marketing', CAST('2025-03-01 00:00:00+00' AS TIMESTAMPTZ), FALSE, "
            "'app')"
        )
    n = store.scalar("SELECT count(*) FROM consents WHERE user_id = 'u2' AND channel = 'push'")
    assert n == 2  # both facts kept
    latest = store.query(f"SELECT * FROM ({latest_consent_sql()}) l WHERE user_id = 'u2'")
    by_channel = dict(zip(latest["channel"], latest["granted"].map(bool), strict=True))
    assert by_channel == {"email": True, "push": False}  # the revoke wins the tie
    # the v1 grant dated 2099 takes effect when the migration recorded it, not in 2099
    assert latest.set_index("channel").loc["email", "effective_at"].year < 2099


def test_the_migrated_postgres_key_includes_granted(pg_url: str, stores: list[Store]) -> None:
    store = _opened(_v1_postgres(pg_url), stores)
    key = store.query(
        "SELECT a.attname AS col FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'consents'::regclass AND i.indisprimary ORDER BY a.attnum"
    )["col"].tolist()
    assert key == ["user_id", "channel", "purpose", "ts", "granted"]


def test_reopening_a_migrated_store_migrates_nothing(v1_store: str, stores: list[Store]) -> None:
    _opened(v1_store, stores).close()
    stores.pop()
    store = _opened(v1_store, stores)
    versions = store.query("SELECT version FROM schema_version ORDER BY version")["version"]
    assert versions.tolist() == list(range(1, SCHEMA_VERSION + 1))
    assert store.count("consents") == 4


def test_a_fresh_store_is_created_at_the_latest_version(
    tmp_path: Path, stores: list[Store]
) -> None:
    store = _opened(str(tmp_path / "new.duckdb"), stores)
    assert store.query("SELECT version FROM schema_version")["version"].tolist() == [SCHEMA_VERSION]


def _break_v1(url: str) -> Callable[[str], None]:
    """Run one statement on the raw v1 store (DuckDB file or PostgreSQL schema)."""

    def run(sql: str) -> None:
        if url.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql)  # type: ignore[arg-type]
        else:
            con = duckdb.connect(url)
            con.execute(sql)
            con.close()

    return run


def test_a_failed_migration_leaves_the_store_as_it_was(v1_store: str) -> None:
    # a v1 store someone altered by hand: the step cannot add its column
    _break_v1(v1_store)("ALTER TABLE consents ADD COLUMN recorded_at VARCHAR")
    with pytest.raises(StoreError, match=r"migration to schema version 2 .* rolled back"):
        open_store(v1_store)
    if v1_store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(v1_store) as conn:
            versions = conn.execute("SELECT version FROM schema_version").fetchall()
            channels = conn.execute("SELECT channel FROM consents ORDER BY 1").fetchall()
    else:
        con = duckdb.connect(v1_store)
        versions = con.execute("SELECT version FROM schema_version").fetchall()
        channels = con.execute("SELECT channel FROM consents ORDER BY 1").fetchall()
        con.close()
    assert versions == [(1,)]
    assert [c for (c,) in channels] == [" SMS ", "Email", "email", "email", "push"]


def test_a_store_newer_than_this_segmint_is_refused(tmp_path: Path) -> None:
    url = _v1_duckdb(tmp_path)
    con = duckdb.connect(url)
    con.execute("INSERT INTO schema_version VALUES (99, current_timestamp)")
    con.close()
    with pytest.raises(StoreError, match=r"schema version 99, newer than this segmint"):
        open_store(url)


def test_version_3_quarantine_keeps_old_rows_and_takes_several_field_issues_per_row(
    v1_store: str, stores: list[Store], tmp_path: Path
) -> None:
    store = _opened(v1_store, stores)
    old = store.query('SELECT "row", rule, kind, field, raw_value FROM quarantine')
    assert old.to_dict("records") == [
        {"row": 7, "rule": "unknown_reference", "kind": "rejected", "field": "", "raw_value": None}
    ]
    with store.transaction():  # the key now includes the field: two issues on one row
        store.execute(
            'INSERT INTO quarantine (load_id, "row", source, target_table, rule, reason, kind, '
            "field, raw_value) VALUES "
            "('l2', 3, 'users', 'users', 'bad_type', 'x', 'field_issue', 'age', 'old'), "
            "('l2', 3, 'users', 'users', 'bad_type', 'y', 'field_issue', 'created_at', 'soon')"
        )
    assert store.scalar("SELECT count(*) FROM quarantine WHERE load_id = 'l2'") == 2
    # a migrated store has the columns of a fresh one, in the same order
    fresh = _opened(str(tmp_path / "fresh.duckdb"), stores)
    for table in ("quarantine", "loads"):
        cols = "SELECT * FROM " + table + " LIMIT 0"
        assert list(store.query(cols).columns) == list(fresh.query(cols).columns)
