"""Field issues, retried orphans and a quarantine that describes the data as it is now.

A bad value in an optional column nulls that value and keeps the row (a ``field_issue`` in
the quarantine); only a bad key or required field rejects a row. Rows held for a missing
reference (``unknown_reference``) come in when the referenced table gains the row, without
``--force``. Reloading a source replaces its quarantine rows. Every test runs on a DuckDB
file and on a real PostgreSQL store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.helpers import clear_users, default_sources
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.errors import NotFoundError
from segmint.sources import ingest_source

NOW = datetime(2026, 1, 1, tzinfo=UTC)

USERS_OK = "id,signup,mail,yrs\nu1,2024-01-01,a@example.com,30\n"
# u2: a malformed e-mail, an age of 200 and a sign-up date that is no date
USERS_BAD_FIELDS = USERS_OK + "u2,2024-02-30x,not-an-address,200\n"
USERS_FIXED = USERS_OK + "u2,2024-02-01,b@example.com,40\n"
ORDERS = (
    "oid,uid,t,amt\n"
    "o1,u1,2024-05-01,10\n"
    "o2,u2,2024-05-02,20\n"
    "o3,u2,2024-05-03,30\n"
    "o4,u2,2024-05-04,40\n"
)
LINES = "oid,item,q\no1,i1,1\no2,i1,2\no2,i2,1\no3,i2,1\no4,i1,3\n"


def _write(root: Path, store: str, users: str) -> Path:
    (root / "users.csv").write_text(users, encoding="utf-8")
    (root / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (root / "lines.csv").write_text(LINES, encoding="utf-8")
    sources = default_sources()
    sources["lines"] = {
        "type": "csv",
        "path": "lines.csv",
        "table": "order_items",
        "columns": {"order_id": "oid", "item_id": "item", "quantity": "q"},
    }
    config = {"store": store, "timezone": "UTC", "sources": sources}
    (root / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("pg_url")


Opener = Callable[[Path], segmint.Project]


@pytest.fixture()
def opener() -> Iterator[Opener]:
    opened: list[segmint.Project] = []

    def open_(path: Path) -> segmint.Project:
        opened.append(segmint.open_project(path))
        return opened[-1]

    yield open_
    for p in opened:
        p.close()


def _counts(p: segmint.Project) -> dict[str, int]:
    return {t: p.store.count(t) for t in ("users", "orders", "order_items", "quarantine")}


# -- 1. a bad optional field keeps the customer --------------------------------------------


def test_bad_optional_fields_are_nulled_and_the_customer_and_orders_are_kept(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_BAD_FIELDS))
    people, sales, lines = p.ingest(now=NOW)
    assert (people.rows_read, people.rows_accepted, people.rows_rejected) == (2, 2, 0)
    assert people.field_issues == 3
    assert people.field_issues_by_field == {"age": 1, "created_at": 1, "email": 1}
    assert (sales.rows_accepted, sales.rows_rejected) == (4, 0)  # u2's 3 orders are in
    assert (lines.rows_accepted, lines.rows_rejected) == (5, 0)
    u2 = p.store.query("SELECT created_at, email, age FROM users WHERE user_id = 'u2'")
    assert u2.isna().all(axis=None)  # the three bad values are NULL, the user is there
    q = p.quarantine(table="users")
    got = sorted(zip(q["kind"], q["field"], q["rule"], q["raw_value"], strict=True))
    assert got == [
        ("field_issue", "age", "implausible_age", "200"),
        ("field_issue", "created_at", "unparseable_timestamp", "2024-02-30x"),
        ("field_issue", "email", "malformed_email", "not-an-address"),
    ]
    assert set(q["row"]) == {3}  # the line of u2
    loads = p.store.query("SELECT rows_rejected, field_issues FROM loads WHERE source = 'people'")
    assert loads.iloc[0].tolist() == [0, 3]
    status = p.status()["quarantine"]
    assert [(s["kind"], s["n"]) for s in status if s["source"] == "people"] == [
        ("field_issue", 1),
        ("field_issue", 1),
        ("field_issue", 1),
    ]


def test_a_missing_key_still_rejects_the_row(tmp_path: Path, store: str, opener: Opener) -> None:
    p = opener(_write(tmp_path, store, USERS_OK + ",2024-02-01,c@example.com,200\n"))
    people, sales, _ = p.ingest(now=NOW)
    assert (people.rows_accepted, people.rows_rejected) == (1, 1)
    assert people.rejected_by_rule == {"missing_required": 1}
    assert people.field_issues == 0  # a rejected row's bad fields are among its reasons
    (reason,) = p.quarantine("people")["reason"]
    assert "missing required field user_id" in reason and "age out of range" in reason
    assert sales.rejected_by_rule == {"unknown_reference": 3}


# -- 2. a bad value does not erase a good stored one ----------------------------------------

USERS_TWO = "id,signup,mail,yrs\nu1,2024-01-01,a@example.com,30\nu2,2024-02-01,b@example.com,40\n"


def _reload_users(p: segmint.Project, root: Path, users: str) -> segmint.LoadResult:
    (root / "users.csv").write_text(users, encoding="utf-8")
    (people,) = p.ingest(["people"], now=NOW)
    return people


def _user(p: segmint.Project, user_id: str) -> list[object]:
    row = clear_users(p, p.store.query(f"SELECT email, age FROM users WHERE user_id = '{user_id}'"))
    return [None if pd.isna(v) else v for v in row.iloc[0].tolist()]


def test_a_bad_value_on_a_stored_row_keeps_the_stored_value_and_the_row_is_unchanged(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_TWO))
    p.ingest(now=NOW)
    bad = USERS_TWO.replace("a@example.com", "not-an-email")
    people = _reload_users(p, tmp_path, bad)
    assert people.field_issues == 1 and people.field_issues_kept == 1
    assert (people.rows_inserted, people.rows_updated, people.rows_unchanged) == (0, 0, 2)
    assert _user(p, "u1") == ["a@example.com", 30]  # not NULL: the good address is kept
    q = p.quarantine(table="users")
    assert list(zip(q["kind"], q["field"], q["raw_value"], strict=True)) == [
        ("field_issue", "email", "not-an-email")
    ]


def test_a_bad_value_on_a_changed_row_keeps_the_stored_value_and_updates_the_rest(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_TWO))
    p.ingest(now=NOW)
    bad = USERS_TWO.replace("a@example.com,30", "not-an-email,31")
    people = _reload_users(p, tmp_path, bad)
    assert (people.rows_inserted, people.rows_updated, people.rows_unchanged) == (0, 1, 1)
    assert people.field_issues_kept == 1
    assert _user(p, "u1") == ["a@example.com", 31]
    assert _user(p, "u2") == ["b@example.com", 40]


def test_an_empty_value_on_a_stored_row_still_sets_it_to_null(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_TWO))
    p.ingest(now=NOW)
    people = _reload_users(p, tmp_path, USERS_TWO.replace("a@example.com", ""))
    assert people.field_issues == 0  # empty is no issue: the source says there is none
    assert (people.rows_updated, people.rows_unchanged) == (1, 1)
    assert _user(p, "u1") == [None, 30]


def test_a_bad_value_on_a_new_row_is_null_next_to_a_kept_one(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_TWO))
    p.ingest(now=NOW)
    bad = USERS_TWO.replace("a@example.com", "not-an-email") + "u3,2024-03-01,nope,200\n"
    people = _reload_users(p, tmp_path, bad)
    assert (people.rows_inserted, people.rows_updated, people.rows_unchanged) == (1, 0, 2)
    assert (people.field_issues, people.field_issues_kept) == (3, 1)
    assert _user(p, "u1") == ["a@example.com", 30]
    assert _user(p, "u3") == [None, None]
    assert len(p.quarantine(table="users", kind="field_issue")) == 3


def test_a_bad_price_on_a_stored_order_line_keeps_the_stored_price(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    # order lines are keyed by (order_id, line), the line numbered at load
    _write(tmp_path, store, USERS_OK)
    config = yaml.safe_load((tmp_path / "segmint.yaml").read_text(encoding="utf-8"))
    config["sources"]["lines"]["columns"]["unit_price"] = "price"
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "lines.csv").write_text("oid,item,q,price\no1,i1,1,5\no1,i2,2,7\n", "utf-8")
    p = opener(tmp_path)
    p.ingest(now=NOW)
    (tmp_path / "lines.csv").write_text("oid,item,q,price\no1,i1,1,-5\no1,i2,3,-7\n", "utf-8")
    (lines,) = p.ingest(["lines"], now=NOW)
    assert (lines.field_issues, lines.field_issues_kept) == (2, 2)
    assert (lines.rows_updated, lines.rows_unchanged) == (1, 1)  # line 2's quantity changed
    got = p.store.query("SELECT line, quantity, unit_price FROM order_items ORDER BY line")
    assert got.values.tolist() == [[1, 1, 5.0], [2, 3, 7.0]]


def test_cli_ingest_says_which_bad_values_were_kept_and_which_set_to_null(
    tmp_path: Path, store: str
) -> None:
    _write(tmp_path, store, USERS_TWO)
    assert _cli("ingest", "-p", tmp_path)[0] == 0
    bad = USERS_TWO.replace("a@example.com", "not-an-email") + "u3,2024-03-01,nope,30\n"
    (tmp_path / "users.csv").write_text(bad, encoding="utf-8")
    code, out = _cli("ingest", "-p", tmp_path)
    assert code == 0, out
    assert (
        "people: 2 bad optional values (email 2): 1 value set to NULL on new rows, "
        "1 value kept the stored value on existing rows; see: segmint quarantine users"
    ) in " ".join(out.split())  # the console wraps long lines


# -- 3. orphans are retried --------------------------------------------------------------


def _orphaned(tmp_path: Path, store: str, opener: Opener) -> segmint.Project:
    """u2 is missing: its 3 orders and their 4 lines are held."""
    p = opener(_write(tmp_path, store, USERS_OK))
    _, sales, lines = p.ingest(now=NOW)
    assert sales.rejected_by_rule == {"unknown_reference": 3}
    assert lines.rejected_by_rule == {"unknown_reference": 4}
    return p


def test_orders_and_lines_held_for_a_missing_user_come_in_when_users_change(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = _orphaned(tmp_path, store, opener)
    (tmp_path / "users.csv").write_text(USERS_FIXED, encoding="utf-8")
    people, sales, lines = p.ingest(now=NOW)  # no --force: orders.csv did not change
    assert sales.skipped and lines.skipped
    assert people.rows_inserted == 1
    (orders_retry,) = people.retries
    assert (orders_retry.source, orders_retry.retry_of) == ("sales", "users")
    assert (orders_retry.rows_read, orders_retry.rows_inserted, orders_retry.rows_rejected) == (
        3,
        3,
        0,
    )
    (lines_retry,) = orders_retry.retries  # the lines waited for the orders
    assert (lines_retry.source, lines_retry.retry_of, lines_retry.rows_inserted) == (
        "lines",
        "orders",
        4,
    )
    assert [r.source for r in people.all_results()] == ["people", "sales", "lines"]
    assert _counts(p) == {"users": 2, "orders": 4, "order_items": 5, "quarantine": 0}
    # the lines keep their numbers within each order
    got = p.store.query("SELECT order_id, line, item_id FROM order_items ORDER BY 1, 2")
    assert got.values.tolist() == [
        ["o1", 1, "i1"],
        ["o2", 1, "i1"],
        ["o2", 2, "i2"],
        ["o3", 1, "i2"],
        ["o4", 1, "i1"],
    ]
    # idempotent: a rerun changes nothing, a forced reload of users inserts nothing
    before = _counts(p)
    assert all(r.skipped for r in p.ingest(now=NOW))
    (forced,) = p.ingest(["people"], force=True, now=NOW)
    assert (forced.rows_inserted, forced.retries) == (0, [])
    assert _counts(p) == before
    retries = p.store.query("SELECT source, retry_of FROM loads WHERE retry_of IS NOT NULL")
    assert sorted(retries.values.tolist()) == [["lines", "orders"], ["sales", "users"]]


def test_rows_still_missing_their_user_stay_held(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = _orphaned(tmp_path, store, opener)
    (tmp_path / "users.csv").write_text(USERS_OK + "u3,2024-02-01,c@example.com,40\n")
    (people,) = p.ingest(["people"], now=NOW)
    (retry,) = people.retries  # u3 is new, but the held orders are u2's
    assert (retry.rows_read, retry.rows_accepted, retry.rejected_by_rule) == (
        3,
        0,
        {"unknown_reference": 3},
    )
    assert retry.retries == []  # no order came in: the lines are not retried
    held = p.quarantine(reason="unknown_reference")
    assert sorted(held["source"].tolist()) == ["lines"] * 4 + ["sales"] * 3  # once each


def test_a_crash_during_the_retries_leaves_the_store_as_it_was(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = _orphaned(tmp_path, store, opener)
    before = _counts(p)
    n_loads = p.store.count("loads")
    (tmp_path / "users.csv").write_text(USERS_FIXED, encoding="utf-8")

    def crash() -> None:  # after the users, the orders and the lines are written
        assert p.store.count("order_items") == 5
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        ingest_source(p.store, p.config, "people", now=NOW, _before_commit=crash)
    assert _counts(p) == before and p.store.count("loads") == n_loads
    people, *_ = p.ingest(now=NOW)  # the users file is still new: all of it comes in now
    assert [r.rows_inserted for r in people.all_results()] == [1, 3, 4]
    assert _counts(p) == {"users": 2, "orders": 4, "order_items": 5, "quarantine": 0}


# -- 4. the quarantine as it is now --------------------------------------------------------


def test_three_reloads_of_a_file_with_bad_rows_count_them_once(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = _orphaned(tmp_path, store, opener)
    (tmp_path / "orders.csv").write_text(ORDERS + "o5,u1,2024-05-05,-1\n", encoding="utf-8")
    for _ in range(3):
        p.ingest(["sales"], force=True, now=NOW)
    summary = p.quarantine_summary(table="orders")
    assert sorted(zip(summary["rule"], summary["n"], strict=True)) == [
        ("negative_amount", 1),
        ("unknown_reference", 3),
    ]
    # the history stays countable in the loads table
    rejected = p.store.query("SELECT rows_rejected FROM loads WHERE source = 'sales'")
    assert rejected["rows_rejected"].tolist() == [3, 4, 4, 4]


def test_quarantine_filters_by_table_reason_and_kind(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = opener(_write(tmp_path, store, USERS_BAD_FIELDS))
    p.ingest(now=NOW)
    assert len(p.quarantine(table="users")) == 3
    assert len(p.quarantine(table="orders")) == 0
    assert p.quarantine(table="users", reason="malformed_email")["field"].tolist() == ["email"]
    assert len(p.quarantine(kind="rejected")) == 0
    with pytest.raises(NotFoundError, match="no table 'order'"):
        p.quarantine(table="order")


# -- the command line ----------------------------------------------------------------------

runner = CliRunner()


def _cli(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_cli_ingest_says_which_held_rows_came_in(tmp_path: Path, store: str) -> None:
    _write(tmp_path, store, USERS_OK)
    code, out = _cli("ingest", "-p", tmp_path)
    assert code == 0, out
    (tmp_path / "users.csv").write_text(USERS_FIXED, encoding="utf-8")
    code, out = _cli("ingest", "-p", tmp_path)
    assert code == 0, out
    assert "sales: 3 rows held for a missing user came in after users changed" in out
    assert "lines: 4 rows held for a missing order came in after orders changed" in out
    code, out = _cli("ingest", "-p", tmp_path, "--json")
    assert code == 0 and all(r["skipped"] and r["retries"] == [] for r in json.loads(out))


def test_cli_quarantine_shows_counts_examples_and_why_it_is_empty(
    tmp_path: Path, store: str
) -> None:
    users = USERS_OK + 'u2,2024-02-01,"x\x1b[31m\u202eevil\nline",20\n'  # a hostile e-mail
    _write(tmp_path, store, users)
    assert _cli("ingest", "-p", tmp_path)[0] == 0
    code, out = _cli("quarantine", "-p", tmp_path)
    assert code == 0, out
    assert "unknown_reference" not in out  # u2 is in: its orders are too
    assert "malformed_email" in out and "field issue" in out
    assert "x\\x1b[99x\\u202exxxx\\nxxxx" in out  # its shape (personal), escaped
    assert "\x1b" not in out and "\u202e" not in out and "evil" not in out
    code, out = _cli("quarantine", "--reveal", "-p", tmp_path)  # in clear, audited
    assert "\\x1b[31m\\u202eevil\\nline" in out  # escaped, not interpreted
    assert "\x1b" not in out and "\u202e" not in out
    code, out = _cli("quarantine", "orders", "-p", tmp_path)
    assert (code, out.strip()) == (0, "no rejected rows or field issues in orders")
    code, out = _cli("quarantine", "users", "--reason", "bad_type", "-p", tmp_path)
    assert out.strip() == "no rejected rows or field issues with reason bad_type in users"
    code, out = _cli("quarantine", "users", "-n", "1", "-p", tmp_path, "--json", "--reveal")
    got = json.loads(out)
    assert got["summary"] == [
        {
            "target_table": "users",
            "source": "people",
            "kind": "field_issue",
            "rule": "malformed_email",
            "n": 1,
        }
    ]
    (example,) = got["examples"]
    assert (example["field"], example["raw_value"]) == ("email", "x\x1b[31m\u202eevil\nline")
    code, out = _cli("quarantine", "nope", "-p", tmp_path)
    assert code != 0 and "no table 'nope'" in out


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_held_rows_of_typed_and_json_sources_come_in_with_their_values(
    tmp_path: Path, store: str, opener: Opener, fmt: str
) -> None:
    """A retry reads the held rows back as the source's reader typed them (Parquet: a
    timestamp and a double; JSON lines: the object)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _write(tmp_path, store, USERS_OK)
    ts = [datetime(2024, 5, 1, 10, 30), datetime(2024, 5, 2, 11, 45)]
    if fmt == "parquet":
        table = pa.table({"oid": ["o1", "o2"], "uid": ["u1", "u2"], "t": ts, "amt": [10.25, 20.5]})
        pq.write_table(table, tmp_path / "orders.parquet")
    else:
        lines = [
            {"oid": "o1", "uid": "u1", "t": "2024-05-01 10:30:00", "amt": 10.25},
            {"oid": "o2", "uid": "u2", "t": "2024-05-02 11:45:00", "amt": 20.5},
        ]
        (tmp_path / "orders.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    config = yaml.safe_load((tmp_path / "segmint.yaml").read_text())
    config["sources"]["sales"].update(type=fmt, path=f"orders.{fmt}")
    del config["sources"]["lines"]
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    p = opener(tmp_path)
    _, sales = p.ingest(now=NOW)
    assert sales.rejected_by_rule == {"unknown_reference": 1}
    (tmp_path / "users.csv").write_text(USERS_FIXED, encoding="utf-8")
    people, sales = p.ingest(now=NOW)
    assert sales.skipped and [r.rows_inserted for r in people.all_results()] == [1, 1]
    got = p.store.query("SELECT order_id, ts, amount FROM orders ORDER BY 1")
    assert got["amount"].tolist() == [10.25, 20.5]
    assert [t.replace(tzinfo=None) for t in got["ts"]] == ts


def test_a_retry_that_cannot_read_the_held_rows_keeps_them_and_the_users_load(
    tmp_path: Path, store: str, opener: Opener
) -> None:
    p = _orphaned(tmp_path, store, opener)
    p.close()
    config = yaml.safe_load((tmp_path / "segmint.yaml").read_text())
    config["sources"]["sales"]["columns"]["amount"] = "total"  # no such column in the rows
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "users.csv").write_text(USERS_FIXED, encoding="utf-8")
    p = opener(tmp_path)
    (people,) = p.ingest(["people"], now=NOW)
    assert people.rows_inserted == 1  # the users load stands
    (retry,) = people.retries
    assert retry.retry_error is not None and "total" in retry.retry_error
    assert len(p.quarantine("sales", reason="unknown_reference")) == 3  # still held
    assert p.store.count("orders") == 1
