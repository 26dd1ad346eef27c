"""The shortcuts the ingestion SQL takes for speed give exactly what the plain forms give.

Each shortcut skips work for the common value (no trim for a string without edge spaces,
no regular expression for a timestamp without an offset, a checksum hashed ahead); these
tests compare it with the plain form on the values where they could part.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import pytest

from segmint.config import load_config
from segmint.sources._ingest import _OFFSET_RE, _has_offset, _trimmed
from segmint.sources._readers import file_checksum_async, prefetch_checksums

TEXTS = [
    "abc",
    " abc",
    "abc ",
    "  a b  ",
    "",
    "   ",
    "\ta\t",  # DuckDB's trim keeps tabs: so must the shortcut
    "\u00a0a\u00a0",  # no-break spaces: trimmed
    "a\u3000",  # ideographic space, trailing only
    "\u2003a",  # em space, leading only
    "é",
    " é ",
    "日本",
    "!a",  # the first byte above a space: never trimmed
    " !",
    "\x01a ",
    None,
]

TIMESTAMPS = [
    "2024-01-01 10:00:00",
    "2024-01-01T10:00:00",
    "2024-01-01 10:00",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    "2024-01-01 10:00:00+02:00",
    "2024-01-01 10:00:00-0500",
    "2024-01-01 10:00:00 +01",
    "2024-01-01 10:00:00.123456+01:00",
    "2024-01-01 10:00+02",
    "10:00-05",
    "2024-01-01Z",  # ends in Z but no time: not an offset
    "Z",
    "+02:00",
    "2024-01-01 10:00:00+",
    "01/05/2024 10:00 PM",
    "",
    None,
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@pytest.mark.parametrize("value", TEXTS)
def test_trimmed_equals_nullif_trim(con: duckdb.DuckDBPyConnection, value: str | None) -> None:
    fast, plain = con.execute(
        f"SELECT {_trimmed('x')}, NULLIF(trim(x), '') FROM (SELECT ?::VARCHAR AS x)", [value]
    ).fetchone()  # type: ignore[misc]
    assert fast == plain


def test_trimmed_equals_nullif_trim_for_every_edge_character(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # every character of the first 12,800 code points, and the Unicode spaces, as the first
    # and as the last character: the shortcut trims exactly where trim changes the text
    chars = [chr(i) for i in range(1, 0x3200) if not 0xD800 <= i < 0xE000]
    values = [f"{c}a" for c in chars] + [f"a{c}" for c in chars] + [f"{c}a{c}" for c in chars]
    parted = con.execute(
        f"SELECT list(x) FILTER (WHERE {_trimmed('x')} IS DISTINCT FROM NULLIF(trim(x), '')) "
        "FROM (SELECT unnest(?::VARCHAR[]) AS x)",
        [values],
    ).fetchone()[0]  # type: ignore[index]
    assert not parted


def test_trim_removes_no_ascii_character_but_space(con: duckdb.DuckDBPyConnection) -> None:
    # the shortcut tests only the ASCII space at the edges (and any non-ASCII string):
    # it is exact only while DuckDB's trim removes no other ASCII character
    changed = [
        i
        for i in range(1, 128)
        if con.execute("SELECT trim(?)", [f"{chr(i)}a{chr(i)}"]).fetchone()[0]  # type: ignore[index]
        != f"{chr(i)}a{chr(i)}"
    ]
    assert changed == [32]


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_offset_test_equals_the_regular_expression(
    con: duckdb.DuckDBPyConnection, value: str | None
) -> None:
    fast, plain = con.execute(
        f"SELECT coalesce({_has_offset('x')}, FALSE), "
        f"coalesce(regexp_matches(x, {_OFFSET_RE}), FALSE) FROM (SELECT ?::VARCHAR AS x)",
        [value],
    ).fetchone()  # type: ignore[misc]
    assert fast == plain


def test_prefetched_checksum_is_used_only_for_an_unchanged_file(tmp_path: Path) -> None:
    data = tmp_path / "orders.csv"
    data.write_text("oid,uid\no1,u1\n", encoding="utf-8")
    (tmp_path / "segmint.yaml").write_text(
        "sources:\n  orders:\n    type: csv\n    path: orders.csv\n    table: orders\n"
        "    columns: {order_id: oid, user_id: uid}\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path / "segmint.yaml")
    prefetch_checksums(config, ["orders"])
    ahead = file_checksum_async(data).result()
    assert ahead == hashlib.sha256(data.read_bytes()).hexdigest()

    prefetch_checksums(config, ["orders"])
    data.write_text("oid,uid\no1,u1\no2,u2\n", encoding="utf-8")  # changed after the prefetch
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_checksum_async(data).result() == hashlib.sha256(data.read_bytes()).hexdigest()
