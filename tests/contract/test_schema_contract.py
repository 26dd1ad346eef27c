"""The store owns every table, on DuckDB and on PostgreSQL.

- a store written at any released schema version (1 to the latest), empty or with the run
  tables an older segmint created on first use, opens and ends with the tables, columns,
  keys (and PostgreSQL's indexes) of a fresh store;
- every table the code writes to exists once the store is open: no code path creates one;
- reopening changes nothing; a migration says so once;
- no CREATE/ALTER of a permanent table outside ``segmint.store``.

A store at version ``k`` is built from the frozen version-1 DDL (tests/data/store_v1_*.sql)
and the frozen migration steps 2..k, applied on their own, as the segmint of version ``k``
left it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from segmint.store import SCHEMA_VERSION, PostgresStore, Store, open_store
from segmint.store._migrations import MIGRATIONS
from segmint.store._schema import FEATURES_V6_COLUMNS, run_tables_ddl

DATA = Path(__file__).parent.parent / "data"
SRC = Path(__file__).parents[2] / "src" / "segmint"

#: every permanent table of a store at the latest version
EXPECTED_TABLES = {
    # canonical
    "users",
    "items",
    "orders",
    "order_items",
    "events",
    "consents",
    # system (versions 1-5)
    "schema_version",
    "loads",
    "quarantine",
    "exports",
    "campaign_outcomes",
    # run tables (version 6)
    "segment_runs",
    "segment_assignments",
    "feature_runs",
    "features",
    "recommendation_runs",
    "recommendations",
    "campaign_runs",
    "campaign_audiences",
    "campaign_assignments",
    "deliveries",
    "suppressions",
    "campaign_evaluations",
    # the service (version 7)
    "api_keys",
    "tracked_messages",
    "tracking_spool",
    "identities",
    "exposures",
    "job_runs",
    # the workspace (version 8)
    "workspace_users",
    "workspace_sessions",
    "audit_log",
    # privacy (version 9)
    "privacy_keys",
    "erasures",
    "retention_purges",
    # predictions (version 10)
    "predict_runs",
    "predictions",
}

#: tables the code reads or writes that are not part of the schema: a legacy table an
#: earlier segmint left (emptied and dropped by the key ring, segmint.campaigns._keys)
LEGACY_TABLES = {"campaign_secrets"}


# -- building stores --------------------------------------------------------------------


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, a URL for a new store): a DuckDB path, or an empty PostgreSQL schema."""
    if request.param == "duckdb":
        yield "duckdb", str(tmp_path / "store.duckdb")
    else:
        yield "postgres", request.getfixturevalue("pg_url")


def _raw_v1(kind: str, url: str) -> None:
    if kind == "duckdb":
        con = duckdb.connect(url)
        con.execute((DATA / "store_v1_duckdb.sql").read_text(encoding="utf-8"))
        con.execute("INSERT INTO schema_version VALUES (1, current_timestamp)")
        con.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((DATA / "store_v1_postgres.sql").read_text(encoding="utf-8"))  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_version VALUES (1, current_timestamp)")


def _raw_store(kind: str, url: str) -> Store:
    """The store at ``url`` opened without creating or migrating anything."""
    return Store(url) if kind == "duckdb" else PostgresStore(url)


def _at_version(kind: str, url: str, version: int, *, run_tables: bool = False) -> None:
    """Leave at ``url`` a store as the segmint of schema ``version`` wrote it; with
    ``run_tables``, also the run tables it created on first use (before version 6)."""
    _raw_v1(kind, url)
    store = _raw_store(kind, url)
    try:
        for step in MIGRATIONS:
            if step.version > version:
                break
            with store.transaction():
                step.apply(store)
                store.execute(f"INSERT INTO schema_version VALUES ({step.version}, now())")
        if run_tables:
            with store.transaction():
                store.execute(run_tables_ddl(secondary_indexes=kind == "postgres"))
    finally:
        store.close()


