"""Bad-input corpus: every malformed file in tests/corpus/ maps to one expected outcome.

An outcome is either the exact quarantine breakdown of the load (rule code -> rows, with
read = accepted + rejected and nothing lost) or a specific SegmintError with its message.
tests/corpus/README.md lists every file, what is wrong with it and what should happen.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.helpers import clear_users

import segmint
from segmint.errors import (
    ConfigError,
    MissingColumnError,
    SegmintError,
    SourceConfigError,
    SourceError,
    StoreError,
)
from segmint.sources import open_quarantine
from segmint.store import open_vault

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

ORDER_COLS = {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt"}
ITEM_COLS = {"order_id": "oid", "item_id": "item", "quantity": "q"}
EVENT_COLS = {"anonymous_id": "anon", "event": "ev", "ts": "t", "properties": "props"}


@dataclass(frozen=True)
class Case:
    id: str
    file: str | Callable[[Path], Path]  # a corpus file name, or a builder writing into tmp
    type: str = "csv"
    table: str = "orders"
    columns: dict[str, Any] = field(default_factory=lambda: dict(ORDER_COLS))
    extra: dict[str, Any] = field(default_factory=dict)  # more source keys (values, ...)
    # expected outcome: (read, accepted, {rule: rows}) ...
    counts: tuple[int, int, dict[str, int]] | None = None
    # field issues of the accepted rows: {rule: values set to NULL}
    field_issues: dict[str, int] = field(default_factory=dict)
    # ... or an error (raised by the load, or by open_project for a ConfigError)
    error: type[SegmintError] | None = None
    match: str | None = None
    check: Callable[[segmint.Project], None] | None = None
    # the error message is one line (False only for the column-expression cases, whose
    # message carries DuckDB's binder text: that check is not the reader's)
    one_line: bool = True


def _parquet(rows: dict[str, Any], *, truncate: bool = False) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = tmp / "data.parquet"
        pq.write_table(pa.table(rows), out)
        if truncate:
            data = out.read_bytes()
            out.write_bytes(data[: len(data) // 2])
        return out

    return build


def _amounts(expected: list[float]) -> Callable[[segmint.Project], None]:
    def check(p: segmint.Project) -> None:
        got = p.store.query("SELECT amount FROM orders ORDER BY order_id")["amount"].tolist()
        assert got == pytest.approx(expected)

    return check


def _order_ids(expected: list[str]) -> Callable[[segmint.Project], None]:
    def check(p: segmint.Project) -> None:
        got = p.store.query("SELECT order_id FROM orders ORDER BY 1")["order_id"].tolist()
        assert got == expected

    return check


def _quarantined(
    rows: list[int], reason: str, raw: str | None = None
) -> Callable[[segmint.Project], None]:
    """The case's quarantine holds exactly these row numbers, each reason matching
    ``reason`` and short (no more than ~200 characters of row content), raw matching
    ``raw``."""

    def check(p: segmint.Project) -> None:
        q = p.store.query(
            'SELECT "row", reason, raw::VARCHAR AS raw FROM quarantine '
            "WHERE source = 'case' ORDER BY 1"
        )
        assert all(r.startswith('"enc1:') for r in q["raw"]), "raw rows are sealed at rest"
        q = open_quarantine(open_vault(p.store, p.config), q)  # what a reader sees
        assert q["row"].tolist() == rows
        for text in q["reason"]:
            assert re.search(reason, text), text
            assert len(text) <= 300, text
        if raw is not None:
            for text in q["raw"]:
                assert re.search(raw, text), text[:300]

    return check


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        out = tmp / name
        out.write_bytes(data)
        return out

    return build


def _folder(name: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        (tmp / name).mkdir()
        return tmp / name

    return build


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.csv")
    return tmp / "pipe.csv"


def _dev_zero(tmp: Path) -> Path:
    return Path("/dev/zero")


T = "2024-05-01 10:00:00"
BIG = "x" * 3_100_000  # a value over DuckDB's 2 MB line limit
LONG_CSV = f'oid,uid,t,amt\no1,u1,{T},1.50\no2,u2,{T},"{BIG}"\no3,u1,{T},3.00\n'.encode()
LONG_CSV_UNQUOTED = f"oid,uid,t,amt\no1,u1,{T},1.50\no2,u2,{T},{BIG}\no3,u1,{T},3.00\n".encode()
LONG_JSONL = (
    f'{{"oid":"o1","uid":"u1","t":"{T}","amt":1.5}}\n'
    f'{{"oid":"o2","uid":"u2","t":"{T}","amt":2,"note":"{BIG}"}}\n'
    f'{{"oid":"o3","uid":"u1","t":"{T}","amt":3}}\n'
).encode()
# gzip cut after its first 64 KiB of content: the header reads, the rest does not
LATE_CUT_GZIP = gzip.compress(
    b"oid,uid,t,amt\n" + b"".join(b"o%d,u1,%s,%d.25\n" % (i, T.encode(), i) for i in range(20000)),
    mtime=0,
)
LATE_CUT_GZIP = LATE_CUT_GZIP[: len(LATE_CUT_GZIP) * 7 // 10]
OVER_LIMIT = r"line of 3\.1 MB \(\d+ bytes\) is over the 2 MB limit"
TRUNCATED_RAW = r"…\[truncated: only the first 10000 characters are kept\]\"$"
USER_COLS = {"user_id": "id", "email": "mail"}


def _cities(expected: list[str]) -> Callable[[segmint.Project], None]:
    def check(p: segmint.Project) -> None:
        got = p.store.query("SELECT city FROM users WHERE city IS NOT NULL ORDER BY user_id")
        assert got["city"].tolist() == expected

    return check


def _user_ids(expected: list[str]) -> Callable[[segmint.Project], None]:
    def check(p: segmint.Project) -> None:
        got = p.store.query("SELECT user_id FROM users ORDER BY 1")["user_id"].tolist()
        assert got == expected

    return check


TS = 1714557600000000  # 2024-05-01 10:00 UTC, in microseconds

CONSENT_COLS = {"user_id": "uid", "channel": "ch", "purpose": "why", "ts": "t", "granted": "ok"}


def _consents(
    in_force: list[tuple[str, str, str, bool]], reasons: tuple[str, ...] | list[str] = ()
) -> Callable[[segmint.Project], None]:
    """The consent in force per (user, channel, purpose), and words of the quarantine."""

    def check(p: segmint.Project) -> None:
        from segmint.store import latest_consent_sql

        got = p.store.query(f"{latest_consent_sql()} ORDER BY 1, 2, 3")
        granted = got["granted"].map(bool)
        rows = list(zip(got["user_id"], got["channel"], got["purpose"], granted, strict=True))
        assert rows == in_force
        text = " | ".join(p.quarantine("case")["reason"])
        for words in reasons:
            assert words in text

    return check


def _users_kept(p: segmint.Project) -> None:
    """A file mapping only country changes country; the users keep their e-mail."""
    got = clear_users(p, p.store.query("SELECT user_id, email, country FROM users ORDER BY 1"))
    assert got.values.tolist() == [["u1", "a@example.com", "DE"], ["u2", "b@example.com", "FR"]]


CASES = [
    # --- CSV structure --------------------------------------------------------------
    Case("ragged_rows", "ragged_rows.csv", counts=(4, 2, {"unparseable_row": 2})),
    Case(
        "unterminated_quote",
        "unterminated_quote.csv",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_amounts([10.5, 3.25]),  # the properly quoted amounts still parse
    ),
    Case(
        "wrong_delimiter",
        "wrong_delimiter.csv",
        error=MissingColumnError,
        match=r"Expected \(from the column map\): oid, uid, t, amt\. Found: oid;uid;t;amt\.",
    ),
    Case("header_only", "header_only.csv", counts=(0, 0, {})),
    Case("empty_file", "empty.csv", error=SourceError, match=r"(?i)empty"),
    Case(
        "bom_crlf",
        "bom_crlf.csv",
        counts=(2, 2, {}),
        check=_order_ids(["o1", "o2"]),
    ),
    Case("blank_lines_no_final_newline", "blank_lines_no_final_newline.csv", counts=(2, 2, {})),
    Case("latin1_row", "latin1_row.csv", counts=(2, 1, {"unparseable_row": 1})),
    Case(
        "latin1_header",
        "latin1_header.csv",
        error=SourceConfigError,  # exit 2: the fix is `encoding:` in segmint.yaml
        match=r"not valid UTF-8: set `encoding:` on this source",
    ),
    # --- issue 16: options of real exports --------------------------------------------
    Case(
        "decimal_comma",
        "decimal_comma.csv",
        extra={"delimiter": ";", "decimal": ",", "thousands": "."},
        counts=(3, 2, {"bad_type": 1}),  # 1,234.56 is not a number of this file
        check=_amounts([1234.56, 7.10]),
    ),
    Case(
        "latin1_declared",
        "latin1_declared.csv",
        table="users",
        columns={"user_id": "id", "email": "mail", "city": "city"},
        extra={"encoding": "latin-1"},
        counts=(2, 2, {}),
        check=_cities(["München", "Köln"]),
    ),
    Case(
        "dd_mm_dates",
        "dd_mm_dates.csv",
        extra={"formats": {"ts": "dd/mm/yyyy"}},
        counts=(4, 2, {"unparseable_timestamp": 2}),
        check=_quarantined([4, 5], r"^unparseable timestamp in ts: (2025-06-01|13/31/2025)$"),
    ),
    Case(
        "headerless",
        "headerless.csv",
        columns={"order_id": "column0", "user_id": "column1", "ts": "column2", "amount": "column3"},
        extra={"header": False},
        counts=(2, 2, {}),
        check=_amounts([1.50, 2.50]),
    ),
    # --- values ---------------------------------------------------------------------
    Case(
        "bad_dates",
        "bad_dates.csv",
        counts=(8, 2, {"unparseable_timestamp": 5, "implausible_timestamp": 1}),
    ),
    Case("future_dates", "future_dates.csv", counts=(4, 2, {"future_timestamp": 2})),
    Case(
        "bad_amounts",
        "bad_amounts.csv",
        counts=(
            7,
            2,
            {"negative_amount": 1, "absurd_amount": 1, "bad_type": 2, "unparseable_row": 1},
        ),
        check=_amounts([1.0, 12.5]),
    ),
    Case(
        "bad_quantities",
        "bad_quantities.csv",
        table="order_items",
        columns=dict(ITEM_COLS),
        counts=(7, 2, {"bad_quantity": 3, "bad_type": 2}),  # 1.5 is not a quantity
    ),
    Case(
        "duplicate_keys",
        "duplicate_keys.csv",
        counts=(6, 3, {"exact_duplicate": 2, "duplicate_key": 1}),
    ),
    Case("unknown_users", "unknown_users.csv", counts=(4, 2, {"unknown_reference": 2})),
    Case("missing_user_id", "missing_user_id.csv", counts=(3, 1, {"missing_required": 2})),
    Case(
        "unknown_status",
        "unknown_status.csv",
        columns={**ORDER_COLS, "status": "st"},
        counts=(5, 5, {}),  # status is optional: the order is kept, its status NULL
        field_issues={"unknown_value": 2},
    ),
    Case(
        "mapped_status_any_case",
        "status_case.csv",
        columns={**ORDER_COLS, "status": "st"},
        extra={"values": {"status": {"paid": "completed"}}},
        counts=(3, 3, {}),  # PAID / Paid are the mapped value 'paid' in another case
    ),
    Case(
        "properties_not_json",
        "properties_not_json.csv",
        table="events",
        columns=dict(EVENT_COLS),
        counts=(5, 5, {}),
        field_issues={"malformed_json": 2},
    ),
    # --- JSON lines -----------------------------------------------------------------
    Case(
        "malformed_json_lines",
        "malformed_lines.jsonl",
        type="jsonl",
        counts=(7, 2, {"unparseable_row": 5}),  # the blank line is not a row
    ),
    Case(
        "jsonl_wrong_types",
        "wrong_types.jsonl",
        type="jsonl",
        counts=(5, 1, {"unparseable_timestamp": 1, "bad_type": 1, "missing_required": 2}),
    ),
    Case("jsonl_gzip", "orders.jsonl.gz", type="jsonl", counts=(2, 2, {})),
    # --- Parquet (written at test time) ---------------------------------------------
    Case(
        "parquet_bad_values",
        _parquet(
            {
                "oid": ["o1", "o2", "o3", "o4"],
                "uid": ["u1", "u1", None, "u2"],
                "t": [
                    datetime(2024, 5, 1, 10),
                    datetime(2024, 5, 1, 10),
                    datetime(2024, 5, 1, 10),
                    datetime(2030, 1, 1),
                ],
                "amt": [1.0, -2.0, 3.0, 4.0],
            }
        ),
        type="parquet",
        counts=(
            4,
            1,
            {"negative_amount": 1, "missing_required": 1, "future_timestamp": 1},
        ),
    ),
    Case(
        "parquet_truncated",
        _parquet({"oid": ["o1"], "uid": ["u1"], "t": ["2024-05-01"], "amt": [1.0]}, truncate=True),
        type="parquet",
        error=SourceError,
        match=r"source 'case': cannot read it",
    ),
    Case(
        "parquet_missing_column",
        _parquet({"oid": ["o1"], "uid": ["u1"], "t": ["2024-05-01"], "amount": [1.0]}),
        type="parquet",
        error=MissingColumnError,
        match=r"'amt' -> did you mean 'amount'\?",
    ),
    # --- line endings (issue 15): never 0 rows for a readable file ---------------------
    Case(
        "crlf_in_quoted_field",
        "crlf_in_quoted_field.csv",
        counts=(3, 3, {}),
        check=_order_ids(["o1", "o2", "o3"]),
    ),
    Case("cr_line_endings", "cr_line_endings.csv", counts=(3, 3, {})),
    Case(
        "mixed_line_endings",
        "mixed_line_endings.csv",
        counts=(4, 4, {}),
        check=_amounts([1.5, 2.0, 3.0, 4.0]),
    ),
    Case(
        "bare_cr_unquoted",
        "bare_cr_unquoted.csv",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([3], r"carriage return \(CR\) outside quotes", r"half\?line"),
    ),
    Case(
        "bare_cr_unquoted_crlf",
        "bare_cr_unquoted_crlf.csv",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([2], r"carriage return \(CR\) outside quotes"),
    ),
    Case(
        "bare_lf_in_cr_file",
        "bare_lf_in_cr_file.csv",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([4], r"line feed \(LF\) outside quotes"),
    ),
    Case("header_quoted_line_break", "header_quoted_line_break.csv", counts=(2, 2, {})),
    Case(
        "bom_mixed_no_header",
        "bom_mixed_no_header.csv",
        table="users",
        columns={"user_id": "column0", "email": "column1"},  # as DuckDB names them
        extra={"header": False},
        counts=(3, 3, {}),
        check=_user_ids(["u1", "u2", "u3"]),  # no BOM in the first id
    ),
    Case("header_blank_lines", "header_blank_lines.csv", counts=(0, 0, {})),
    Case(
        "one_column_blank_lines",
        "one_column_blank_lines.csv",
        table="items",
        columns={"item_id": "item"},
        # the blank lines are not rows; a quoted empty value is one
        counts=(4, 2, {"exact_duplicate": 1, "missing_required": 1}),
        check=_quarantined([7, 8], r"exact duplicate of row 2|missing required field item_id"),
    ),
    Case(
        "first_line_empty",
        "first_line_empty.csv",
        error=SourceError,
        match=r"first line of .* is empty",
    ),
    Case(
        "unreadable_line_endings",
        "unreadable_line_endings.csv",
        table="users",
        columns=dict(USER_COLS),
        error=SourceError,
        match=r"cannot tell the records of .* apart: by its line endings it holds 3 records",
    ),
    Case("jsonl_mixed_line_endings", "mixed_line_endings.jsonl", type="jsonl", counts=(3, 3, {})),
    Case(
        "jsonl_bare_cr",
        "bare_cr.jsonl",
        type="jsonl",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([2], r"carriage return"),
    ),
    Case(
        "jsonl_control_char",
        "control_char.jsonl",
        type="jsonl",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_amounts([1.0, 3.0]),  # o2 is not cut at the 0x01 and loaded
    ),
    # --- lines over the reader's limit (built in the test: 3 MB) -------------------------
    Case(
        "csv_line_over_limit",
        _write("long.csv", LONG_CSV),
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([3], OVER_LIMIT, TRUNCATED_RAW),
    ),
    Case(
        "csv_unquoted_line_over_limit",
        _write("long.csv", LONG_CSV_UNQUOTED),
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([3], OVER_LIMIT, TRUNCATED_RAW),
    ),
    Case(
        "jsonl_line_over_limit",
        _write("long.jsonl", LONG_JSONL),
        type="jsonl",
        counts=(3, 2, {"unparseable_row": 1}),
        check=_quarantined([2], OVER_LIMIT, TRUNCATED_RAW),
    ),
    # --- compression ----------------------------------------------------------------
    Case("csv_zstd", "orders.csv.zst", counts=(2, 2, {})),
    Case(
        "csv_not_gzip", "not_gzip.csv.gz", error=SourceError, match=r"ends in \.gz but is not gzip"
    ),
    Case(
        "jsonl_not_gzip",
        "not_gzip.jsonl.gz",
        type="jsonl",
        error=SourceError,
        match=r"ends in \.gz but is not gzip",
    ),
    Case(
        "csv_not_zstd",
        "not_zstd.csv.zst",
        error=SourceError,
        match=r"ends in \.zst but is not zstd",
    ),
    Case("csv_bzip2", "orders.csv.bz2", error=SourceError, match=r"ends in \.bz2 \(bzip2\)"),
    Case(
        "gzip_cut_short", "truncated.csv.gz", error=SourceError, match=r"damaged or was cut short"
    ),
    Case(
        "gzip_cut_short_after_header",
        _write("late.csv.gz", LATE_CUT_GZIP),
        error=SourceError,
        match=r"cannot read it: IO Error: Unexpected end of GZIP stream",
    ),
    # --- not a regular file ---------------------------------------------------------
    Case(
        "csv_path_is_folder",
        _folder("orders.csv"),
        error=SourceError,
        match=r"is a folder, not a file",
    ),
    Case(
        "jsonl_path_is_folder",
        _folder("orders.jsonl"),
        type="jsonl",
        error=SourceError,
        match=r"is a folder, not a file",
    ),
    Case(
        "parquet_path_is_folder",
        _folder("orders.parquet"),
        type="parquet",
        error=SourceError,
        match=r"is a folder, not a file",
    ),
    Case("csv_dev_zero", _dev_zero, error=SourceError, match=r"/dev/zero is a character device"),
    Case(
        "jsonl_dev_zero",
        _dev_zero,
        type="jsonl",
        error=SourceError,
        match=r"/dev/zero is a character device, not a regular file; segmint reads only regular",
    ),
    Case(
        "parquet_dev_zero",
        _dev_zero,
        type="parquet",
        error=SourceError,
        match=r"/dev/zero is a character device",
    ),
    Case("csv_named_pipe", _fifo, error=SourceError, match=r"is a named pipe, not a regular file"),
    # --- configuration errors found when segmint.yaml is loaded ------------------------
    Case(
        "delimiter_two_characters",
        "orders_base.csv",
        extra={"delimiter": ";;"},
        error=ConfigError,
        match=r"sources\.case: .*delimiter ';;' cannot separate fields: it must be one character",
    ),
    Case(
        "delimiter_empty",
        "orders_base.csv",
        extra={"delimiter": ""},
        error=ConfigError,
        match=r"sources\.case: .*delimiter '' cannot separate fields",
    ),
    Case("delimiter_tab", "orders_tab.tsv", extra={"delimiter": "\t"}, counts=(2, 2, {})),
    # --- configuration errors found at load time ------------------------------------
    Case(
        "file_does_not_exist",
        "does_not_exist.csv",
        error=SourceError,
        match=r"does_not_exist\.csv does not exist",
    ),
    Case(
        "bad_column_expression",
        "orders_base.csv",
        columns={**ORDER_COLS, "amount": {"expr": "amt *** 2"}},
        error=SourceError,
        match=r"source 'case': a column expression is invalid",
        one_line=False,
    ),
    Case(
        "expression_referencing_unknown_column",
        "orders_base.csv",
        columns={**ORDER_COLS, "amount": {"expr": "nosuch + 1"}},
        error=SourceError,
        match=r"a column expression is invalid.*nosuch",
        one_line=False,
    ),
    # --- issue 15: what a load does to stored rows; consent as a vocabulary -----------
    Case(
        "consent_vocabulary",
        "consent_vocabulary.csv",
        table="consents",
        columns=dict(CONSENT_COLS),
        counts=(4, 2, {"unknown_value": 2}),
        check=_consents(
            [("u1", "email", "marketing", False), ("u2", "sms", "newsletter", True)],
            reasons=[
                "channel 'e-mail' is not one of",
                "did you mean 'email'?",
                "did you mean 'marketing'?",
            ],
        ),
    ),
    Case(
        "consent_same_instant",
        "consent_same_instant.csv",
        table="consents",
        columns=dict(CONSENT_COLS),
        counts=(5, 4, {"exact_duplicate": 1}),
        check=_consents([("u1", "email", "marketing", False), ("u2", "email", "marketing", False)]),
    ),
    Case(
        "crm_country_only",
        "crm_country_only.csv",
        table="users",
        columns={"user_id": "id", "country": "country"},
        counts=(2, 2, {}),
        check=_users_kept,
    ),
    Case(  # issue 15: dropped the users table, outside the load's transaction
        "expression_with_statements",
        "orders_base.csv",
        columns={
            **ORDER_COLS,
            "amount": {"expr": "1) AS a FROM _raw; DROP TABLE users; SELECT (1"},
        },
        error=SourceError,
        match=r"a column expression is invalid: ';'",
    ),
    Case(  # issue 15: copied every e-mail address into another column
        "expression_reading_another_table",
        "orders_base.csv",
        columns={**ORDER_COLS, "currency": {"expr": "(SELECT string_agg(email, ',') FROM users)"}},
        error=SourceError,
        match=r"a column expression is invalid: a subquery",
    ),
    Case(
        "filter_reading_another_table",
        "orders_base.csv",
        extra={"filter": "uid IN (SELECT user_id FROM users)"},
        error=SourceError,
        match=r"the filter is invalid: a subquery",
    ),
]


@pytest.fixture()
def projects() -> Iterator[list[segmint.Project]]:
    opened: list[segmint.Project] = []
    yield opened
    for p in opened:
        p.close()


def _project(tmp: Path, case: Case, opened: list[segmint.Project]) -> segmint.Project:
    path = case.file(tmp) if callable(case.file) else CORPUS / case.file
    sources: dict[str, Any] = {
        "people": {
            "type": "csv",
            "path": str(CORPUS / "users.csv"),
            "table": "users",
            "columns": {"user_id": "id", "email": "mail"},
        }
    }
    if case.table == "order_items":
        sources["base_orders"] = {
            "type": "csv",
            "path": str(CORPUS / "orders_base.csv"),
            "table": "orders",
            "columns": dict(ORDER_COLS),
        }
    sources["case"] = {
        "type": case.type,
        "path": str(path),
        "table": case.table,
        "columns": case.columns,
        **case.extra,
    }
    config = {"store": "store.duckdb", "timezone": "UTC", "sources": sources}
    (tmp / "segmint.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    opened.append(segmint.open_project(tmp))
    return opened[-1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_file(case: Case, tmp_path: Path, projects: list[segmint.Project]) -> None:
    # a ConfigError of segmint.yaml itself is raised when the project opens; one of a
    # source (a SourceConfigError: a wrong path, a column the file lacks) at its load
    if (
        case.error is not None
        and issubclass(case.error, ConfigError)
        and not issubclass(case.error, SourceError)
    ):
        with pytest.raises(case.error, match=case.match):
            _project(tmp_path, case, projects)
        return
    p = _project(tmp_path, case, projects)
    p.ingest(["people", *(["base_orders"] if case.table == "order_items" else [])], now=NOW)
    if case.error is not None:
        with pytest.raises(case.error, match=case.match) as exc:
            p.ingest(["case"], now=NOW)
        # one line, and no more than a few hundred characters (no row dumped into it)
        if case.one_line:
            assert "\n" not in str(exc.value), str(exc.value)[:1000]
            assert len(str(exc.value)) < 600, str(exc.value)[:1000]
        assert p.store.scalar("SELECT count(*) FROM loads WHERE source = 'case'") == 0
        assert p.store.count("users") == 2  # nothing else touched
        return

    assert case.counts is not None
    read, accepted, by_rule = case.counts
    (r,) = p.ingest(["case"], now=NOW)
    assert r.rows_read == r.rows_accepted + r.rows_rejected
    assert (r.rows_read, r.rows_accepted, dict(r.rejected_by_rule)) == (read, accepted, by_rule)
    # nothing lost: every row read is in the table or in quarantine for this load
    q = p.store.query(
        "SELECT kind, rule, count(*) AS n FROM quarantine WHERE load_id = ? GROUP BY kind, rule",
        [r.load_id],
    )
    rejected, fields = q[q["kind"] == "rejected"], q[q["kind"] == "field_issue"]
    assert dict(zip(rejected["rule"], rejected["n"], strict=True)) == by_rule
    assert dict(zip(fields["rule"], fields["n"], strict=True)) == case.field_issues
    assert r.field_issues == sum(case.field_issues.values())
    assert p.store.count(case.table) == accepted
    load = p.store.query(
        "SELECT rows_read, rows_accepted, rows_rejected FROM loads WHERE load_id = ?", [r.load_id]
    )
    assert load.iloc[0].tolist() == [read, accepted, read - accepted]
    if case.check is not None:
        case.check(p)


def test_corpus_readme_lists_every_file() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    files = sorted(
        f.name for f in CORPUS.iterdir() if f.name not in ("README.md", ".gitattributes")
    )
    assert len(files) >= 18
    missing = [f for f in files if f"`{f}`" not in readme]
    assert not missing, f"tests/corpus/README.md does not describe {missing}"


def test_wrong_delimiter_error_hints_at_the_delimiter(
    tmp_path: Path, projects: list[segmint.Project]
) -> None:
    """A ';' file read with ',' has one column named 'oid;uid;t;amt': say so, don't just list."""
    case = next(c for c in CASES if c.id == "wrong_delimiter")
    p = _project(tmp_path, case, projects)
    with pytest.raises(MissingColumnError) as exc:
        p.ingest(["case"], now=NOW)
    msg = str(exc.value)
    assert "Found: oid;uid;t;amt" in msg
    assert "delimiter" in msg and "';'" in msg


