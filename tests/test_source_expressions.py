"""A source's `filter:` and `columns: {expr: ...}` are checked like custom features.

One row-level expression over the source's own columns, from an allow-list of functions;
the SQL that runs is generated from the checked tree, never the text of segmint.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import clear_users

import segmint
from segmint.errors import SourceError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ORDERS = (
    'oid,uid,t,amt,qty,"Customer ID",Invoice\n'
    "o1,u1,2024-05-01,10.5,2,c1,C123\n"
    "o2,u2,2024-05-02,3,1,,9\n"
)
BASE = {"order_id": "oid", "user_id": "uid", "ts": "t"}


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Any]:
    """Build a project whose `orders` source gets the given columns and source keys; the
    users `u1`, `u2` (with e-mail addresses) are loaded first."""
    (tmp_path / "users.csv").write_text("id,mail\nu1,a@x.io\nu2,b@x.io\n", encoding="utf-8")
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    opened: list[segmint.Project] = []

    def build(columns: dict[str, Any], path: str = "orders.csv", **extra: Any) -> segmint.Project:
        sources = {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {"user_id": "id", "email": "mail"},
            },
            "orders": {
                "type": "jsonl" if path.endswith(".jsonl") else "csv",
                "path": path,
                "table": "orders",
                "columns": columns,
                **extra,
            },
        }
        if extra.get("type") == "query":  # a query names its files itself
            del sources["orders"]["path"]
        config = {"store": "store.duckdb", "timezone": "UTC", "sources": sources}
        (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        opened.append(segmint.open_project(tmp_path))
        opened[-1].ingest(["people"], now=NOW)
        return opened[-1]

    yield build
    for p in opened:
        p.close()


def _users_intact(p: segmint.Project) -> None:
    users = clear_users(p, p.store.query("SELECT user_id, email FROM users ORDER BY 1"))
    assert users.values.tolist() == [
        ["u1", "a@x.io"],
        ["u2", "b@x.io"],
    ]


def test_a_statement_in_a_column_expression_drops_nothing(project: Any) -> None:
    # issue 15: this dropped the users table, outside the load's transaction
    p = project({**BASE, "amount": {"expr": "1) AS a FROM _raw; DROP TABLE users; SELECT (1"}})
    with pytest.raises(SourceError, match=r"source 'orders': a column expression is invalid.*';'"):
        p.ingest(["orders"], now=NOW)
    _users_intact(p)
    assert p.store.count("orders") == 0


def test_a_subquery_cannot_copy_another_table_into_a_column(project: Any) -> None:
    # issue 15: this copied every e-mail address into the orders' currency column
    p = project(
        {
            **BASE,
            "amount": "amt",
            "currency": {"expr": "(SELECT string_agg(email, ',') FROM users)"},
        }
    )
    with pytest.raises(SourceError, match=r"subquer.*column currency"):
        p.ingest(["orders"], now=NOW)
    assert p.store.count("orders") == 0


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("getenv('HOME')", "function getenv is not allowed"),
        ("read_csv('/etc/passwd')", "function read_csv is not allowed"),
        ("current_date - CAST(t AS DATE)", "function current_date is not allowed"),
        ("now()", "function now is not allowed"),
        ("CAST(amt AS DOUBLE) + (SELECT 1)", "subquer"),
        ("max(CAST(amt AS DOUBLE))", "aggregate function max"),
        ("sum(CAST(amt AS DOUBLE)) OVER ()", "window function"),
        ("amt -- comment", "comment"),
        ("users.email", "qualifier users"),
        ("amnt", r"unknown column amnt \(did you mean amt\?"),
        ("date_diff('secret', CAST(t AS DATE), CAST(t AS DATE))", "unit 'secret' of date_diff"),
        ("lpad(oid, 1000000000, '0')", "lpad needs a literal length"),
        ("(" * 300 + "amt" + ")" * 300, "nested 300 deep"),
    ],
)
def test_refused_column_expressions(project: Any, expr: str, message: str) -> None:
    p = project({**BASE, "amount": {"expr": expr}})
    with pytest.raises(
        SourceError,
        match=rf"source 'orders': a column expression is invalid.*{message}.*column amount",
    ):
        p.ingest(["orders"], now=NOW)
    assert p.store.scalar("SELECT count(*) FROM loads WHERE source = 'orders'") == 0


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("uid IN (SELECT user_id FROM users)", "subquer"),
        ("amt > 5 OR (SELECT true)", "subquer"),
        ("1=1) OR (1=1", "does not parse"),
        ("amt IS NOT NULL; DROP TABLE users", "';'"),
        ("nosuch = 1", "unknown column nosuch"),
    ],
)
def test_refused_filters(project: Any, condition: str, message: str) -> None:
    p = project({**BASE, "amount": "amt"}, filter=condition)
    with pytest.raises(SourceError, match=rf"source 'orders': the filter is invalid: .*{message}"):
        p.ingest(["orders"], now=NOW)
    _users_intact(p)


def test_row_level_functions_and_quoted_names_work(project: Any) -> None:
    # the functions sources need to reshape an export, and a column name with a space
    p = project(
        {
            **BASE,
            "amount": {
                "expr": "CASE WHEN Invoice LIKE 'C%' THEN abs(-CAST(amt AS DOUBLE)) * 2 "
                "ELSE CAST(regexp_extract(amt, '(\\d+)', 1) AS DOUBLE) * CAST(qty AS INT) END"
            },
            "currency": {"expr": "upper(replace(split_part('eur-x', '-', 1), 'x', ''))"},
            "channel": {"expr": "CASE WHEN starts_with(oid, 'o') THEN 'online' END"},
        },
        filter="\"Customer ID\" IS NOT NULL OR Invoice = '9'",
    )
    (r,) = p.ingest(["orders"], now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    rows = p.store.query("SELECT order_id, amount, currency, channel FROM orders ORDER BY 1")
    assert rows.values.tolist() == [["o1", 21.0, "EUR", "online"], ["o2", 3.0, "EUR", "online"]]


def test_the_filter_quarantines_rows(project: Any) -> None:
    p = project({**BASE, "amount": "amt"}, filter='"Customer ID" IS NOT NULL')
    (r,) = p.ingest(["orders"], now=NOW)
    assert (r.rows_read, r.rows_accepted, r.rejected_by_rule) == (2, 1, {"filtered": 1})


def test_json_lines_expressions_see_the_keys_and_the_object(project: Any, tmp_path: Path) -> None:
    rows = [
        {"oid": "o1", "uid": "u1", "t": "2024-05-01", "amt": 10, "OID": "x", "sub": {"k": 2}},
        {"oid": "o2", "uid": "u2", "t": "2024-05-02", "amt": 3, "sub": {"k": 3}},
    ]
    (tmp_path / "orders.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    p = project(
        {
            **BASE,
            # a key (as text), and the object itself as `_json` (the form configs used before)
            "amount": {"expr": "CAST(amt AS DOUBLE) + CAST(_json->>'$.sub.k' AS DOUBLE)"},
            # `oid` and `OID` are both keys: the key as written wins
            "currency": {"expr": "CASE WHEN oid = 'o1' THEN 'EUR' ELSE 'USD' END"},
        },
        path="orders.jsonl",
        filter="CAST(json_extract_string(sub, '$.k') AS INT) >= 2",
    )
    (r,) = p.ingest(["orders"], now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    rows = p.store.query("SELECT order_id, amount, currency FROM orders ORDER BY 1")
    assert rows.values.tolist() == [["o1", 12.0, "EUR"], ["o2", 6.0, "USD"]]


def test_a_json_key_differing_only_in_case_must_be_written_exactly(
    project: Any, tmp_path: Path
) -> None:
    rows = [{"oid": "o1", "OID": "x", "uid": "u1", "t": "2024-05-01", "amt": 1}]
    (tmp_path / "orders.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    p = project({**BASE, "amount": "amt", "currency": {"expr": "Oid"}}, path="orders.jsonl")
    with pytest.raises(SourceError, match=r"'Oid' matches 'OID', 'oid'"):
        p.ingest(["orders"], now=NOW)


# -- a `type: query` source: one SELECT over files and its own WITH tables ---------------


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("SELECT 1 AS oid) AS a; DROP TABLE users; SELECT (1", "does not parse"),
        ("SELECT 1 AS oid; DROP TABLE users", "is not exactly one SELECT"),
        ("SELECT user_id AS oid, email AS uid FROM users", "reads users"),
        ("SELECT * FROM read_csv('{here}/orders.csv') JOIN users ON true", "reads users"),
        ("SELECT getenv('HOME') AS oid", r"calls getenv\(\)"),
        ("SELECT * FROM query('SELECT * FROM users')", "reads QUERY"),
        ("SELECT * FROM duckdb_tables()", "reads DUCKDB_TABLES"),
        ("COPY users TO 'x.csv'", "is not exactly one SELECT"),
    ],
    ids=[
        "break-out",
        "two-statements",
        "store-table",
        "store-table-joined",
        "getenv",
        "sql-in-a-string",
        "catalog",
        "copy",
    ],  # fmt: skip
)
def test_a_query_source_reads_only_files(
    project: Any, tmp_path: Path, query: str, match: str
) -> None:
    p = project(BASE, type="query", query=query)
    with pytest.raises(SourceError, match=rf"source 'orders': the query {match}"):
        p.ingest(["orders"], now=NOW)
    _users_intact(p)
    assert p.store.count("orders") == 0


def test_a_query_source_over_files_and_its_own_with_tables_loads(project: Any) -> None:
    query = (
        "WITH o AS (SELECT * FROM read_csv('{here}/orders.csv', all_varchar = true)) "
        "SELECT oid, uid, t, CAST(amt AS DOUBLE) * 2 AS amt FROM o"
    )
    p = project({**BASE, "amount": "amt"}, type="query", query=query)
    (r,) = p.ingest(["orders"], now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    assert sorted(p.store.query("SELECT amount FROM orders")["amount"]) == [6.0, 21.0]
