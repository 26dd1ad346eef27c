"""Ingestion contract: accounting, quarantine, idempotency, transactions, errors.

Every test runs against each store backend (a DuckDB file and a real PostgreSQL); the
backends differ only in the factory below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from tests.helpers import clear_users, make_project

import segmint
from segmint.errors import LoadError, MissingColumnError, NotFoundError


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("pg_url")


Opener = Callable[[Path], segmint.Project]


@pytest.fixture()
def opener() -> Iterator[Opener]:
    """Open projects and close them all after the test."""
    opened: list[segmint.Project] = []

    def open_(path: Path) -> segmint.Project:
        opened.append(segmint.open_project(path))
        return opened[-1]

    yield open_
    for p in opened:
        p.close()


def _counts(p: segmint.Project) -> dict[str, int]:
    return {t: p.store.count(t) for t in ("users", "orders", "quarantine", "loads")}


def test_clean_files_load_completely(tmp_path: Path, store: str, opener: Opener) -> None:
    p = opener(make_project(tmp_path, store=store))
    people, sales = p.ingest()
    assert (people.rows_read, people.rows_accepted, people.rows_rejected) == (3, 3, 0)
    assert (sales.rows_read, sales.rows_accepted, sales.rows_rejected) == (3, 3, 0)
    orders = p.store.query("SELECT order_id, status, currency, amount FROM orders ORDER BY 1")
    assert orders["status"].tolist() == ["completed", "completed", "refunded"]
    assert set(orders["currency"]) == {"EUR"}  # the project's default currency is kept
    assert orders["amount"].sum() == pytest.approx(114.75)


def test_timestamps_are_stored_in_utc(tmp_path: Path, store: str, opener: Opener) -> None:
    make_project(tmp_path, store=store, extra={"timezone": "Europe/Berlin"})
    p = opener(tmp_path)
    p.ingest(["people"])
    ts = p.store.scalar("SELECT created_at FROM users WHERE user_id = 'u1'")
    assert ts == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, winter time


def test_explicit_offsets_win_over_the_source_timezone(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    files = {"users.csv": "id,signup\nu1,2024-07-01T10:00:00+02:00\nu2,2024-07-01T10:00:00Z\n"}
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "created_at": "signup"},
            "timezone": "America/New_York",
        }
    }
    p = opener(make_project(tmp_path, store=store, files=files, sources=sources))
    p.ingest()
    got = p.store.query("SELECT user_id, created_at FROM users ORDER BY 1")["created_at"].tolist()
    assert [t.hour for t in got] == [8, 10]


def test_every_rejected_row_is_quarantined_with_its_reason(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    files = {
        "users.csv": "id,signup,mail,yrs\nu1,2024-01-01,a@example.com,30\n",
        "orders.csv": (
            "oid,uid,t,amt,st\n"
            "o1,u1,2024-05-01,10,paid\n"
            "o2,u9,2024-05-01,10,paid\n"  # unknown user
            "o3,u1,2024-05-01,-4,paid\n"  # negative amount
            "o4,u1,2024-13-45,4,paid\n"  # malformed date
            "o5,u1,2030-01-01,4,paid\n"  # future
            "o6,u1,2024-05-01,9999999,paid\n"  # absurd
            "o1,u1,2024-05-01,10,paid\n"  # exact duplicate of row 2
            "o1,u1,2024-05-01,11,paid\n"  # same key, other values
            ",u1,2024-05-01,11,paid\n"  # missing key
            "o7,u1,2024-05-01,ten,paid\n"  # bad type
            "o8,u1,2024-05-01,1,lost\n"  # unknown status: an optional field, a field issue
        ),
    }
    p = opener(make_project(tmp_path, store=store, files=files))
    _, sales = p.ingest(now=datetime(2026, 1, 1, tzinfo=UTC))
    assert sales.rows_read == 11
    assert sales.rows_accepted == 2  # o1 and o8 (its status set to NULL)
    assert sales.field_issues == 1 and sales.field_issues_by_field == {"status": 1}
    assert sales.rows_read == sales.rows_accepted + sales.rows_rejected
    q = p.quarantine("sales").set_index("row")
    assert q.loc[3, "rule"] == "unknown_reference"
    assert q.loc[4, "rule"] == "negative_amount"
    assert q.loc[5, "rule"] == "unparseable_timestamp"
    assert q.loc[6, "rule"] == "future_timestamp"
    assert q.loc[7, "rule"] == "absurd_amount"
    assert q.loc[8, "rule"] == "exact_duplicate" and "row 2" in q.loc[8, "reason"]
    assert q.loc[9, "rule"] == "duplicate_key"
    assert q.loc[10, "rule"] == "missing_required"
    assert q.loc[11, "rule"] == "bad_type"
    assert q.loc[12, "rule"] == "unknown_value"
    assert (q.loc[12, "kind"], q.loc[12, "field"], q.loc[12, "raw_value"]) == (
        "field_issue",
        "status",
        "lost",
    )
    assert (q["kind"] == "rejected").sum() == sales.rows_rejected == 9
    assert p.store.query("SELECT status FROM orders WHERE order_id = 'o8'")["status"].isna().all()
    assert '"uid":"u9"' in q.loc[3, "raw"].replace(" ", "")  # the raw row is kept


def test_loading_the_same_file_twice_adds_nothing(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(make_project(tmp_path, store=store))
    p.ingest()
    before = _counts(p)
    skipped = p.ingest()
    assert all(r.skipped for r in skipped)
    assert _counts(p) == before
    forced = p.ingest(force=True)  # a forced reload: keys dedupe, nothing is inserted
    assert [(r.rows_inserted, r.rows_unchanged) for r in forced] == [(0, 3), (0, 3)]
    after = _counts(p)
    assert after["users"] == before["users"] and after["orders"] == before["orders"]


def test_changed_rows_are_updated_not_duplicated(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(make_project(tmp_path, store=store))
    p.ingest()
    (tmp_path / "orders.csv").write_text(
        "oid,uid,t,amt,st\no1,u1,2024-05-01 10:00:00,10.50,refunded\no9,u3,2024-06-01,1,paid\n"
    )
    (_, sales) = p.ingest(force=True)
    assert (sales.rows_inserted, sales.rows_updated, sales.rows_unchanged) == (1, 1, 0)
    assert p.store.count("orders") == 4
    assert p.store.scalar("SELECT status FROM orders WHERE order_id = 'o1'") == "refunded"


def test_a_failure_midway_leaves_the_store_exactly_as_before(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    from segmint.sources import ingest_source

    p = opener(make_project(tmp_path, store=store))
    p.ingest(["people"])
    before = _counts(p)
    snapshot = p.store.query("SELECT * FROM users ORDER BY user_id")

    def boom() -> None:
        raise LoadError("injected failure after rows and quarantine were written")

    (tmp_path / "users.csv").write_text(
        "id,signup,mail,yrs\nu1,2024-01-01,changed@example.com,35\nu7,2024-01-01,x@example.com,1\n"
        "u8,not-a-date,y@example.com,2\n"
    )
    with pytest.raises(LoadError, match="injected"):
        ingest_source(p.store, p.config, "people", force=True, _before_commit=boom)
    assert _counts(p) == before
    assert p.store.query("SELECT * FROM users ORDER BY user_id").equals(snapshot)


def test_a_rejected_row_not_found_again_stops_the_load_before_any_write(
    tmp_path: Path, store: str, opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the checks scan only flags failing rows; their reasons come from typing them again.
    # Should that second read ever miss a row, the load stops and writes nothing.
    from segmint.sources import _ingest

    p = opener(make_project(tmp_path, store=store))
    p.ingest(["people"])
    before = _counts(p)
    (tmp_path / "users.csv").write_text(
        "id,signup,mail,yrs\nu7,2024-01-01,x@example.com,1\n,2024-01-01,y@example.com,2\n"
        "u9,not-a-date,z@example.com,3\n"  # a field issue, spelled out by the same read
    )
    real_sql = _ingest.Typing.sql

    def sql_missing_every_row(
        self: _ingest.Typing, relation: str, keep: tuple[str, str] | None = None
    ) -> str:
        if re.fullmatch(r"_stage_raw_\d+", relation):  # the source as staged
            return real_sql(self, relation, keep)
        return real_sql(self, f"(SELECT * FROM {relation} WHERE FALSE)", keep)

    monkeypatch.setattr(_ingest.Typing, "sql", sql_missing_every_row)
    with pytest.raises(
        LoadError, match="1 rows rejected, 0 found again.*1 rows with field issues of which 0"
    ):
        p.ingest(["people"], force=True)
    assert _counts(p) == before


def test_missing_column_names_expected_found_and_closest(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    files = {"users.csv": "ID,signup_date\nu1,2024-01-01\n"}
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "created_at": "signup"},
        }
    }
    p = opener(make_project(tmp_path, store=store, files=files, sources=sources))
    with pytest.raises(MissingColumnError) as exc:
        p.ingest()
    msg = str(exc.value)
    assert "'id'" in msg and "'signup'" in msg
    assert "Found: ID, signup_date" in msg
    assert "did you mean 'ID'" in msg and "did you mean 'signup_date'" in msg
    assert p.store.count("loads") == 0


def test_unknown_source_is_a_clear_error(tmp_path: Path, store: str, opener: Opener) -> None:
    p = opener(make_project(tmp_path, store=store))
    with pytest.raises(NotFoundError, match="known: people, sales"):
        p.ingest(["nope"])


def test_cleaning_fills_missing_and_reports(tmp_path: Path, store: str, opener: Opener) -> None:
    extra = {"cleaning": {"users": {"missing": {"age": "median"}}}}
    p = opener(make_project(tmp_path, store=store, extra=extra))
    people, _ = p.ingest()
    assert people.cleaning["missing"]["age"] == {"strategy": "median", "n_filled": 1, "value": 42}
    assert p.store.scalar("SELECT age FROM users WHERE user_id = 'u2'") == 42


def test_cleaning_drop_quarantines_instead_of_losing(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    extra = {"cleaning": {"users": {"missing": {"age": "drop"}}}}
    p = opener(make_project(tmp_path, store=store, extra=extra))
    (people,) = p.ingest(["people"])
    assert (people.rows_accepted, people.rows_rejected) == (2, 1)
    assert p.quarantine()["rule"].tolist() == ["missing_value_dropped"]


def test_outliers_are_capped_and_reported(tmp_path: Path, store: str, opener: Opener) -> None:
    rows = (
        "\n".join(f"o{i},u1,2024-05-01,{10 + i % 5}" for i in range(40))
        + "\no99,u1,2024-05-01,5000"
    )
    files = {"users.csv": "id\nu1\n", "orders.csv": "oid,uid,t,amt\n" + rows + "\n"}
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id"},
        },
        "sales": {
            "type": "csv",
            "path": "orders.csv",
            "table": "orders",
            "columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt"},
        },
    }
    extra = {"cleaning": {"orders": {"outliers": {"amount": {"method": "iqr", "factor": 3}}}}}
    p = opener(make_project(tmp_path, store=store, files=files, sources=sources, extra=extra))
    _, sales = p.ingest()
    rep = sales.cleaning["outliers"]["amount"]
    assert rep["n_high"] == 1 and rep["n_low"] == 0
    assert p.store.scalar("SELECT amount FROM orders WHERE order_id = 'o99'") == rep["upper_bound"]


def test_business_key_duplicates_are_quarantined(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    files = {"users.csv": "id,mail\nu1,a@example.com\nu2,a@example.com\nu3,b@example.com\n"}
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "email": "mail"},
        }
    }
    extra = {"cleaning": {"users": {"duplicates": {"key": ["email"]}}}}
    p = opener(make_project(tmp_path, store=store, files=files, sources=sources, extra=extra))
    (people,) = p.ingest()
    assert people.rejected_by_rule == {"duplicate_business_key": 1}
    assert sorted(p.store.query("SELECT user_id FROM users")["user_id"]) == ["u1", "u3"]


def test_quality_report_covers_every_table(tmp_path: Path, store: str, opener: Opener) -> None:
    p = opener(make_project(tmp_path, store=store))
    p.ingest()
    rep = p.status()
    assert rep["tables"]["users"]["rows"] == 3
    assert rep["tables"]["users"]["missing_pct"]["age"] == pytest.approx(33.33)
    assert rep["tables"]["orders"]["date_range"]["min"].startswith("2024-05-01")
    assert {r["child"]: r["orphans"] for r in rep["integrity"]}["orders.user_id"] == 0
    assert [ld["rows_read"] for ld in rep["loads"]] == [3, 3]


# -- a source that maps part of a table (issue 15, point 2) --------------------------------

CRM_SOURCE = {
    "type": "csv",
    "path": "crm.csv",
    "table": "users",
    "columns": {"user_id": "id", "country": "country"},
}


def _with_crm(tmp_path: Path, store: str, crm_csv: str) -> Path:
    from tests.helpers import ORDERS_CSV, USERS_CSV

    files = {"users.csv": USERS_CSV, "orders.csv": ORDERS_CSV, "crm.csv": crm_csv}
    make_project(tmp_path, store=store, files=files)
    import yaml

    doc = yaml.safe_load((tmp_path / "segmint.yaml").read_text(encoding="utf-8"))
    doc["sources"]["crm"] = dict(CRM_SOURCE)
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return tmp_path


def test_a_source_mapping_part_of_a_table_changes_only_its_columns(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_with_crm(tmp_path, store, "id,country\nu1,DE\nu2,FR\nu4,NL\n"))
    p.ingest(["people"])
    before = p.store.query("SELECT * FROM users ORDER BY user_id")
    (crm,) = p.ingest(["crm"])
    assert (crm.rows_inserted, crm.rows_updated, crm.rows_unchanged) == (1, 2, 0)
    assert crm.updates_columns == ["country"]
    assert "email" in crm.keeps_columns and "country" not in crm.keeps_columns
    after = p.store.query("SELECT * FROM users ORDER BY user_id").set_index("user_id")
    # the existing users keep everything the CRM file does not map
    kept = after.loc[["u1", "u2", "u3"], ["created_at", "email", "age"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before[["created_at", "email", "age"]])
    country = after["country"].astype(object).where(after["country"].notna(), None)
    assert country.to_dict() == {"u1": "DE", "u2": "FR", "u3": None, "u4": "NL"}
    assert pd.isna(after.loc["u4", "email"])  # a new user gets only what the CRM maps
    # the same file again changes nothing; a changed value is one update
    (again,) = p.ingest(["crm"], force=True)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 3)
    (tmp_path / "crm.csv").write_text("id,country\nu1,AT\nu2,FR\n", encoding="utf-8")
    (changed,) = p.ingest(["crm"])
    assert (changed.rows_inserted, changed.rows_updated, changed.rows_unchanged) == (0, 1, 1)
    u1 = clear_users(p, p.store.query("SELECT email FROM users WHERE user_id = 'u1'"))
    assert u1["email"].iat[0] == "a@example.com"
    loads = p.store.query(
        "SELECT rows_inserted, rows_updated, rows_unchanged FROM loads WHERE source = 'crm' "
        "ORDER BY started_at"
    )
    assert loads.values.tolist() == [[1, 2, 0], [0, 0, 3], [0, 1, 1]]


def test_a_full_source_after_a_partial_one_sets_every_column(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    """The full export still owns every column it maps: a NULL there clears the value."""
    p = opener(_with_crm(tmp_path, store, "id,country\nu1,DE\n"))
    p.ingest(["people", "crm"])
    (tmp_path / "users.csv").write_text(
        "id,signup,mail,yrs\nu1,2024-01-01 10:00:00,,34\n", encoding="utf-8"
    )
    (people,) = p.ingest(["people"])
    assert (people.rows_updated, people.keeps_columns[:1]) == (1, ["phone"])
    row = p.store.query("SELECT email, country FROM users WHERE user_id = 'u1'").iloc[0]
    assert pd.isna(row["email"]) and row["country"] == "DE"  # mapped: cleared; unmapped: kept


def _unmapped_users(tmp_path: Path, header: str) -> Path:
    (tmp_path / "users.csv").write_text(
        f"{header}\nu1,a@example.com,30\nu2,b@example.com,41\n", encoding="utf-8"
    )
    (tmp_path / "segmint.yaml").write_text(
        "store: s.duckdb\nsources:\n  people: {type: csv, path: users.csv, table: users}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_a_source_without_columns_takes_our_names_from_the_file(tmp_path: Path) -> None:
    """No `columns:`: the file's columns named like ours are used, in any case (this was a
    SQL syntax error from an empty SELECT list)."""
    with segmint.open_project(_unmapped_users(tmp_path, "User_ID,EMAIL,age")) as p:
        (res,) = p.ingest()
        assert (res.rows_read, res.rows_accepted) == (2, 2)
        got = clear_users(p, p.store.query("SELECT user_id, email, age FROM users ORDER BY 1"))
    assert got.values.tolist() == [["u1", "a@example.com", 30], ["u2", "b@example.com", 41]]


def test_a_source_without_columns_and_none_of_ours_says_how_to_map(tmp_path: Path) -> None:
    from segmint.errors import SourceConfigError

    with (
        segmint.open_project(_unmapped_users(tmp_path, "kunde,mail,alter")) as p,
        pytest.raises(
            SourceConfigError, match=r"none of the file's columns \(kunde, mail, alter\)"
        ),
    ):
        p.ingest()


def test_the_store_names_the_columns_a_load_updates_and_the_allowed_values() -> None:
    """``split_columns`` and ``ALLOWED_VALUES`` are public in segmint.store (ingestion uses
    them): a load mapping some columns updates those of the stored rows, keeps the others."""
    from segmint.store import ALLOWED_VALUES, TABLES, split_columns

    users = TABLES["users"]
    updates, keeps = split_columns(users, ["user_id", "email"])
    assert updates == ["email", "email_index"]  # a blind index follows its column
    assert "email" not in keeps and "user_id" not in keeps and keeps
    assert split_columns(users, None)[1] == []
    assert ALLOWED_VALUES[("orders", "status")] == ("completed", "refunded", "cancelled")