def test_fractional_age_is_not_rounded(tmp_path: Path, projects: list[segmint.Project]) -> None:
    """INTEGER columns must not silently store 35 for 34.6: a bad_type field issue (age is
    optional: the user is kept, the age NULL)."""
    (tmp_path / "users.csv").write_text("id,yrs\nu1,34.6\nu2,40.0\nu3,41\n", encoding="utf-8")
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "age": "yrs"},
        }
    }
    (tmp_path / "segmint.yaml").write_text(
        yaml.safe_dump({"store": "store.duckdb", "sources": sources}), encoding="utf-8"
    )
    projects.append(segmint.open_project(tmp_path))
    (r,) = projects[-1].ingest(now=NOW)
    assert r.rejected_by_rule == {} and r.field_issues_by_field == {"age": 1}
    ages = projects[-1].store.query("SELECT user_id, age FROM users ORDER BY 1")
    assert ages["user_id"].tolist() == ["u1", "u2", "u3"]
    assert ages["age"].tolist()[1:] == [40, 41] and pd.isna(ages["age"].iat[0])


# --- issue 16: a bad optional field keeps the customer; held orders come in -------------


def _two_step_project(
    tmp: Path, users: Path, orders: Path, projects: list[segmint.Project]
) -> segmint.Project:
    """people (a copy of ``users`` in tmp, so that a test can change it) and sales."""
    (tmp / "users.csv").write_bytes(users.read_bytes())
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "email": "mail"},
        },
        "sales": {"type": "csv", "path": str(orders), "table": "orders", "columns": ORDER_COLS},
    }
    if b"yrs" in users.read_bytes().splitlines()[0]:
        sources["people"]["columns"]["age"] = "yrs"
    (tmp / "segmint.yaml").write_text(
        yaml.safe_dump({"store": "store.duckdb", "timezone": "UTC", "sources": sources}),
        encoding="utf-8",
    )
    projects.append(segmint.open_project(tmp))
    return projects[-1]


