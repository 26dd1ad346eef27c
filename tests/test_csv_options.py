"""CSV options for real exports: encodings, decimal commas, thousands separators, per-column
date formats and headerless files, loaded through the real path into a DuckDB store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import clear_users

import segmint
from segmint.errors import ConfigError

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# A small German shop export: semicolons, decimal commas, thousands dots, dd.mm.yyyy dates,
# latin-1 (Müller, Köln).
KUNDEN = (
    "Kundennummer;Name;Stadt;Anmeldung\nK1;Müller;Köln;01.02.2024\nK2;Weiß;Düsseldorf;15.03.2024\n"
)
BESTELLUNGEN = (
    "Bestellnummer;Kunde;Datum;Betrag\n"
    "1001;K1;31.12.2025;1.234,56\n"
    "1002;K2;01.06.2025;7,10\n"
    "1003;K1;02.01.2026;12.345,6\n"
    "1004;K2;28.02.2025;0,5\n"
)
GERMAN = {"delimiter": ";", "decimal": ",", "thousands": "."}


@pytest.fixture()
def opened() -> Iterator[list[segmint.Project]]:
    projects: list[segmint.Project] = []
    yield projects
    for p in projects:
        p.close()


def _project(
    root: Path, files: dict[str, bytes], sources: dict[str, Any], opened: list[segmint.Project]
) -> segmint.Project:
    for name, data in files.items():
        (root / name).write_bytes(data)
    config = {"store": "store.duckdb", "timezone": "UTC", "sources": sources}
    (root / "segmint.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    opened.append(segmint.open_project(root))
    return opened[-1]


def _kunden(encoding: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "csv",
        "path": "kunden.csv",
        "table": "users",
        "delimiter": ";",
        "encoding": encoding,
        "formats": {"created_at": "dd.mm.yyyy"},
        "columns": {"user_id": "Kundennummer", "city": "Stadt", "created_at": "Anmeldung"},
        **extra,
    }


def _bestellungen(encoding: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "csv",
        "path": "bestellungen.csv",
        "table": "orders",
        "encoding": encoding,
        "formats": {"ts": "%d.%m.%Y"},
        "columns": {
            "order_id": "Bestellnummer",
            "user_id": "Kunde",
            "ts": "Datum",
            "amount": "Betrag",
        },
        **GERMAN,
        **extra,
    }


def test_a_german_latin1_export_loads_with_exact_amounts_and_dates(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    p = _project(
        tmp_path,
        {
            "kunden.csv": KUNDEN.encode("latin-1"),
            "bestellungen.csv": BESTELLUNGEN.encode("latin-1"),
        },
        {"kunden": _kunden("latin-1"), "bestellungen": _bestellungen("latin-1")},
        opened,
    )
    users, orders = p.ingest(now=NOW)
    assert (users.rows_read, users.rows_accepted) == (2, 2)
    assert (orders.rows_read, orders.rows_accepted, orders.rows_rejected) == (4, 4, 0)
    got = p.store.query("SELECT user_id, city, created_at FROM users ORDER BY 1")
    assert got["city"].tolist() == ["Köln", "Düsseldorf"]
    assert [t.date() for t in got["created_at"]] == [date(2024, 2, 1), date(2024, 3, 15)]
    rows = p.store.query("SELECT order_id, ts, amount FROM orders ORDER BY 1")
    # exact: the same doubles as the amounts written with a point
    assert rows["amount"].tolist() == [1234.56, 7.10, 12345.6, 0.5]
    assert [t.date() for t in rows["ts"]] == [
        date(2025, 12, 31),
        date(2025, 6, 1),
        date(2026, 1, 2),
        date(2025, 2, 28),
    ]


def test_numbers_not_written_as_declared_are_quarantined_not_misread(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    """With decimal ',' and thousands '.', '1,234.56' (English) and '12.34' (a dot that
    groups two digits) are not numbers of this file: rejected with their raw value."""
    data = (
        "Bestellnummer;Kunde;Datum;Betrag\n"
        "1;K1;01.01.2025;1,234.56\n"
        "2;K1;01.01.2025;12.34\n"
        "3;K1;01.01.2025;1.234\n"
    )
    p = _project(
        tmp_path,
        {"kunden.csv": KUNDEN.encode("latin-1"), "bestellungen.csv": data.encode("latin-1")},
        {"kunden": _kunden("latin-1"), "bestellungen": _bestellungen("latin-1")},
        opened,
    )
    _, orders = p.ingest(now=NOW)
    assert (orders.rows_read, orders.rows_accepted, dict(orders.rejected_by_rule)) == (
        3,
        1,
        {"bad_type": 2},
    )
    assert p.store.query("SELECT amount FROM orders")["amount"].tolist() == [1234.0]
    q = p.quarantine("bestellungen").sort_values("row")  # raw rows opened (sealed at rest)
    assert [json.loads(r)["Betrag"] for r in q["raw"]] == ["1,234.56", "12.34"]
    assert all(r.startswith("cannot read amount as DOUBLE") for r in q["reason"])


def test_a_bad_date_in_a_declared_format_is_quarantined_with_its_raw_value(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    data = (
        "Bestellnummer;Kunde;Datum;Betrag\n"
        "1;K1;31.12.2025;1,00\n"
        "2;K1;2025-12-31;2,00\n"  # ISO, not the declared dd.mm.yyyy
        "3;K1;31.02.2025;3,00\n"  # no 31 February
    )
    p = _project(
        tmp_path,
        {"kunden.csv": KUNDEN.encode("latin-1"), "bestellungen.csv": data.encode("latin-1")},
        {"kunden": _kunden("latin-1"), "bestellungen": _bestellungen("latin-1")},
        opened,
    )
    _, orders = p.ingest(now=NOW)
    assert (orders.rows_read, orders.rows_accepted) == (3, 1)
    assert dict(orders.rejected_by_rule) == {"unparseable_timestamp": 2}
    q = p.store.query(
        "SELECT \"row\", reason FROM quarantine WHERE source = 'bestellungen' ORDER BY 1"
    )
    assert q["row"].tolist() == [3, 4]
    assert q["reason"].tolist() == [
        "unparseable timestamp in ts: 2025-12-31",
        "unparseable timestamp in ts: 31.02.2025",
    ]


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "gb18030", "shift_jis"])
def test_files_in_other_encodings_load_as_text(
    tmp_path: Path, opened: list[segmint.Project], encoding: str
) -> None:
    city = {"cp1252": "Köln €", "utf-16": "北京 Köln", "gb18030": "北京", "shift_jis": "東京"}
    users = f"Kundennummer;Stadt;Anmeldung\nK1;{city[encoding]};01.02.2024\nK2;x;02.02.2024\n"
    p = _project(
        tmp_path, {"kunden.csv": users.encode(encoding)}, {"kunden": _kunden(encoding)}, opened
    )
    (r,) = p.ingest(now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    got = p.store.query("SELECT city FROM users ORDER BY user_id")["city"].tolist()
    assert got == [city[encoding], "x"]
    loc = p.store.scalar("SELECT location FROM loads WHERE source = 'kunden'")
    assert loc == str(tmp_path / "kunden.csv")  # the user's file, not the UTF-8 copy


def test_bytes_not_valid_in_the_declared_encoding_quarantine_their_row(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    """0x81 is no character of cp1252: that row (and only it) is quarantined, its raw
    text kept; record numbers are those of the file."""
    data = b"Kundennummer;Stadt;Anmeldung\nK1;K\xf6ln;01.02.2024\nK2;bad\x81;02.02.2024\nK3;x;03.02.2024\n"
    p = _project(tmp_path, {"kunden.csv": data}, {"kunden": _kunden("cp1252")}, opened)
    (r,) = p.ingest(now=NOW)
    assert (r.rows_read, r.rows_accepted, dict(r.rejected_by_rule)) == (
        3,
        2,
        {"unparseable_row": 1},
    )
    q = p.quarantine()  # raw rows opened (sealed at rest)
    assert q["row"].tolist() == [3]
    assert "not valid cp1252" in q["reason"][0]
    assert "K2;bad" in q["raw"][0]
    assert p.store.query("SELECT city FROM users ORDER BY 1")["city"].tolist() == ["Köln", "x"]


def test_a_non_utf8_file_without_encoding_says_to_set_it(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    p = _project(
        tmp_path,
        {"kunden.csv": KUNDEN.encode("latin-1")},
        {"kunden": {**_kunden("utf-8"), "columns": {"user_id": "Kundennummer"}}},
        opened,
    )
    (r,) = p.ingest(now=NOW)  # the header is ASCII; the rows with ü are quarantined
    assert dict(r.rejected_by_rule) == {"unparseable_row": 2}
    reasons = p.store.query("SELECT reason FROM quarantine")["reason"]
    assert all("set `encoding:` on the source" in text for text in reasons)


def test_a_latin1_header_without_encoding_is_a_configuration_error(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    p = _project(
        tmp_path,
        {"kunden.csv": "Kundennr;Straße\nK1;x\n".encode("latin-1")},
        {
            "kunden": {
                "type": "csv",
                "path": "kunden.csv",
                "table": "users",
                "delimiter": ";",
                "columns": {"user_id": "Kundennr"},
            }
        },
        opened,
    )
    with pytest.raises(ConfigError, match=r"not valid UTF-8: set `encoding:` on this source"):
        p.ingest(now=NOW)


def test_a_gzipped_file_in_another_encoding(tmp_path: Path, opened: list[segmint.Project]) -> None:
    import gzip

    source = _kunden("latin-1", path="kunden.csv.gz")
    p = _project(
        tmp_path,
        {"kunden.csv.gz": gzip.compress(KUNDEN.encode("latin-1"))},
        {"kunden": source},
        opened,
    )
    (r,) = p.ingest(now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    assert p.store.query("SELECT city FROM users ORDER BY 1")["city"].tolist() == [
        "Düsseldorf",
        "Köln",
    ]


@pytest.mark.parametrize(
    ("n_columns", "first", "last"), [(3, "column0", "column2"), (11, "column00", "column10")]
)
def test_headerless_columns_are_named_as_duckdb_names_them(
    tmp_path: Path, opened: list[segmint.Project], n_columns: int, first: str, last: str
) -> None:
    import duckdb

    rows = [
        ",".join([f"u{i}", *[f"v{i}{j}" for j in range(1, n_columns - 1)], f"e{i}@example.com"])
        for i in (1, 2)
    ]
    (tmp_path / "users.csv").write_text("\n".join(rows) + "\n", "utf-8")
    # what a user sees in DuckDB
    names = duckdb.sql(f"SELECT * FROM read_csv('{tmp_path / 'users.csv'}', header=false)").columns
    assert (names[0], names[-1]) == (first, last)
    p = _project(
        tmp_path,
        {},
        {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "header": False,
                "columns": {"user_id": first, "email": last},
            }
        },
        opened,
    )
    (r,) = p.ingest(now=NOW)
    assert (r.rows_read, r.rows_accepted) == (2, 2)
    got = clear_users(p, p.store.query("SELECT user_id, email FROM users ORDER BY 1"))
    assert got["email"].tolist() == ["e1@example.com", "e2@example.com"]


def test_a_headerless_map_with_a_wrong_name_suggests_duckdbs(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    from segmint.errors import MissingColumnError

    p = _project(
        tmp_path,
        {"users.csv": b"u1,a@example.com\n"},
        {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "header": False,
                "columns": {"user_id": "column1", "email": "column2"},
            }
        },
        opened,
    )
    with pytest.raises(MissingColumnError, match=r"'column2' not found.*Found: column0, column1"):
        p.ingest(now=NOW)


def test_utf16_without_a_byte_order_mark_is_a_configuration_error(
    tmp_path: Path, opened: list[segmint.Project]
) -> None:
    data = "Kundennummer;Stadt;Anmeldung\nK1;Köln;01.02.2024\n".encode("utf-16-le")
    p = _project(tmp_path, {"kunden.csv": data}, {"kunden": _kunden("utf-16")}, opened)
    with pytest.raises(ConfigError, match=r"as utf-16: UTF-16 stream does not start with BOM"):
        p.ingest(now=NOW)
    p.close()
    opened.clear()
    p = _project(tmp_path, {}, {"kunden": _kunden("utf-16-le")}, opened)
    (r,) = p.ingest(now=NOW)
    assert (r.rows_read, r.rows_accepted) == (1, 1)
    assert p.store.scalar("SELECT city FROM users") == "Köln"
