"""Property: whatever garbage a file holds, a load loses nothing and fails only cleanly.

For every generated file: rows_read == rows_accepted + rows_rejected; the rows in the
table plus the quarantine rows of the load equal rows_read; the only exceptions are
SegmintError subclasses.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segmint
from segmint.errors import SegmintError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = ["oid", "uid", "t", "amt", "st"]
COLUMNS = {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt", "status": "st"}

# values that look like what the mapped columns expect, plus hostile ones
_special = st.sampled_from(
    [
        "",
        " ",
        "u1",
        "u2",
        "o1",
        "o1",
        "2024-05-01",
        "2024-05-01 10:00:00",
        "2024-02-30",
        "2030-01-01",
        "1985-01-01",
        "01/05/2024",
        "10.5",
        "-3",
        "1e9",
        "NaN",
        "12,50 EUR",
        "paid",
        "completed",
        "REFUNDED",
        "null",
        "NULL",
        '"',
        '""',
        "'",
        ";",
        "\t",
        "\\",
        "\r",
        "é",
        "\ufeff",
        "💥",
    ]
)
_text = st.text(
    alphabet=st.characters(codec="utf-8"),
    max_size=12,
)
_field = st.one_of(_special, _text, st.integers(-(10**12), 10**12).map(str))


def _quote(value: str, how: int) -> str:
    if how == 0:
        return value
    if how == 1:
        return '"' + value.replace('"', '""') + '"'
    return '"' + value  # an unbalanced quote


@st.composite
def garbage_csv(draw: st.DrawFn) -> str:
    lines = [",".join(HEADER)] if draw(st.integers(0, 9)) > 0 else []  # mostly a header
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:  # a line of free text
            lines.append(draw(_text))
            continue
        n = 5 if kind < 7 else draw(st.integers(0, 8))  # mostly 5 fields, sometimes ragged
        fields = [_quote(draw(_field), draw(st.integers(0, 8)) // 4) for _ in range(n)]
        lines.append(draw(st.sampled_from([",", ",", ",", ";"])).join(fields))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline]))


_json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    _field,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)


@st.composite
def garbage_jsonl(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(draw(_text))
        elif kind == 1:
            obj = draw(st.dictionaries(st.sampled_from(HEADER), _json_value, max_size=5))
            text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
            lines.append(text[: draw(st.integers(0, len(text)))])  # maybe truncated
        else:
            obj = draw(st.fixed_dictionaries({k: _json_value for k in HEADER}))
            lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
    return "\n".join(lines) + "\n"


def _load(kind: str, content: str) -> None:
    with tempfile.TemporaryDirectory(prefix="segmint-prop-") as tmp:
        root = Path(tmp)
        (root / "users.csv").write_text("id\nu1\nu2\n", encoding="utf-8")
        data = root / f"data.{kind}"
        data.write_text(content, encoding="utf-8", newline="")
        sources = {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {"user_id": "id"},
            },
            "sales": {
                "type": kind,
                "path": data.name,
                "table": "orders",
                "columns": COLUMNS,
                "values": {"status": {"paid": "completed"}},
            },
        }
        (root / "segmint.yaml").write_text(
            yaml.safe_dump({"store": "store.duckdb", "sources": sources}), encoding="utf-8"
        )
        with segmint.open_project(root) as p:
            p.ingest(["people"], now=NOW)
            try:
                (r,) = p.ingest(["sales"], now=NOW)
            except SegmintError:
                # a clean, intended error; the store must hold nothing of this source
                assert p.store.scalar("SELECT count(*) FROM loads WHERE source = 'sales'") == 0
                assert p.store.count("orders") == 0
                return
            assert r.rows_read == r.rows_accepted + r.rows_rejected
            assert r.rows_inserted + r.rows_updated + r.rows_unchanged == r.rows_accepted
            in_table = p.store.count("orders")
            quarantined = p.store.scalar(
                "SELECT count(*) FROM quarantine WHERE load_id = ?", [r.load_id]
            )
            assert quarantined == r.rows_rejected
            assert in_table + quarantined == r.rows_read, (in_table, quarantined, r)
            assert sum(r.rejected_by_rule.values()) == r.rows_rejected


_settings = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_settings
@given(garbage_csv())
def test_garbage_csv_loses_nothing(content: str) -> None:
    _load("csv", content)


@_settings
@given(garbage_jsonl())
def test_garbage_jsonl_loses_nothing(content: str) -> None:
    _load("jsonl", content)