def test_corpus_user_with_a_bad_optional_field_keeps_their_orders(
    tmp_path: Path, projects: list[segmint.Project]
) -> None:
    p = _two_step_project(
        tmp_path,
        CORPUS / "user_bad_optional_field.csv",
        CORPUS / "user_bad_optional_field_orders.csv",
        projects,
    )
    people, sales = p.ingest(now=NOW)
    assert (people.rows_read, people.rows_accepted, people.field_issues) == (2, 2, 2)
    assert (sales.rows_read, sales.rows_accepted, sales.rows_rejected) == (3, 3, 0)
    users = clear_users(p, p.store.query("SELECT user_id, email, age FROM users ORDER BY 1"))
    assert users["user_id"].tolist() == ["u3", "u4"]
    assert pd.isna(users["email"].iat[0]) and users["age"].iat[0] == 41
    assert users["email"].iat[1] == "d@example.com" and pd.isna(users["age"].iat[1])
    q = p.quarantine(kind="field_issue")
    assert sorted(zip(q["field"], q["rule"], q["raw_value"], strict=True)) == [
        ("age", "implausible_age", "200"),
        ("email", "malformed_email", "u3-at-example.com"),
    ]


def test_corpus_orders_held_for_a_missing_user_come_in_once_users_are_fixed(
    tmp_path: Path, projects: list[segmint.Project]
) -> None:
    p = _two_step_project(tmp_path, CORPUS / "users.csv", CORPUS / "unknown_users.csv", projects)
    _, sales = p.ingest(now=NOW)
    assert sales.rejected_by_rule == {"unknown_reference": 2}
    (tmp_path / "users.csv").write_bytes((CORPUS / "users_fixed_u9.csv").read_bytes())
    people, sales = p.ingest(now=NOW)
    assert sales.skipped  # the orders file did not change
    (retry,) = people.retries
    assert (retry.rows_read, retry.rows_inserted, retry.rejected_by_rule) == (
        2,
        1,
        {"unknown_reference": 1},
    )
    assert p.store.query("SELECT order_id FROM orders ORDER BY 1")["order_id"].tolist() == [
        "o1",
        "o2",
        "o4",
    ]
    held = p.quarantine(reason="unknown_reference")
    assert held["raw"].str.contains('"U1"').tolist() == [True]  # counted once, still held