def _shape(store: Store) -> dict[str, list[tuple[str, str, str]]]:
    """Table -> its columns (name, type, nullable), in order."""
    cols = store.query(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    out: dict[str, list[tuple[str, str, str]]] = {}
    for t, c, typ, null in cols.itertuples(index=False):
        out.setdefault(str(t), []).append((str(c), str(typ).upper(), str(null)))
    return out


def _keys(store: Store) -> set[tuple[str, str]]:
    """(table, column) of every primary key column."""
    rows = store.query(
        "SELECT k.table_name, k.column_name FROM information_schema.table_constraints c "
        "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
        "AND k.table_name = c.table_name AND k.table_schema = c.table_schema "
        "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()"
    )
    return {(str(t), str(c)) for t, c in rows.itertuples(index=False)}


def _indexes(store: Store) -> set[str]:
    if store.dialect != "postgres":
        return set()
    rows = store.query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    return {str(n) for n in rows["indexname"]}


def _fresh_shape(kind: str, tmp_path: Path, pg_other: str | None) -> tuple[object, ...]:
    url = str(tmp_path / "fresh.duckdb") if kind == "duckdb" else pg_other
    assert url is not None
    with open_store(url) as fresh:
        return _shape(fresh), _keys(fresh), _indexes(fresh)


@pytest.fixture()
def fresh(
    backend: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[object, ...]:
    """(columns, keys, indexes) of a store created at the latest version."""
    kind, _ = backend
    if kind == "duckdb":
        return _fresh_shape(kind, tmp_path, None)
    import uuid

    import psycopg

    server = request.getfixturevalue("pg_server_url")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    sep = "&" if "?" in server else "?"
    try:
        return _fresh_shape(kind, tmp_path, f"{server}{sep}options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


# -- the contract -----------------------------------------------------------------------


def test_a_fresh_store_has_every_table_at_the_latest_version(backend: tuple[str, str]) -> None:
    _, url = backend
    with open_store(url) as store:
        assert set(_shape(store)) == EXPECTED_TABLES
        assert store.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1].version
        features = [c for c, _, _ in _shape(store)["features"]]
        assert features == ["run_id", "user_id", *(n for n, _ in FEATURES_V6_COLUMNS)]


@pytest.mark.parametrize("run_tables", [False, True], ids=["bare", "with-run-tables"])
@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_every_older_store_migrates_to_the_shape_of_a_fresh_one(
    backend: tuple[str, str], fresh: tuple[object, ...], version: int, run_tables: bool
) -> None:
    kind, url = backend
    _at_version(kind, url, version, run_tables=run_tables)
    with open_store(url) as store:
        got = (_shape(store), _keys(store), _indexes(store))
        versions = store.query("SELECT version FROM schema_version ORDER BY version")
    assert versions["version"].tolist() == list(range(1, SCHEMA_VERSION + 1))
    assert got[0] == fresh[0]  # same tables, same columns in the same order
    assert got[1] == fresh[1]  # same primary keys
    assert got[2] == fresh[2]  # same indexes (PostgreSQL)


def test_reopening_changes_nothing(backend: tuple[str, str]) -> None:
    kind, url = backend
    _at_version(kind, url, 5)
    with open_store(url) as store:
        first = (_shape(store), _keys(store), _indexes(store))
        n_versions = store.count("schema_version")
    for _ in range(2):
        with open_store(url) as store:
            assert (_shape(store), _keys(store), _indexes(store)) == first
            assert store.count("schema_version") == n_versions


def test_a_migration_says_so_once(
    backend: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    kind, url = backend
    _at_version(kind, url, 5, run_tables=True)  # today's stores: version 5 + run tables
    with caplog.at_level(logging.INFO, logger="segmint.store"):
        open_store(url).close()
        said = [r for r in caplog.records if "migrated from schema version" in r.getMessage()]
        assert len(said) == 1
        assert said[0].levelno == logging.WARNING  # shown by the CLI (which logs WARNING+)
        assert f"from schema version 5 to {SCHEMA_VERSION}" in said[0].getMessage()
        caplog.clear()
        open_store(url).close()
        assert not [r for r in caplog.records if "migrat" in r.getMessage()]


def test_a_store_keeps_its_rows_and_extra_feature_columns_through_version_6(
    backend: tuple[str, str],
) -> None:
    """A version-5 store whose features table an older segmint created with a custom
    feature column (and rows) keeps both; a column a run needs is added on write."""
    kind, url = backend
    _at_version(kind, url, 5, run_tables=True)
    store = _raw_store(kind, url)
    try:
        with store.transaction():
            store.execute('ALTER TABLE features ADD COLUMN "custom_x" DOUBLE')
            store.execute(
                "INSERT INTO features (run_id, user_id, custom_x) VALUES ('f1', 'u1', 1.5)"
            )
    finally:
        store.close()
    with open_store(url) as store:
        assert store.query("SELECT run_id, custom_x FROM features").values.tolist() == [["f1", 1.5]]
        with store.transaction():
            assert store.add_columns("features", {"custom_x": "DOUBLE", "custom_y": "BIGINT"}) == [
                "custom_y"
            ]
        assert "custom_y" in store.query("SELECT * FROM features LIMIT 0").columns


# -- static checks on the code -----------------------------------------------------------

_SOURCES = [p for p in SRC.rglob("*.py") if "store" not in p.relative_to(SRC).parts[:1]]
#: CREATE/ALTER of anything but a temporary table or view (staging)
_DDL = re.compile(
    r"\b(CREATE\s+(OR\s+REPLACE\s+)?(UNIQUE\s+)?(TABLE|INDEX|VIEW|SCHEMA|SEQUENCE)"
    r"|ALTER\s+TABLE\s+(?!\{old\}\s+RENAME))",
)
#: a table the code writes to, or checks for (``table_exists(store, "name")``)
_USED = re.compile(
    r"\b(?:INSERT\s+INTO|DELETE\s+FROM|UPDATE)\s+([a-z][a-z0-9_]*)\b"
    r"|(?:table_exists|column_exists)\(\s*[\w.]+,\s*\"([a-z][a-z0-9_]*)\""
)


def test_no_permanent_table_is_created_or_altered_outside_the_store() -> None:
    found = []
    for path in _SOURCES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _DDL.search(line):
                found.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    # the only one left: the in-memory engine where source files are read (staging)
    assert found == [], "\n".join(found)


def test_every_table_the_code_uses_exists_after_open(backend: tuple[str, str]) -> None:
    """Every table the code writes to or checks for exists once the store is open (the
    demo, run by bench/behaviour_snapshot.py, uses every table without creating any)."""
    written: set[str] = set()
    for path in [*_SOURCES, *SRC.joinpath("store").rglob("*.py")]:
        for pair in _USED.findall(path.read_text(encoding="utf-8")):
            written |= {name for name in pair if name}
    assert {"deliveries", "campaign_evaluations", "features", "segment_runs"} <= written
    _, url = backend
    with open_store(url) as store:
        tables = set(_shape(store))
    missing = written - tables - LEGACY_TABLES - {"set", "of"}  # "UPDATE set" in prose
    assert not missing, sorted(missing)


def test_the_features_table_starts_with_the_feature_catalog() -> None:
    """``features`` is created with the catalog of version 6; a feature the catalog gains
    later is appended (and added to the table by Store.add_columns when a run stores it)."""
    from segmint.features._runs import CATALOG_TYPES

    assert list(CATALOG_TYPES.items())[: len(FEATURES_V6_COLUMNS)] == list(FEATURES_V6_COLUMNS)


def test_version_9_keeps_birthdays_and_chains_the_audit_log(backend: tuple[str, str]) -> None:
    """A version-8 store's birthdays become text (sealed from then on) with their month
    and day kept in ``birthday_md``; its audit entries are chained in time order."""
    from segmint.store import verify_audit

    kind, url = backend
    _at_version(kind, url, 8, run_tables=True)
    store = _raw_store(kind, url)
    try:
        with store.transaction():
            store.execute(
                "INSERT INTO users (user_id, birthday) VALUES ('u1', DATE '1990-02-28'), "
                "('u2', NULL)"
            )
            for i, ts in enumerate(("2026-01-02 10:00:00+00", "2026-01-01 09:00:00+00")):
                store.execute(
                    "INSERT INTO audit_log (id, ts, actor, action, target, detail) "
                    f"VALUES ('e{i}', CAST('{ts}' AS TIMESTAMPTZ), 'ana', 'config.save', "
                    """'segmint.yaml', '{"b": 1, "a": [1, 2]}')"""
                )
    finally:
        store.close()
    with open_store(url) as store:
        got = store.query("SELECT user_id, birthday, birthday_md FROM users ORDER BY user_id")
        assert got["birthday"].tolist()[0] == "1990-02-28"
        assert got["birthday_md"].tolist()[0] == 228
        assert got["birthday_md"].isna().tolist() == [False, True]
        order = store.query("SELECT id, seq FROM audit_log ORDER BY seq")
        assert order["id"].tolist() == ["e1", "e0"]  # the earlier entry first
        check = verify_audit(store)
        assert (check.ok, check.entries) == (True, 2)