# --- the store file (built in the test) --------------------------------------------------


def _store_project(root: Path) -> Path:
    sources = {
        "people": {
            "type": "csv",
            "path": str(CORPUS / "users.csv"),
            "table": "users",
            "columns": dict(USER_COLS),
        }
    }
    config = {"store": "store.duckdb", "sources": sources}
    (root / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def _open_fails(root: Path, projects: list[segmint.Project], match: str) -> str:
    projects.append(segmint.open_project(root))
    with pytest.raises(StoreError, match=match) as exc:
        projects[-1].ingest(now=NOW)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_store_file_cut_short(tmp_path: Path, projects: list[segmint.Project]) -> None:
    """A store file cut in half (a copy that stopped) is refused when opened, not halfway
    through a command at the first read of a lost block."""
    root = _store_project(tmp_path)
    with segmint.open_project(root) as p:
        p.ingest(now=NOW)
    store = root / "store.duckdb"
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    _open_fails(
        root,
        projects,
        r"store\.duckdb is not a readable DuckDB database, maybe truncated or damaged "
        r"\(.* bytes, fewer than the .* blocks .* in use need\)\. Restore it from a backup",
    )


def test_store_file_a_checkpoint_shortened_opens(tmp_path: Path) -> None:
    """A checkpoint drops free blocks at the end of the file, leaving it shorter than the
    header's block count: that healthy file must open (three forced reloads did this)."""
    root = _store_project(tmp_path)
    for _ in range(3):
        with segmint.open_project(root) as p:
            p.ingest(now=NOW, force=True)
    store = root / "store.duckdb"
    import duckdb

    with duckdb.connect(str(store)) as con:
        total, size = con.execute(
            "SELECT total_blocks, block_size FROM pragma_database_size()"
        ).fetchone() or (0, 0)
    assert store.stat().st_size < total * size  # the case this test is about
    with segmint.open_project(root) as p:
        assert p.status()["tables"]


def test_store_file_not_a_database(tmp_path: Path, projects: list[segmint.Project]) -> None:
    root = _store_project(tmp_path)
    (root / "store.duckdb").write_bytes(b"not a database\n" * 100)
    _open_fails(root, projects, r"is not a readable DuckDB database, maybe truncated or damaged")


def test_store_path_is_a_folder(tmp_path: Path, projects: list[segmint.Project]) -> None:
    root = _store_project(tmp_path)
    (root / "store.duckdb").mkdir()
    _open_fails(root, projects, r"store\.duckdb is a folder, not a file; set `store:`")


def test_store_in_use_by_another_process(tmp_path: Path, projects: list[segmint.Project]) -> None:
    root = _store_project(tmp_path)
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(root / "store.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            _open_fails(
                root, projects, rf"store\.duckdb is in use by another process \(PID {holder.pid}, "
            )
        finally:
            holder.stdin.close()  # the holder reads to the end of its input, then exits
            holder.wait(timeout=30)
